"""`bayling-eval` under hostile-but-realistic input, through the real command (a fresh process each).

Every case must end in exactly one `bayling-eval: error: ...` line naming the problem, exit 2, no traceback,
and leave the whole workspace byte for byte as it was: no output folder created, no user file changed. The
workspace holds a fake but well-formed model folder (config.json + a whole safetensors file), FLORES and WMT22
samples copied from eval/, a user folder with notes in it, and a regular file; each case may damage a copy.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from tests.hostile import assert_one_line_error, assert_untouched, run_cli, snapshot

PROG = "bayling-eval"
REPO = Path(__file__).resolve().parents[2]
FLORES = REPO / "eval" / "flores_sample"
WMT = REPO / "eval" / "wmt22_sample"


def write_safetensors(path: Path, n_floats: int = 4, truncate: int = 0) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [n_floats], "data_offsets": [0, 4 * n_floats]}}).encode()
    data = struct.pack("<Q", len(header)) + header + b"\0" * (4 * n_floats)
    path.write_bytes(data[: len(data) - truncate] if truncate else data)


def make_workspace(ws: Path) -> None:
    model = ws / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama"}), encoding="utf-8")
    write_safetensors(model / "model.safetensors")
    (ws / "flores").mkdir()
    for stem in ("eng", "deu", "zho_simpl"):
        shutil.copy(FLORES / f"{stem}.devtest", ws / "flores" / f"{stem}.devtest")
    for sub in ("sources", "references"):
        (ws / "wmt" / sub).mkdir(parents=True)
    for name in ("sources/generaltest2022.de-en.src.de", "references/generaltest2022.de-en.ref.A.en"):
        shutil.copy(WMT / name, ws / "wmt" / name)
    (ws / "user").mkdir()
    (ws / "user" / "notes.txt").write_text("my notes\n", encoding="utf-8")
    (ws / "afile").write_text("a regular file\n", encoding="utf-8")
    (ws / "hyp.txt").write_text("Hallo Welt\nZweite Zeile\n", encoding="utf-8")
    (ws / "ref.txt").write_text("Hallo Welt\nZweite Zeile\n", encoding="utf-8")
    run = ws / "run_ok"
    run.mkdir()
    rec = {"direction": "deu_Latn-eng_Latn", "scores": {"chrf": {"name": "chrf++", "score": 50.0, "signature": "s"}}}
    (run / "results.json").write_text(json.dumps({"schema_version": 1, "suite": "flores", "directions": [rec]}),
                                      encoding="utf-8")


def _drop_last_line(ws: Path) -> None:
    p = ws / "flores" / "deu.devtest"
    p.write_text("".join(p.read_text(encoding="utf-8").splitlines(keepends=True)[:-1]), encoding="utf-8")


def _setup(ws: Path, what: str) -> None:
    """Damage one thing in the workspace (before the snapshot: the damaged file is the user's input)."""
    m = ws / "model"
    actions = {
        "no_config": lambda: (m / "config.json").unlink(),
        "bad_config": lambda: (m / "config.json").write_text("{not json", encoding="utf-8"),
        "no_weights": lambda: (m / "model.safetensors").unlink(),
        "truncated": lambda: write_safetensors(m / "model.safetensors", n_floats=1000, truncate=100),
        "garbage_weights": lambda: (m / "model.safetensors").write_bytes(b"\xff" * 64),
        "empty_weights": lambda: (m / "model.safetensors").write_bytes(b""),
        "bad_index": lambda: (m / "model.safetensors.index.json").write_text(
            json.dumps({"weight_map": {"a": "model-00002-of-00002.safetensors"}}), encoding="utf-8"),
        "misaligned": lambda: _drop_last_line(ws),
        "flores_latin1": lambda: (ws / "flores" / "deu.devtest").write_bytes("Grüße\n".encode("latin-1")),
        "flores_nul": lambda: (ws / "flores" / "deu.devtest").write_bytes(b"a\nb\x00c\n" * 10),
        "empty_dir": lambda: (ws / "empty").mkdir(),
        "wmt_misaligned": lambda: (ws / "wmt/references/generaltest2022.de-en.ref.A.en").write_text(
            "one line\n", encoding="utf-8"),
        "bad_yaml": lambda: (ws / "c.yaml").write_text("beams: [1,\n", encoding="utf-8"),
        "unknown_key_yaml": lambda: (ws / "c.yaml").write_text("beam: 3\n", encoding="utf-8"),
        "task_dir_no_yaml": lambda: ((ws / "tasks").mkdir(), (ws / "tasks" / "x.txt").write_text("x")),
        "hyp_latin1": lambda: (ws / "hyp.txt").write_bytes("Grüße\nb\n".encode("latin-1")),
        "hyp_nul": lambda: (ws / "hyp.txt").write_bytes(b"a\x00\nb\n"),
        "hyp_empty": lambda: (ws / "hyp.txt").write_text("", encoding="utf-8"),
        "ref_short": lambda: (ws / "ref.txt").write_text("only one\n", encoding="utf-8"),
        "run_no_results": lambda: (ws / "run_empty").mkdir(),
        "run_bad_json": lambda: ((ws / "run_bad").mkdir(), (ws / "run_bad" / "results.json").write_text("{x")),
        "run_list": lambda: ((ws / "run_bad").mkdir(), (ws / "run_bad" / "results.json").write_text("[1, 2]")),
        "run_number": lambda: ((ws / "run_bad").mkdir(), (ws / "run_bad" / "results.json").write_text("5")),
        "run_knowledge": lambda: ((ws / "run_bad").mkdir(), (ws / "run_bad" / "results.json").write_text(
            json.dumps({"suite": "knowledge", "tasks": {}}))),
        "run_bad_record": lambda: ((ws / "run_bad").mkdir(), (ws / "run_bad" / "results.json").write_text(
            json.dumps({"suite": "flores", "schema_version": 1, "directions": [{"direction": "x"}]}))),
    }
    actions[what]()


FL = ["--suite", "flores", "--model", "{ws}/model", "--flores-dir", "{ws}/flores", "--langs", "deu"]
FL_OUT = [*FL, "--out", "{ws}/out"]
WM = ["--suite", "wmt22", "--model", "{ws}/model", "--wmt-dir", "{ws}/wmt", "--pairs", "de-en", "--out", "{ws}/out"]
KN = ["--suite", "knowledge", "--model", "{ws}/model", "--out", "{ws}/out"]
SC = ["score", "--hyp", "{ws}/hyp.txt", "--ref", "{ws}/ref.txt", "--tgt-lang", "de"]
CMP = ["compare", "{ws}/run_ok"]

# (id, argv with {ws}, setup or None, needles the one error line must contain, cwd relative to ws or None)
CASES = [
    # --out and the folder rule
    ("out-under-regular-file", [*FL, "--out", "{ws}/afile/sub"], None, ["under a regular file"], None),
    ("out-is-regular-file", [*FL, "--out", "{ws}/afile"], None, ["is a regular file"], None),
    ("out-dot-in-user-folder", [*FL, "--out", "."], None, ["did not write"], "user"),
    ("out-user-folder", [*FL, "--out", "{ws}/user"], None, ["did not write", "user"], None),
    ("out-model-folder", [*FL, "--out", "{ws}/model"], None, ["did not write"], None),
    ("wmt-out-under-file", [*WM[:-1], "{ws}/afile/x"], None, ["under a regular file"], None),
    ("knowledge-out-user-folder", [*KN[:-1], "{ws}/user"], None, ["did not write"], None),
    # device and backend
    ("device-cuda-without-gpu", [*FL_OUT, "--device", "cuda"], None, ["no CUDA GPU"], None),
    ("device-cuda-index", [*FL_OUT, "--device", "cuda:7"], None, ["cuda:7"], None),
    ("device-unknown", [*FL_OUT, "--device", "gpu0"], None, ["unknown device"], None),
    ("backend-vllm-without-vllm", [*FL_OUT, "--backend", "vllm"], None, ["vllm"], None),
    ("dtype-unknown", [*FL_OUT, "--dtype", "float64"], None, ["invalid choice"], None),
    ("template-unknown", [*FL_OUT, "--template", "nosuch"], None, ["nosuch"], None),
    # numbers
    ("limit-zero", [*FL_OUT, "--limit", "0"], None, ["limit", ">= 1"], None),
    ("limit-negative", [*FL_OUT, "--limit", "-3"], None, ["limit"], None),
    ("limit-not-int", [*FL_OUT, "--limit", "abc"], None, ["invalid int"], None),
    ("beams-zero", [*FL_OUT, "--beams", "0"], None, ["beams"], None),
    ("batch-size-zero", [*FL_OUT, "--batch-size", "0"], None, ["batch_size"], None),
    ("max-new-tokens-zero", [*FL_OUT, "--max-new-tokens", "0"], None, ["max_new_tokens"], None),
    ("repetition-penalty-zero", [*FL_OUT, "--repetition-penalty", "0"], None, ["repetition_penalty"], None),
    ("num-fewshot-negative", [*KN, "--num-fewshot", "-1"], None, ["num_fewshot"], None),
    # config and overrides
    ("suite-unknown", ["--suite", "bogus", "--model", "{ws}/model", "--out", "{ws}/out"], None,
     ["invalid choice"], None),
    ("override-unknown-key", [*FL_OUT, "beam=3"], None, ["command line", "did you mean beams"], None),
    ("override-bad-type", [*FL_OUT, "beams=many"], None, ["command line", "beams"], None),
    ("override-not-key-value", [*FL_OUT, "beams"], None, ["key=value"], None),
    ("config-missing", [*FL_OUT, "--config", "{ws}/none.yaml"], None, ["config file not found"], None),
    ("config-bad-yaml", [*FL_OUT, "--config", "{ws}/c.yaml"], "bad_yaml", ["c.yaml", "invalid YAML"], None),
    ("config-unknown-key", [*FL_OUT, "--config", "{ws}/c.yaml"], "unknown_key_yaml", ["c.yaml", "beam"], None),
    ("model-missing-flag", ["--suite", "flores", "--out", "{ws}/out"], None, ["--model is required"], None),
    # the model folder
    ("model-path-missing", [*FL_OUT[:3], "{ws}/nomodel", *FL_OUT[4:]], None, ["nomodel"], None),
    ("model-no-config", FL_OUT, "no_config", ["no config.json"], None),
    ("model-config-not-json", FL_OUT, "bad_config", ["config.json", "not valid JSON"], None),
    ("model-no-weights", FL_OUT, "no_weights", ["no weights"], None),
    ("model-truncated-safetensors", FL_OUT, "truncated", ["model.safetensors", "truncated"], None),
    ("model-garbage-safetensors", FL_OUT, "garbage_weights", ["not a safetensors file"], None),
    ("model-empty-weights", FL_OUT, "empty_weights", ["empty"], None),
    ("model-index-missing-shard", FL_OUT, "bad_index", ["model-00002-of-00002"], None),
    # FLORES data
    ("flores-dir-missing", [*FL_OUT[:5], "{ws}/noflores", *FL_OUT[6:]], None, ["FLORES directory not found"], None),
    ("flores-dir-is-file", [*FL_OUT[:5], "{ws}/afile", *FL_OUT[6:]], None, ["FLORES directory not found"], None),
    ("flores-dir-empty", [*FL_OUT[:5], "{ws}/empty", *FL_OUT[6:]], "empty_dir", ["no *.devtest"], None),
    ("flores-lang-unknown", [*FL_OUT[:7], "deu,xyz", *FL_OUT[8:]], None, ["xyz"], None),
    ("flores-lang-absent", [*FL_OUT[:7], "fra", *FL_OUT[8:]], None, ["fra.devtest"], None),
    ("flores-direction-unknown", [*FL_OUT, "--directions", "en-xx"], None, ["en-xx"], None),
    ("flores-misaligned", FL_OUT, "misaligned", ["line-aligned"], None),
    ("flores-misaligned-with-limit", [*FL_OUT, "--limit", "5"], "misaligned", ["line-aligned", "19"], None),
    ("flores-invalid-utf8", FL_OUT, "flores_latin1", ["deu.devtest", "invalid UTF-8"], None),
    ("flores-nul", FL_OUT, "flores_nul", ["deu.devtest:2", "NUL"], None),
    # WMT22 data
    ("wmt-dir-required", WM[:4] + WM[6:], None, ["--wmt-dir is required"], None),
    ("wmt-pair-unknown", [*WM[:7], "xx-yy", *WM[8:]], None, ["xx-yy"], None),
    ("wmt-source-missing", [*WM[:7], "en-de", *WM[8:]], None, ["source file for en-de"], None),
    ("wmt-misaligned", WM, "wmt_misaligned", ["ref.A.en", "1 lines"], None),
    # knowledge
    ("task-dir-missing", [*KN, "--task-dir", "{ws}/notasks"], None, ["task directory"], None),
    ("task-dir-without-yaml", [*KN, "--task-dir", "{ws}/tasks"], "task_dir_no_yaml", ["no lm-eval task YAML"], None),
    ("data-dir-missing", [*KN, "--tasks", "arc_de", "--data-dir", "{ws}/nodata"], None, ["--data-dir is not a folder"],
     None),
    # score
    ("score-json-under-file", [*SC, "--json", "{ws}/afile/s.json"], None, ["under a regular file"], None),
    ("score-json-is-folder", [*SC, "--json", "{ws}/user"], None, ["is a folder"], None),
    ("score-json-overwrites-hyp", [*SC, "--json", "{ws}/hyp.txt"], None, ["would overwrite"], None),
    ("score-hyp-missing", ["score", "--hyp", "{ws}/none", *SC[3:]], None, ["hypothesis file not found"], None),
    ("score-hyp-is-folder", ["score", "--hyp", "{ws}/user", *SC[3:]], None, ["is a folder"], None),
    ("score-ref-misaligned", SC, "ref_short", ["ref.txt", "1 lines"], None),
    ("score-hyp-empty", SC, "hyp_empty", ["empty"], None),
    ("score-hyp-invalid-utf8", SC, "hyp_latin1", ["hyp.txt:1", "invalid UTF-8"], None),
    ("score-hyp-nul", SC, "hyp_nul", ["hyp.txt:1", "NUL"], None),
    ("score-tokenize-unknown", [*SC, "--tokenize", "bogus"], None, ["bogus"], None),
    ("score-target-outside-registry", [*SC[:-1], "xyz"], None, ["xyz", "--tokenize"], None),
    ("score-chrf-word-order", [*SC, "--chrf-word-order", "5"], None, ["invalid choice"], None),
    ("score-no-ref", ["score", "--hyp", "{ws}/hyp.txt", "--tgt-lang", "de"], None, ["--ref"], None),
    # compare
    ("compare-one-run", [*CMP, "--out", "{ws}/cmp"], None, ["at least two"], None),
    ("compare-out-under-file", [*CMP, "{ws}/run_ok", "--out", "{ws}/afile/c"], None, ["under a regular file"], None),
    ("compare-out-user-folder", [*CMP, "{ws}/run_ok", "--out", "{ws}/user"], None, ["did not write"], None),
    ("compare-no-results", [*CMP, "{ws}/run_empty", "--out", "{ws}/cmp"], "run_no_results", ["no results.json"], None),
    ("compare-bad-json", [*CMP, "{ws}/run_bad", "--out", "{ws}/cmp"], "run_bad_json", ["not valid JSON"], None),
    ("compare-json-list", [*CMP, "{ws}/run_bad", "--out", "{ws}/cmp"], "run_list", ["directions"], None),
    ("compare-json-number", [*CMP, "{ws}/run_bad", "--out", "{ws}/cmp"], "run_number", ["directions"], None),
    ("compare-knowledge-run", [*CMP, "{ws}/run_bad", "--out", "{ws}/cmp"], "run_knowledge", ["directions"], None),
    ("compare-bad-record", [*CMP, "{ws}/run_bad", "--out", "{ws}/cmp"], "run_bad_record", ["direction #1"], None),
]


# Also run as a real `python -m bayling.cli.evaluate` process (tests/hostile.py: the rest run in-process).
FRESH = {"out-dot-in-user-folder", "model-truncated-safetensors", "score-hyp-invalid-utf8", "limit-not-int"}


@pytest.mark.parametrize("case_id,argv,setup,needles,cwd", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_one_line_and_touches_nothing(case_id, argv, setup, needles, cwd, tmp_path):
    if case_id.startswith("device-cuda"):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    if case_id == "backend-vllm-without-vllm":
        pytest.importorskip("torch")
        from bayling.eval.generate import vllm_installed

        if vllm_installed():
            pytest.skip("vLLM is installed here")
    make_workspace(tmp_path)
    if setup:
        _setup(tmp_path, setup)
    before = snapshot(tmp_path)
    args = [a.replace("{ws}", str(tmp_path)) for a in argv]
    proc = run_cli(PROG, args, cwd=tmp_path / cwd if cwd else tmp_path, timeout=120, fresh_process=case_id in FRESH)
    assert_one_line_error(proc, PROG, *needles)
    assert_untouched(before, tmp_path)


def test_case_count_meets_the_contract():
    assert len(CASES) >= 40
    assert FRESH <= {c[0] for c in CASES}
