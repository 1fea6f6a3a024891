"""`bayling-eval report`: paper-style tables from multi-language runs, base-vs-ours deltas, golden values."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from bayling.cli.evaluate import main
from bayling.eval.knowledge_report import summarize
from bayling.eval.metrics import score_translation
from bayling.eval.report import build_results
from bayling.languages import get_language

FLORES = Path(__file__).resolve().parents[2] / "eval" / "flores_sample"
LANGS = ["deu", "fra", "hin", "kan", "swh", "vie"]  # high, high, medium?, low, ... tiers come from the registry


def _lines(stem: str) -> list[str]:
    return (FLORES / f"{stem}.devtest").read_text(encoding="utf-8").splitlines()[:8]


def _record(src: str, tgt: str, fam: str, hyps: list[str], refs: list[str]) -> dict:
    s, t = get_language(src), get_language(tgt)
    x = t if s.code == "eng_Latn" else s
    return {"direction": f"{s.code}-{t.code}", "src": s.code, "tgt": t.code, "x_lang": x.code, "x_name": x.name_en,
            "tier": x.tier, "families": [fam], "n": len(hyps),
            "scores": score_translation(hyps, [refs], t.code, policy="field", spm=None)}


def _translation_run(folder: Path, damage: int) -> Path:
    """Hypotheses = the true references with every `damage`-th word dropped (0 = untouched): real sacrebleu scores."""
    def hyp(lines: list[str]) -> list[str]:
        if not damage:
            return lines
        return [" ".join(w for i, w in enumerate(ln.split()) if i % damage) for ln in lines]

    recs = []
    for stem in LANGS:
        recs.append(_record(stem, "eng", "x-en", hyp(_lines("eng")), _lines("eng")))
        recs.append(_record("eng", stem, "en-x", hyp(_lines(stem)), _lines(stem)))
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(build_results("flores", recs, {}, "m")), encoding="utf-8")
    (folder / ".bayling-eval").write_text("{}", encoding="utf-8")
    return folder


def test_translation_report_has_family_and_tier_tables_best_worst_and_deltas(tmp_path, capsys):
    base = _translation_run(tmp_path / "base", damage=2)
    ours = _translation_run(tmp_path / "ours", damage=0)
    out = tmp_path / "report"
    assert main(["report", str(base), str(ours), "--out", str(out)]) == 0
    md = (out / "report.md").read_text(encoding="utf-8")
    tiers = {get_language(s).tier for s in LANGS}
    assert "| x-en | all |" in md and "| en-x | all |" in md
    for tier in tiers:
        assert f"| x-en | {tier} |" in md
    assert "best" in md and "worst" in md and "`ours` en-x" in md
    rows = list(csv.DictReader(open(out / "report.csv", encoding="utf-8")))
    ours_xen = next(r for r in rows if r["run"] == "ours" and r["kind"] == "mean" and r["group"] == "x-en"
                    and r["subgroup"] == "all" and r["metric"] == "chrf")
    assert float(ours_xen["value"]) == pytest.approx(100.0) and ours_xen["n"] == str(len(LANGS))
    delta = next(r for r in rows if r["run"] == "ours" and r["kind"] == "delta" and r["group"] == "en-x"
                 and r["subgroup"] == "all" and r["metric"] == "bleu")
    base_recs = json.loads((base / "results.json").read_text(encoding="utf-8"))["directions"]
    base_bleu = [r["scores"]["bleu"]["score"] for r in base_recs if r["families"] == ["en-x"]]
    assert float(delta["value"]) == pytest.approx(100.0 - sum(base_bleu) / len(base_bleu), abs=1e-5)
    assert float(delta["value"]) > 10 and int(delta["n"]) == len(LANGS)
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert "# Translation report" in capsys.readouterr().out


def _knowledge_doc(scores: dict[tuple[str, str], float]) -> dict:
    tasks = {}
    for (bench, lang), acc in scores.items():
        code = get_language(lang)
        tasks[f"{bench}_{lang}"] = {"benchmark": bench, "language": lang, "language_code": code.code,
                                    "tier": code.tier, "metrics": {"acc": acc}, "n": 10}
    return {"suite": "knowledge", "tasks": tasks, "benchmarks": summarize(tasks)}


def test_knowledge_report_per_language_table_with_low_resource_mean_and_deltas(tmp_path):
    langs = ["de", "kn", "te", "ne"]  # one high-resource, three low-resource in the registry
    assert [get_language(lg).tier for lg in langs] == ["high", "low", "low", "low"]
    base = {("okapi_arc", lg): 0.25 + 0.05 * i for i, lg in enumerate(langs)}
    ours = {k: v + 0.10 for k, v in base.items()}
    for name, scores in (("base", base), ("ours", ours)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(_knowledge_doc(scores)), encoding="utf-8")
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "base"), str(tmp_path / "ours"), "--out", str(out)]) == 0
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| kan_Knda | low |" in md and "**low-resource mean**" in md
    rows = list(csv.DictReader(open(out / "report.csv", encoding="utf-8")))
    low = {r["run"]: float(r["value"]) for r in rows if r["kind"] == "low_resource_mean"}
    assert low["base"] == pytest.approx((0.30 + 0.35 + 0.40) / 3) and low["ours"] == pytest.approx(0.45)
    delta = next(r for r in rows if r["kind"] == "delta")
    assert float(delta["value"]) == pytest.approx(0.10) and delta["n"] == "4"


def test_report_refuses_mixed_kinds_and_foreign_folders(tmp_path, capsys):
    _translation_run(tmp_path / "t", damage=2)
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "results.json").write_text(json.dumps(_knowledge_doc({("okapi_arc", "de"): 0.3})),
                                                 encoding="utf-8")
    assert main(["report", str(tmp_path / "t"), str(tmp_path / "k"), "--out", str(tmp_path / "r")]) == 2
    assert "one kind" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x", encoding="utf-8")
    assert main(["report", str(tmp_path / "t"), "--out", str(tmp_path / "mine")]) == 2
    assert not (tmp_path / "r").exists()
