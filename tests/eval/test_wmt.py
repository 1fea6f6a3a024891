"""WMT22 suite: the 14 general directions from a local copy, reference choice, WMT22 scoring."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bayling.cli.evaluate import main
from bayling.errors import DataError
from bayling.eval.config import WMT22_PAIRS, EvalConfig
from bayling.eval.wmt import build_tasks

WMT = Path(__file__).resolve().parents[2] / "eval" / "wmt22_sample"


def test_all_14_directions_with_reference_a_or_first():
    tasks = {t.name: t for t in build_tasks(EvalConfig(suite="wmt22", wmt_dir=str(WMT)))}
    assert sorted(tasks) == sorted(WMT22_PAIRS) and len(tasks) == 14
    assert tasks["en-zh"].files["reference_ids"] == ["A"]
    assert tasks["cs-en"].files["reference_ids"] == ["B"]  # no reference A for cs-en: the first one (B)
    assert tasks["en-zh"].tgt.code == "zho_Hans" and tasks["ja-en"].src.code == "jpn_Jpan"
    assert all(len(t.sources) == 30 and len(t.refs[0]) == 30 for t in tasks.values())
    assert tasks["de-en"].sources[0] == (WMT / "sources/generaltest2022.de-en.src.de").read_text(
        encoding="utf-8").splitlines()[0]


def test_all_references_option_and_limit():
    t = build_tasks(EvalConfig(suite="wmt22", wmt_dir=str(WMT), wmt_refs="all", pairs=["en-zh"], limit=5))[0]
    assert t.files["reference_ids"] == ["B", "A"] and [len(r) for r in t.refs] == [5, 5]  # WMT22's "-all" order


def test_missing_or_misaligned_files_are_errors(tmp_path):
    shutil.copytree(WMT, tmp_path / "w")
    (tmp_path / "w/sources/generaltest2022.de-en.src.de").unlink()
    with pytest.raises(DataError, match="WMT22 source file for de-en not found"):
        build_tasks(EvalConfig(suite="wmt22", wmt_dir=str(tmp_path / "w"), pairs=["de-en"]))
    ref = tmp_path / "w/references/generaltest2022.en-de.ref.A.de"
    ref.write_text("\n".join(ref.read_text(encoding="utf-8").splitlines()[:29]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="reference has 29 lines but the source has 30"):
        build_tasks(EvalConfig(suite="wmt22", wmt_dir=str(tmp_path / "w"), pairs=["en-de"]))


def test_wmt22_run_scores_with_the_wmt22_convention(tiny_llama3, tmp_path):
    out = tmp_path / "wmt"
    rc = main(["--suite", "wmt22", "--model", str(tiny_llama3), "--wmt-dir", str(WMT), "--pairs", "en-zh,de-en",
               "--limit", "3", "--beams", "2", "--max-new-tokens", "5", "--no-progress", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    by = {d["direction"]: d for d in res["directions"]}
    assert set(by) == {"en-zh", "de-en"}
    assert by["en-zh"]["scores"]["bleu"]["name"] == "bleu_zh"
    assert by["de-en"]["scores"]["bleu"]["name"] == "bleu_13a"
    assert by["de-en"]["scores"]["chrf"]["name"] == "chrf"  # WMT22: chrF with sacrebleu defaults
    assert len((out / "hyp" / "en-zh.txt").read_text(encoding="utf-8").splitlines()) == 3
    assert (out / "summary.md").is_file() and (out / "scores.png").is_file()
