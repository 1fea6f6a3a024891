"""Paired bootstrap of the mean chrF++ over directions (bayling.merge.significance), with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sacrebleu.metrics import CHRF

from bayling.errors import BaylingError
from bayling.merge.significance import kept_share, load_eval_dir, paired_bootstrap, verdict

FLORES = Path(__file__).resolve().parents[2] / "data" / "samples" / "flores_demo"


def lines(lang: str, n: int = 40, start: int = 0) -> list[str]:
    return (FLORES / f"{lang}.devtest").read_text(encoding="utf-8").splitlines()[start:start + n]


def drop_words(sentences: list[str], every: int) -> list[str]:
    """A degraded system: every ``every``-th word removed."""
    return [" ".join(w for i, w in enumerate(s.split()) if i % every != every - 1) for s in sentences]


def system(hyp_of, langs=("eng", "deu", "fra")) -> dict[str, tuple[list[str], list[str]]]:
    return {f"x-{lang}": (hyp_of(lines(lang)), lines(lang)) for lang in langs}


def test_identical_systems_give_p_one_and_a_zero_interval():
    a = system(lambda refs: drop_words(refs, 3))
    r = paired_bootstrap(a, a, n_samples=200)
    assert r["diff"] == 0.0
    assert r["p_value"] == 1.0
    assert r["ci95"] == [0.0, 0.0]
    assert r["a_better_share"] == 0.0
    assert "within noise" in verdict(r)


def test_a_clearly_better_system_gets_the_smallest_p_and_a_positive_interval():
    good = system(lambda refs: drop_words(refs, 7))
    bad = system(lambda refs: lines("ita", len(refs), start=500))  # unrelated sentences
    r = paired_bootstrap(good, bad, n_samples=200)
    assert r["diff"] > 30
    assert r["p_value"] == pytest.approx(1 / 201)
    assert r["ci95"][0] > 0 and r["a_better_share"] == 1.0
    assert "beyond noise" in verdict(r)
    swapped = paired_bootstrap(bad, good, n_samples=200)  # two-sided: the same p, mirrored interval
    assert swapped["p_value"] == r["p_value"]
    assert swapped["ci95"] == pytest.approx([-r["ci95"][1], -r["ci95"][0]])


def test_full_sample_scores_are_sacrebleu_corpus_chrf_plus_plus():
    a, b = system(lambda refs: drop_words(refs, 3)), system(lambda refs: drop_words(refs, 4))
    r = paired_bootstrap(a, b, n_samples=10)
    metric = CHRF(word_order=2)
    for d, (hyps, refs) in a.items():
        assert r["directions"][d]["a"] == pytest.approx(metric.corpus_score(hyps, [refs]).score, abs=1e-9)
        assert r["directions"][d]["b"] == pytest.approx(metric.corpus_score(b[d][0], [refs]).score, abs=1e-9)
        assert r["directions"][d]["lines"] == 40
    assert r["mean_a"] == pytest.approx(sum(v["a"] for v in r["directions"].values()) / 3)


def test_golden_values_with_a_fixed_seed():
    """Two close systems: B drops every 2nd word instead of every 3rd in 2 of the 40 lines per direction."""
    a = system(lambda refs: drop_words(refs, 3))
    b = system(lambda refs: drop_words(refs[:2], 2) + drop_words(refs[2:], 3))
    r = paired_bootstrap(a, b, n_samples=500, seed=12345)
    assert r["diff"] == pytest.approx(GOLDEN["diff"], abs=1e-6)
    assert r["ci95"] == pytest.approx(GOLDEN["ci95"], abs=1e-6)
    assert r["p_value"] == pytest.approx(GOLDEN["p_value"], abs=1e-9)
    assert r == paired_bootstrap(a, b, n_samples=500, seed=12345)  # deterministic
    assert paired_bootstrap(a, b, n_samples=500, seed=1)["ci95"] != r["ci95"]


GOLDEN = {"diff": 0.9449550101983988, "ci95": [0.22707519202913337, 1.91735934690599], "p_value": 17 / 501}


def test_a_small_noisy_difference_is_within_noise():
    """A and B differ on one sentence of 40 in one direction: no evidence either way."""
    a = system(lambda refs: drop_words(refs, 3))
    b = {d: (list(h), r) for d, (h, r) in a.items()}
    b["x-eng"][0][0] = "nothing like it"
    res = paired_bootstrap(a, b, n_samples=300)
    assert 0 < res["diff"] < 1
    assert res["p_value"] > 0.05 and res["ci95"][0] <= 0 <= res["ci95"][1]


def test_kept_share_of_an_expert_gain():
    """merged = expert keeps 100 % in every resample, merged = base 0 %, halfway in between ~50 %."""
    base = system(lambda refs: drop_words(refs, 2))
    expert = system(lambda refs: drop_words(refs, 5))
    dirs = ["x-deu", "x-fra"]  # the expert's "own" directions: the others are ignored
    same = kept_share(base, expert, expert, dirs, n_samples=200)
    assert same["kept"] == pytest.approx(1.0) and same["ci95"] == pytest.approx([1.0, 1.0])
    assert same["at_least_threshold"] == 1.0 and same["resamples_without_gain"] == 0 and same["gain"] > 5
    none = kept_share(base, expert, base, dirs, n_samples=200)
    assert none["kept"] == 0.0 and none["at_least_threshold"] == 0.0
    half = {d: (h[:20] + expert[d][0][20:], r) for d, (h, r) in base.items()}  # expert on half the lines
    mid = kept_share(base, expert, half, dirs, n_samples=200)
    assert 0.3 < mid["kept"] < 0.7 and mid["ci95"][0] < mid["kept"] < mid["ci95"][1]
    assert 0.0 <= mid["at_least_threshold"] < 0.05
    no_gain = kept_share(expert, base, base, dirs, n_samples=50)  # the "expert" is worse: no share at all
    assert no_gain["kept"] is None and no_gain["resamples_without_gain"] == 50 and no_gain["at_least_threshold"] is None


def test_mismatched_inputs_are_one_line_errors():
    a = system(lambda refs: refs)
    with pytest.raises(BaylingError, match="same"):
        paired_bootstrap(a, {k: v for k, v in a.items() if k != "x-eng"})
    other_refs = {d: (h, [s + "." for s in r]) for d, (h, r) in a.items()}
    with pytest.raises(BaylingError, match="different references"):
        paired_bootstrap(a, other_refs)
    short = {d: (h[:-1], r) for d, (h, r) in a.items()}
    with pytest.raises(BaylingError, match="hypotheses but"):
        paired_bootstrap(short, short)


def test_load_eval_dir_reads_records_hypotheses_and_the_first_n_reference_lines(tmp_path):
    ref = tmp_path / "deu.devtest"
    ref.write_text("".join(s + "\n" for s in lines("deu", 10)), encoding="utf-8")
    folder = tmp_path / "eval"
    (folder / "hyp").mkdir(parents=True)
    (folder / "directions").mkdir()
    hyps = drop_words(lines("deu", 4), 2)
    (folder / "hyp" / "eng_Latn-deu_Latn.txt").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    rec = {"direction": "eng_Latn-deu_Latn", "n": 4, "hyp_file": "hyp/eng_Latn-deu_Latn.txt",
           "files": {"source": "unused", "reference": str(ref)}}
    (folder / "directions" / "eng_Latn-deu_Latn.json").write_text(json.dumps(rec), encoding="utf-8")
    assert load_eval_dir(folder) == {"eng_Latn-deu_Latn": (hyps, lines("deu", 4))}
    rec["n"] = 5
    (folder / "directions" / "eng_Latn-deu_Latn.json").write_text(json.dumps(rec), encoding="utf-8")
    with pytest.raises(BaylingError, match="4 hypotheses"):
        load_eval_dir(folder)
    with pytest.raises(BaylingError, match="no finished directions"):
        load_eval_dir(tmp_path)
