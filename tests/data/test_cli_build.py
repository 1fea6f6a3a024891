"""Bad input at the command line: one line naming file, line and problem, exit 2 -- or counted rejects.

Also: a build killed with kill -9 leaves nothing that looks complete, and the rerun is identical.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from buildkit import DEMO, REPO, SMALL, build, manifest, records, train_records, tree

from bayling.cli.build_data import main

GOOD = {"instruction": "Name three primary colours.", "input": "", "output": "Red, yellow and blue."}


def recipe(tmp: Path, sources: str, extra: str = "") -> Path:
    """A recipe of only the given sources (YAML fragment under `instructions:` / `parallel:`)."""
    path = tmp / "recipe.yaml"
    path.write_text(f"name: bad\n{sources}\nmix: {{target_total: 10}}\n{extra}", encoding="utf-8")
    return path


def jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


TOPICS = ["primary colours", "planets of the solar system", "rivers in Europe", "prime numbers below 20",
          "programming languages", "musical instruments", "chemical elements", "ancient philosophers"]


def good_line(i: int) -> bytes:
    """A valid Alpaca record, different enough from the others not to be a near duplicate."""
    return json.dumps({"instruction": f"Name three {TOPICS[i % len(TOPICS)]}.", "input": "",
                       "output": f"Here are three {TOPICS[i % len(TOPICS)]}: one, two and three."}).encode()


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(["--no-progress", *argv])
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert err.startswith("bayling-build-data: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)


def instr(path: Path, fmt: str = "alpaca") -> str:
    return f"instructions:\n  src: {{path: {path}, category: en, format: {fmt}}}"


CASES = {
    "malformed_json": ([good_line(0), b'{"instruction": "x",', good_line(2)], ["bad.jsonl:2"]),
    "missing_field": ([good_line(0), good_line(1), json.dumps({"instruction": "x"}).encode()],
                      ["bad.jsonl:3", "output"]),
    "mistyped_field": ([json.dumps({**GOOD, "instruction": 5}).encode()], ["bad.jsonl:1", "instruction"]),
    "invalid_utf8": ([good_line(0), b'{"instruction": "caf\xe9", "input": "", "output": "x"}'], ["bad.jsonl:2"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_instruction_record_is_one_line_error(case, tmp_path, capsys):
    lines, needles = CASES[case]
    src = jsonl(tmp_path / "bad.jsonl", lines)
    code, err = run(["--recipe", str(recipe(tmp_path, instr(src))), "--out", str(tmp_path / "o")], capsys)
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.tmp-*"))


def test_skip_bad_records_sends_them_to_rejects_with_reasons(tmp_path, capsys):
    lines = [good_line(0)]
    for bad in (CASES["malformed_json"][0][1], CASES["missing_field"][0][2], CASES["mistyped_field"][0][0],
                CASES["invalid_utf8"][0][1]):
        lines += [bad, good_line(len(lines))]
    src = jsonl(tmp_path / "bad.jsonl", lines)
    out = tmp_path / "o"
    code = main(["--no-progress", "--recipe", str(recipe(tmp_path, instr(src))), "--out", str(out),
                 "--skip-bad-records", "mix.valid_fraction=0", "mix.proportions={en: 1.0}", "mix.target_total=4"])
    assert code == 0, capsys.readouterr().err
    rejects = records(out / "rejects.jsonl")
    assert [r["line"] for r in rejects] == [2, 4, 6, 8]
    assert "invalid UTF-8" in rejects[-1]["reason"]
    assert all(r["reason"] and r["source"] == "src" and r["path"].endswith("bad.jsonl") for r in rejects)
    m = manifest(out)
    assert m["pipeline"]["bad_records"] == {"src": 4} and m["pipeline"]["rejects_file"] == "rejects.jsonl"
    assert m["pipeline"]["read"] == {"src": 5}
    assert len({r["id"] for r in train_records(out)}) == 4


def test_parallel_files_of_different_lengths(tmp_path, capsys):
    (tmp_path / "a.de").write_text("Hallo Welt.\nGuten Morgen.\nDanke.\n", encoding="utf-8")
    (tmp_path / "a.en").write_text("Hello world.\nGood morning.\n", encoding="utf-8")
    par = (f"parallel:\n  p: {{path: {tmp_path / 'a.de'}, tgt_path: {tmp_path / 'a.en'}, format: pair, "
           f"langs: [de, en]}}")
    code, err = run(["--recipe", str(recipe(tmp_path, par)), "--out", str(tmp_path / "o")], capsys)
    assert_one_line_error(code, err, "a.en", "different line counts")


def test_unknown_language(tmp_path, capsys):
    par = f"parallel:\n  p: {{path: {REPO / 'data/samples/flores_demo'}, format: flores, langs: [eng, klingon]}}"
    code, err = run(["--recipe", str(recipe(tmp_path, par)), "--out", str(tmp_path / "o")], capsys)
    assert_one_line_error(code, err, "klingon")


def test_missing_input_file(tmp_path, capsys):
    code, err = run(["--recipe", str(recipe(tmp_path, instr(tmp_path / "nope.json"))), "--out",
                     str(tmp_path / "o")], capsys)
    assert_one_line_error(code, err, "nope.json", "not found")


def test_empty_result(tmp_path, capsys):
    src = jsonl(tmp_path / "tiny.jsonl", [good_line(0)])
    code, err = run(["--recipe", str(recipe(tmp_path, instr(src))), "--out", str(tmp_path / "o"),
                     "filters.min_chars=1000"], capsys)
    assert_one_line_error(code, err, "produced no")


def test_hub_id_offline_names_the_id_and_the_override(tmp_path, capsys):
    src = "instructions:\n  belle_zh: {path: BelleGroup/train_0.5M_CN, category: zh, format: alpaca}"
    code, err = run(["--recipe", str(recipe(tmp_path, src)), "--out", str(tmp_path / "o")], capsys)
    assert_one_line_error(code, err, "BelleGroup/train_0.5M_CN", "instructions.belle_zh.path=DIR")


def test_unknown_recipe_key_suggests_the_right_one(tmp_path, capsys):
    code, err = run(["--recipe", str(DEMO), "--out", str(tmp_path / "o"), "mix.target_totl=5"], capsys)
    assert_one_line_error(code, err, "mix.target_totl", "did you mean mix.target_total")


def test_real_console_entry_prints_one_line_without_traceback(tmp_path):
    src = jsonl(tmp_path / "bad.jsonl", [good_line(0), b"not json at all"])
    proc = subprocess.run([sys.executable, "-m", "bayling.cli.build_data", "--recipe",
                           str(recipe(tmp_path, instr(src))), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert_one_line_error(proc.returncode, proc.stderr, "bad.jsonl:2")


def test_kill_minus_9_leaves_nothing_complete_and_the_rerun_is_identical(tmp_path):
    out = tmp_path / "data"
    extra = ["parallel.flores_demo.limit=120"]
    cmd = [sys.executable, "-m", "bayling.cli.build_data", "--no-progress", "--recipe", str(DEMO),
           "--out", str(out), *SMALL, *extra]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = tmp_path / f".data.tmp-{proc.pid}"
    deadline = time.time() + 60
    partial = tmp / ".work" / "shard-0" / "records.jsonl"
    while time.time() < deadline and not (partial.exists() and partial.stat().st_size > 0):
        assert proc.poll() is None, "build finished before it could be interrupted"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert tmp.is_dir()  # killed mid-way: the work is only in the hidden temporary sibling
    assert not out.exists()
    assert build(out, overrides=extra) == 0
    assert not tmp.exists()  # the rerun removed the dead build's leftovers
    ref = tmp_path / "ref"
    assert build(ref, overrides=extra) == 0
    assert tree(out) == tree(ref)
