"""`bayling-eval` command line: config resolution and one-line errors (exit 2, no traceback) on bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from bayling.cli.evaluate import main

REPO = Path(__file__).resolve().parents[2]
SAMPLE = str(REPO / "eval" / "flores_sample")
WMT_REFS = REPO / "eval" / "wmt22_sample" / "references"


def _fails(argv: list[str], capsys, *needles: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("bayling-eval")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_print_config_merges_yaml_overrides_and_flags(tmp_path, capsys):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(yaml.safe_dump({"beams": 3, "langs": "deu", "limit": 7}), encoding="utf-8")
    assert main(["--config", str(cfg), "limit=9", "max_new_tokens=64", "--langs", "fra", "--print-config"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["beams"] == 3 and resolved["limit"] == 9 and resolved["max_new_tokens"] == 64
    assert resolved["langs"] == "fra"  # the flag wins over the file
    assert resolved["suite"] == "flores" and resolved["batch_size"] == 16


def test_unknown_config_key_is_one_line(tmp_path, capsys):
    _fails(["beam=3", "--print-config"], capsys, "unknown key", "did you mean beams")


def test_missing_model_and_out_are_named(capsys):
    _fails(["--suite", "flores"], capsys, "--model is required")


def test_unknown_language_lists_what_exists(tiny_llama2, tmp_path, capsys):
    line = _fails(["--suite", "flores", "--model", str(tiny_llama2), "--flores-dir", SAMPLE, "--langs", "deu,xyz",
                   "--out", str(tmp_path)], capsys, "unknown language code 'xyz'", "FLORES-101 has: afr, amh")
    assert "zho_simpl" in line


def test_missing_flores_file_and_offline_download(tiny_llama2, tmp_path, capsys):
    _fails(["--suite", "flores", "--model", str(tiny_llama2), "--flores-dir", SAMPLE, "--langs", "tam",
            "--out", str(tmp_path)], capsys, "tam.devtest", "no FLORES file for tam_Taml")
    _fails(["--suite", "flores", "--model", str(tiny_llama2), "--langs", "deu", "--out", str(tmp_path)],
           capsys, "offline", "--flores-dir")


def test_model_without_chat_template_names_the_template_option(tiny_llama2, tmp_path, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(tiny_llama2, bare)
    (bare / "chat_template.jinja").unlink()
    args = ["--suite", "flores", "--model", str(bare), "--flores-dir", SAMPLE, "--langs", "deu", "--directions",
            "x-en", "--limit", "2", "--beams", "1", "--max-new-tokens", "3", "--no-progress", "--out", str(tmp_path / "o")]
    _fails(args, capsys, "no chat template", "--template bayling|bayling3|llama2-chat")
    assert main(args + ["--template", "bayling"]) == 0


def test_missing_model_dir(tmp_path, capsys):
    _fails(["--suite", "flores", "--model", str(tmp_path / "nope"), "--flores-dir", SAMPLE, "--langs", "deu",
            "--out", str(tmp_path)], capsys, "does not exist")


def test_score_line_count_mismatch_and_empty_hypothesis(tmp_path, capsys):
    hyp = WMT_REFS / "generaltest2022.de-en.ref.B.en"
    _fails(["score", "--hyp", str(hyp), "--ref", str(REPO / "eval/flores_sample/eng.devtest"), "--tgt-lang", "en"],
           capsys, "reference has 20 lines but the hypothesis has 30")
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    _fails(["score", "--hyp", str(empty), "--ref", str(hyp), "--tgt-lang", "en"], capsys, "empty.txt", "empty")
    _fails(["score", "--hyp", str(tmp_path / "none.txt"), "--ref", str(hyp), "--tgt-lang", "en"], capsys, "not found")
    _fails(["score", "--hyp", str(hyp), "--ref", str(hyp), "--tgt-lang", "xx"], capsys, "unknown language")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\xfe broken\n")
    _fails(["score", "--hyp", str(bad), "--ref", str(bad), "--tgt-lang", "en"], capsys, "bad.txt:2", "UTF-8")


def test_wmt_suite_needs_wmt_dir(tiny_llama2, tmp_path, capsys):
    _fails(["--suite", "wmt22", "--model", str(tiny_llama2), "--out", str(tmp_path)], capsys, "--wmt-dir is required")
    _fails(["--suite", "wmt22", "--model", str(tiny_llama2), "--wmt-dir", str(tmp_path / "x"), "--out",
            str(tmp_path)], capsys, "WMT22 directory not found")


@pytest.mark.parametrize("bad", [["--beams", "0"], ["--directions", "en-x,xx-en"], ["--flores", "300"],
                                 ["--repetition-penalty", "0"]])
def test_bad_settings_are_one_line(bad, capsys):
    _fails(["--print-config", *bad], capsys)


def test_knowledge_suite_is_dispatched_to_the_harness(tiny_llama2, tmp_path, capsys):
    """--suite knowledge reaches bayling.eval.knowledge: a missing --task-dir is reported by it, one line."""
    _fails(["--suite", "knowledge", "--model", str(tiny_llama2), "--task-dir", str(tmp_path / "no_tasks"),
            "--out", str(tmp_path / "k")], capsys, "no_tasks")


def test_vllm_backend_without_vllm_is_one_line(tiny_llama2, tmp_path, capsys):
    pytest.importorskip("torch")
    from bayling.eval.generate import vllm_installed

    if vllm_installed():
        pytest.skip("vLLM is installed here; the error path cannot be exercised")
    _fails(["--suite", "flores", "--model", str(tiny_llama2), "--flores-dir", SAMPLE, "--langs", "deu",
            "--directions", "x-en", "--limit", "1", "--backend", "vllm", "--out", str(tmp_path)], capsys,
           "--backend vllm needs vLLM")


def test_suite_registry_drives_choices_help_validation_and_dispatch(tmp_path, capsys):
    """One dict (bayling.eval.config.SUITES): a new entry shows up in --help, validates, and dispatches."""
    from bayling.eval.config import SUITES

    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for name, suite in SUITES.items():
        assert name in help_text and suite.help.split(":")[0] in help_text
    cfg = tmp_path / "c.yaml"
    cfg.write_text("suite: ntrex\n", encoding="utf-8")
    _fails(["--config", str(cfg), "--print-config"], capsys, "unknown suite 'ntrex'", "flores, wmt22")
    assert {s.kind for s in SUITES.values()} == {"translation", "knowledge"}
    assert all(s.module for s in SUITES.values() if s.kind == "translation")
    assert all(s.tasks for s in SUITES.values() if s.kind == "knowledge")
