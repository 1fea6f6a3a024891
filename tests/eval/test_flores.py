"""FLORES suite: directions, prompts, data checks, reports, and resume after an interrupt."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from bayling.cli.evaluate import main
from bayling.errors import BaylingError, DataError, OfflineError
from bayling.eval.config import EvalConfig
from bayling.eval.flores import build_tasks, locate_flores, plan_directions, select_languages
from bayling.eval.translate import make_prompt
from bayling.languages import get_language

REPO = Path(__file__).resolve().parents[2]
SAMPLE = str(REPO / "eval" / "flores_sample")


def test_directions_cover_four_families_without_duplicates():
    langs = [get_language(c) for c in ("deu", "eng", "zho_simpl")]
    plan = {(s.code, t.code): fams for s, t, fams in plan_directions(langs, ["en-x", "x-en", "zh-x", "x-zh"])}
    assert plan[("eng_Latn", "deu_Latn")] == ["en-x"]
    assert plan[("zho_Hans", "deu_Latn")] == ["zh-x"]
    assert sorted(plan[("eng_Latn", "zho_Hans")]) == ["en-x", "x-zh"]  # en->zh counted once, in both families
    assert ("eng_Latn", "eng_Latn") not in plan and len(plan) == 6


def test_prompts_follow_bayling1_in_english_and_chinese():
    cfg = EvalConfig(flores_dir=SAMPLE, langs="deu", limit=2)
    tasks = {t.name: t for t in build_tasks(cfg)}
    assert tasks["eng_Latn-deu_Latn"].prompt_lang == "en"
    assert tasks["zho_Hans-deu_Latn"].prompt_lang == "zh" and tasks["deu_Latn-zho_Hans"].prompt_lang == "zh"
    t = tasks["zho_Hans-deu_Latn"]
    assert make_prompt(t.sources[0], t.tgt, t.prompt_lang).startswith("提供这句话的德语翻译：")
    t = tasks["deu_Latn-eng_Latn"]
    assert make_prompt(t.sources[0], t.tgt, "en") == f"Provide the English translation for this sentence: {t.sources[0]}"
    assert t.refs[0][0].startswith('"We now have 4-month-old mice')  # real, line-aligned FLORES data


def test_language_selection_for_flores101():
    assert len(select_languages("all", 101)) == 102
    with pytest.raises(DataError, match="not in FLORES-101"):
        select_languages("ace_Arab", 101)
    with pytest.raises(BaylingError, match="unknown language"):
        select_languages("deu,klingon", 101)


def test_missing_file_and_offline_errors_are_clear(tmp_path):
    with pytest.raises(DataError, match=r"no FLORES file for tam_Taml \(Tamil\); this folder has: ara, ces"):
        build_tasks(EvalConfig(flores_dir=SAMPLE, langs="tam"))
    with pytest.raises(OfflineError, match="--flores-dir"):
        locate_flores(None, 101)
    with pytest.raises(DataError, match="no \\*.devtest files"):
        locate_flores(str(tmp_path), 101)


def _run(model: Path, out: Path, *extra: str) -> int:
    return main(["--suite", "flores", "--model", str(model), "--flores-dir", SAMPLE, "--langs", "deu,kan",
                 "--limit", "3", "--beams", "1", "--max-new-tokens", "6", "--batch-size", "4", "--no-progress",
                 "--out", str(out), *extra])


def test_flores_run_writes_reports_and_resumes_only_the_missing_direction(tiny_llama2, tmp_path):
    out = tmp_path / "run"
    assert _run(tiny_llama2, out) == 0
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    names = sorted(d["direction"] for d in res["directions"])
    assert len(names) == 8 and "kan_Knda-zho_Hans" in names
    for d in res["directions"]:
        hyp = (out / d["hyp_file"]).read_text(encoding="utf-8").split("\n")
        assert len(hyp) == 4 and hyp[-1] == ""  # 3 segments, one per line
        assert d["scores"]["bleu"]["signature"] and d["scores"]["chrf"]["name"] == "chrf++"
        assert d["scores"]["bleu"]["name"] == ("bleu_zh" if d["tgt"] == "zho_Hans" else "bleu_13a")
    assert set(res["averages"]["by_family"]) == {"en-x", "x-en", "zh-x", "x-zh"}
    assert "high" in res["averages"]["by_tier"] and "low" in res["averages"]["by_tier"]  # deu high, kan low
    rows = list(csv.DictReader(open(out / "results.csv", encoding="utf-8")))
    assert len(rows) == 8
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "## Averages by family" in summary and "## Averages by tier" in summary
    assert (out / "scores.png").read_bytes()[:4] == b"\x89PNG"

    # Simulate an interrupt during one direction: its files are missing; everything else is kept.
    victim = "kan_Knda-eng_Latn"
    (out / "hyp" / f"{victim}.txt").unlink()
    (out / "directions" / f"{victim}.json").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in (out / "hyp").iterdir()}
    os.utime(out / "hyp" / "deu_Latn-eng_Latn.txt", ns=(1, 1))  # a regenerated file would get a new mtime
    assert _run(tiny_llama2, out) == 0
    log = (out / "eval.log").read_text(encoding="utf-8").splitlines()
    second = log[max(i for i, ln in enumerate(log) if " start " in ln):]
    assert [ln.split()[2] for ln in second if " generated " in ln] == [victim]
    assert sum(" skip " in ln for ln in second) == 7
    assert (out / "hyp" / "deu_Latn-eng_Latn.txt").stat().st_mtime_ns == 1
    after = {p.name: p.stat().st_mtime_ns for p in (out / "hyp").iterdir()}
    assert set(after) == set(before) | {f"{victim}.txt"}
    res2 = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert len(res2["directions"]) == 8


def test_changed_generation_settings_regenerate(tiny_llama2, tmp_path):
    out = tmp_path / "run"
    base = ["--suite", "flores", "--model", str(tiny_llama2), "--flores-dir", SAMPLE, "--langs", "deu",
            "--directions", "x-en", "--limit", "2", "--beams", "1", "--no-progress", "--out", str(out)]
    assert main([*base, "--max-new-tokens", "4"]) == 0
    assert main([*base, "--max-new-tokens", "5"]) == 0
    assert main([*base, "--max-new-tokens", "5", "--repetition-penalty", "1.3"]) == 0
    assert main([*base, "--max-new-tokens", "5", "--repetition-penalty", "1.3"]) == 0  # nothing changed: skip
    log = (out / "eval.log").read_text(encoding="utf-8")
    assert log.count("generated deu_Latn-eng_Latn") == 3 and log.count("skip deu_Latn-eng_Latn") == 1
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["config"]["repetition_penalty"] == 1.3
    assert "repetition penalty 1.3" in (out / "summary.md").read_text(encoding="utf-8")


def test_flores200_layout_uses_flores200_file_names(tmp_path):
    dev = tmp_path / "flores200_dataset" / "devtest"
    dev.mkdir(parents=True)
    for stem101, stem200 in (("eng", "eng_Latn"), ("zho_simpl", "zho_Hans"), ("swh", "swh_Latn")):
        (dev / f"{stem200}.devtest").write_text((Path(SAMPLE) / f"{stem101}.devtest").read_text(encoding="utf-8"),
                                                encoding="utf-8")
    tasks = build_tasks(EvalConfig(flores_dir=str(tmp_path), flores=200, langs="swh_Latn", limit=4))
    assert sorted(t.name for t in tasks) == ["eng_Latn-swh_Latn", "swh_Latn-eng_Latn", "swh_Latn-zho_Hans",
                                             "zho_Hans-swh_Latn"]
    assert all(t.files["source"].endswith(f"{t.src.code}.devtest") for t in tasks)
    with pytest.raises(DataError, match="no FLORES file for deu_Latn"):
        build_tasks(EvalConfig(flores_dir=str(tmp_path), flores=200, langs="deu"))


@pytest.mark.slow  # four tiny-model runs
def test_resume_keys_on_model_content_not_its_path(tiny_llama2, tmp_path):
    """Retraining into the same folder and rerunning into the same --out must regenerate, not reuse scores."""
    import shutil

    from bayling.models import build_tiny_llama

    model = tmp_path / "final"
    shutil.copytree(tiny_llama2, model)
    out = tmp_path / "run"
    base = ["--suite", "flores", "--model", str(model), "--flores-dir", SAMPLE, "--langs", "deu",
            "--directions", "x-en", "--limit", "2", "--beams", "1", "--max-new-tokens", "4", "--no-progress",
            "--out", str(out)]
    assert main(base) == 0
    assert main(base) == 0  # same content: skipped
    other = build_tiny_llama(str(REPO / "data/tokenizers/llama2"), tmp_path / "retrained", seed=1)
    shutil.copy(other / "model.safetensors", model / "model.safetensors")  # "retrained" into the same path
    assert main(base) == 0
    log = (out / "eval.log").read_text(encoding="utf-8")
    assert log.count("generated deu_Latn-eng_Latn") == 2 and log.count("skip deu_Latn-eng_Latn") == 1
    tpl = json.loads((model / "tokenizer_config.json").read_text(encoding="utf-8"))
    tpl["chat_template"] = "{{ messages[0]['content'] }}"  # a changed chat template changes the prompts too
    (model / "tokenizer_config.json").write_text(json.dumps(tpl), encoding="utf-8")
    assert main(base) == 0
    log = (out / "eval.log").read_text(encoding="utf-8")
    assert log.count("generated deu_Latn-eng_Latn") == 3


def test_misaligned_flores_is_refused_even_with_limit(tmp_path):
    for stem in ("eng", "deu", "zho_simpl"):
        lines = (Path(SAMPLE) / f"{stem}.devtest").read_text(encoding="utf-8").splitlines(keepends=True)
        (tmp_path / f"{stem}.devtest").write_text("".join(lines[1:] if stem == "deu" else lines), encoding="utf-8")
    with pytest.raises(DataError, match="deu.devtest has 19 lines but eng.devtest has 20"):
        build_tasks(EvalConfig(flores_dir=str(tmp_path), langs="deu", limit=5, directions=["x-en"]))
