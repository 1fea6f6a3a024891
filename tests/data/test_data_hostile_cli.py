"""Hostile-but-realistic input to ``bayling-build-data``, each case through the real command's ``main(argv)``
(in-process, tests/hostile.py; the ``fresh`` cases in a fresh ``python -m bayling.cli.build_data`` process).

Every case ends in exactly one ``bayling-build-data: error: ...`` line and exit 2 (or, for ``--skip-bad-records``,
exit 0 with the bad record counted in rejects.jsonl and the manifest), never a traceback, and every file the
user owned before the run -- inputs, recipe, a folder given as ``--out`` -- is byte for byte unchanged.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hostile import assert_one_line_error, assert_untouched, run_cli, snapshot

PROG = "bayling-build-data"
GOOD = [{"instruction": f"Name three {t}.", "input": "", "output": f"Here are three {t}: one, two and three."}
        for t in ("primary colours", "planets", "rivers in Europe", "prime numbers", "musical instruments")]


def jsonl(records: list) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)


@dataclass
class Case:
    """Files to write under the case folder, the arguments (``{d}`` = that folder) and the expected error."""

    args: list[str]
    needles: tuple[str, ...] = ()
    files: dict[str, bytes | str] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    counted: bool = False  # exit 0 with the bad record counted instead of an error
    cwd_is_case: bool = False
    fresh: bool = False  # run as a real process (worker processes; the end-to-end proof of the in-process runs)


def recipe(sources: str, extra: str = "") -> str:
    return f"name: hostile\n{sources}\nmix: {{target_total: 20}}\n{extra}"


def instr(path: str = "{d}/in.jsonl", fmt: str = "alpaca", extra: str = "") -> str:
    return f"instructions:\n  src: {{path: '{path}', category: en, format: {fmt}{extra}}}"


FLORES_OK = {f"flores/{c}.devtest": "".join(f"Sentence {i} in {c} with enough words to pass.\n" for i in range(5))
             for c in ("eng", "deu")}
BASE = {"r.yaml": recipe(instr()), "in.jsonl": jsonl(GOOD)}
RUN = ["--recipe", "{d}/r.yaml", "--out", "{d}/out"]


def _mkfile(d: Path) -> None:
    (d / "afile").write_text("precious\n")


def _user_dir(d: Path) -> None:
    (d / "runs").mkdir()
    (d / "runs" / "run1.txt").write_text("weeks of training\n")
    (d / "runs" / "sub").mkdir()
    (d / "runs" / "sub" / "ckpt.bin").write_bytes(b"\x00\x01")


def _fake_manifest(d: Path) -> None:
    (d / "runs").mkdir()
    (d / "runs" / "manifest.json").write_text(json.dumps({"tool": "someone-else", "format": "x"}))
    (d / "runs" / "model.bin").write_bytes(b"weights")


def _shard_dir(d: Path) -> None:
    (d / "shard0").mkdir()
    (d / "shard0" / "notes.txt").write_text("not a shard\n")


def _fake_state(d: Path) -> None:
    (d / "shard0").mkdir()
    (d / "shard0" / "state.json").write_text(json.dumps({"format": "bayling-build-data-shard/1"}))


CASES: dict[str, Case] = {
    # --- command line
    "unknown_flag": Case(["--bogus", *RUN], ("unrecognized",), BASE),
    "shard_out_of_range": Case([*RUN, "--shard", "2/2"], ("0 <= I < N",), BASE),
    "shard_not_a_fraction": Case([*RUN, "--shard", "half"], ("I/N",), BASE),
    "seed_not_int": Case([*RUN, "--seed", "abc"], ("--seed",), BASE),
    "recipe_without_out": Case(["--recipe", "{d}/r.yaml"], ("--out is required",), BASE),
    "bare_word_argument": Case([*RUN, "oops"], ("oops",), BASE),
    "override_unknown_key": Case([*RUN, "mix.target_totl=5"], ("command line", "mix.target_total"), BASE),
    "override_wrong_type": Case([*RUN, "mix.target_total=lots"], ("command line", "integer"), BASE),
    "override_negative_limit": Case([*RUN, "instructions.src.limit=-1"], ("instructions.src.limit", ">= 0"), BASE),
    "override_negative_skip_rows": Case(
        [*RUN, "parallel.fl.skip_rows=-3"], ("parallel.fl.skip_rows", ">= 0"),
        {**FLORES_OK, "r.yaml": recipe("parallel:\n  fl: {path: '{d}/flores', format: flores}")}),
    "override_zero_total": Case([*RUN, "mix.target_total=0"], ("mix.target_total",), BASE),
    "override_bad_proportion": Case([*RUN, "mix.proportions.fr=0.5"], ("mix.proportions",), BASE),
    "override_bad_fraction": Case([*RUN, "filters.min_script_fraction=2"], ("min_script_fraction",), BASE),
    "unknown_direction": Case([*RUN, "synth.directions=[x-en,en-fr]"], ("en-fr",), BASE),
    # --- the recipe file
    "recipe_missing": Case(["--recipe", "{d}/nope.yaml", "--out", "{d}/out"], ("not found",)),
    "recipe_is_a_folder": Case(["--recipe", "{d}", "--out", "{d}/out"], ("not found",), BASE),
    "recipe_bad_yaml": Case(RUN, ("invalid yaml", "r.yaml"), {"r.yaml": "name: [unclosed\n"}, fresh=True),
    "recipe_is_a_list": Case(RUN, ("mapping",), {"r.yaml": "- a\n- b\n"}),
    "recipe_not_utf8": Case(RUN, ("utf-8",), {"r.yaml": b"name: caf\xe9\n"}),
    "recipe_typo_key": Case(RUN, ("instructons", "instructions"), {"r.yaml": "instructons: {}\n"}),
    "recipe_negative_limit": Case(RUN, ("r.yaml", "instructions.src.limit"),
                                  {**BASE, "r.yaml": recipe(instr(extra=", limit: -5"))}),
    "recipe_bad_category": Case(RUN, ("category",), {**BASE, "r.yaml": recipe(
        "instructions:\n  src: {path: '{d}/in.jsonl', category: fr}")}),
    "recipe_bad_format": Case(RUN, ("format",), {**BASE, "r.yaml": recipe(instr(fmt="csv"))}),
    "recipe_unknown_language": Case(RUN, ("klingon",), {**FLORES_OK, "r.yaml": recipe(
        "parallel:\n  fl: {path: '{d}/flores', format: flores, langs: [eng, klingon]}")}),
    "recipe_unknown_pivot_source": Case(RUN, ("pivot_with",), {**FLORES_OK, "tsv": "a b c d e\tf g h i j\n",
                                        "r.yaml": recipe("parallel:\n  p: {path: '{d}/tsv', format: tsv, "
                                                         "langs: [deu, eng], pivot_with: nothere}")}),
    # --- --out
    "out_under_a_regular_file": Case(["--recipe", "{d}/r.yaml", "--out", "{d}/afile/data"],
                                     ("regular file",), BASE, setup=_mkfile),
    "out_is_a_regular_file": Case(["--recipe", "{d}/r.yaml", "--out", "{d}/afile"], ("regular file",), BASE,
                                  setup=_mkfile),
    "out_is_current_dir": Case(["--recipe", "r.yaml", "--out", "."], ("current directory",), BASE,
                               cwd_is_case=True),
    "out_is_parent_dir": Case(["--recipe", "r.yaml", "--out", ".."], ("current directory",), BASE,
                              cwd_is_case=True),
    "out_is_a_users_folder": Case(["--recipe", "{d}/r.yaml", "--out", "{d}/runs"], ("not written by",), BASE,
                                  setup=_user_dir),
    "out_has_someone_elses_manifest": Case(["--recipe", "{d}/r.yaml", "--out", "{d}/runs"], ("not written by",),
                                           BASE, setup=_fake_manifest),
    "out_is_the_input_folder": Case(["--recipe", "{d}/r.yaml", "--out", "{d}/flores"], ("not written by",),
                                    {**FLORES_OK, "r.yaml": recipe("parallel:\n  fl: {path: '{d}/flores'}")}),
    "shard_out_is_a_users_folder": Case([*RUN[:2], "--out", "{d}/runs", "--shard", "0/2"], ("not written by",),
                                        BASE, setup=_user_dir),
    # --- inputs
    "input_missing": Case(RUN, ("not found",), {"r.yaml": recipe(instr())}),
    "input_empty": Case(RUN, ("no records",), {**BASE, "in.jsonl": b""}),
    "input_malformed_line": Case(RUN, ("in.jsonl:2", "malformed"), {**BASE, "in.jsonl": jsonl(GOOD[:1]) + b"{oops\n"}),
    "input_missing_field": Case(RUN, ("in.jsonl:1", "output"), {**BASE, "in.jsonl": jsonl([{"instruction": "x"}])}),
    "input_invalid_utf8": Case(RUN, ("in.jsonl:2", "utf-8"), {**BASE, "in.jsonl": jsonl(GOOD[:1]) + b'{"a": "\xff"}\n'}),
    "input_escaped_nul": Case(RUN, ("in.jsonl:1", "nul"), {**BASE, "in.jsonl": jsonl(
        [{"instruction": "Say hi\u0000", "input": "", "output": "Hi."}])}),
    "input_raw_nul": Case(RUN, ("in.jsonl:1",), {**BASE, "in.jsonl": b'{"instruction": "a\x00b", "output": "c"}\n'}),
    "input_lone_surrogate": Case(RUN, ("in.jsonl:1", "surrogate"), {**BASE, "in.jsonl": b'{"instruction": "\\ud800",'
                                                                     b' "input": "", "output": "c"}\n'}),
    "input_json_array_truncated": Case(RUN, ("in.jsonl",), {**BASE, "in.jsonl": json.dumps(GOOD).encode()[:-40]}),
    "input_record_is_a_list": Case(RUN, ("in.jsonl:1", "object"), {**BASE, "in.jsonl": b"[1, 2]\n[3]\n"}),
    "input_truncated_gzip": Case(RUN, ("compressed",), {"r.yaml": recipe(instr("{d}/in.jsonl.gz")),
                                                        "in.jsonl.gz": gzip.compress(jsonl(GOOD * 40))[:200]}),
    "input_binary_garbage": Case(RUN, ("in.jsonl",), {**BASE, "in.jsonl": bytes(range(256)) * 4}),
    "input_wrong_roles": Case(RUN, ("in.jsonl:1", "alternate"), {"r.yaml": recipe(instr(fmt="sharegpt")),
                                                                 "in.jsonl": jsonl([{"conversations": [
                                                                     {"from": "gpt", "value": "hi"}]}])}),
    "flores_different_lengths": Case(RUN, ("different line counts",), {
        **FLORES_OK, "flores/deu.devtest": "one line only\n",
        "r.yaml": recipe("parallel:\n  fl: {path: '{d}/flores', format: flores}")}),
    "flores_no_files": Case(RUN, ("no *.devtest",), {"flores/readme.txt": "x", "r.yaml": recipe(
        "parallel:\n  fl: {path: '{d}/flores', format: flores}")}),
    "tsv_without_langs": Case(RUN, ("langs",), {"p.tsv": "a\tb\n", "r.yaml": recipe(
        "parallel:\n  p: {path: '{d}/p.tsv', format: tsv}")}),
    "tsv_bad_columns": Case(RUN, ("p.tsv:1", "columns"), {"p.tsv": "only one column here\n", "r.yaml": recipe(
        "parallel:\n  p: {path: '{d}/p.tsv', format: tsv, langs: [deu, eng]}")}),
    "hub_ids_offline_all_listed": Case(RUN, ("org/one", "org/two", "--dry-run"), {"r.yaml": recipe(
        "instructions:\n  a: {path: org/one, category: en}\n  b: {path: org/two, category: zh}")}),
    "decontaminate_missing": Case([*RUN, "--decontaminate", "{d}/evalset"], ("evalset",), BASE),
    "decontaminate_empty_dir": Case([*RUN, "--decontaminate", "{d}/ev"], ("no sentence files",),
                                    {**BASE, "ev/README": "x"}),
    "tokenizer_missing": Case([*RUN, "--tokenizer", "{d}/no_tokenizer"], ("no_tokenizer",), BASE),
    "workers_zero": Case([*RUN, "--workers", "0"], ("--workers",), BASE),
    "json_without_dry_run": Case([*RUN, "--json"], ("--dry-run",), BASE),
    "snapshots_root_missing": Case([*RUN, "--snapshots", "{d}/nowhere"], ("--snapshots",), BASE),
    "bad_record_with_two_workers": Case([*RUN, "--workers", "2"], ("in.jsonl:2",),
                                        {**BASE, "in.jsonl": jsonl(GOOD[:1]) + b"{oops\n" + jsonl(GOOD[1:])},
                                        fresh=True),
    "group_unknown_language": Case(RUN, ("parallel_groups.g",), {"r.yaml": recipe(
        "parallel_groups:\n  g: {path: org/corpus, langs: [deu, klingon]}")}),
    "group_bad_code_system": Case(RUN, ("code",), {"r.yaml": recipe(
        "parallel_groups:\n  g: {path: org/corpus, langs: [deu], code: iso9999}")}),
    "snapshot_missing_config": Case([*RUN, "--snapshots", "{d}/snap"], ("opus", "de-en"), {
        "snap/org/opus/en-fr/train-00000-of-00001.parquet": b"PAR1", "r.yaml": recipe(
            "parallel:\n  p: {path: org/opus, format: translation, config: de-en, langs: [deu, eng]}")}),
    "snapshot_corrupt_parquet": Case([*RUN, "--snapshots", "{d}/snap"], ("parquet",), {
        "snap/org/opus/de-en/train-00000-of-00001.parquet": b"not parquet at all", "r.yaml": recipe(
            "parallel:\n  p: {path: org/opus, format: translation, config: de-en, langs: [deu, eng]}")}),
    # --- merge
    "merge_not_a_shard": Case(["merge", "--out", "{d}/m", "{d}/shard0"], ("state.json",), setup=_shard_dir),
    "merge_broken_state": Case(["merge", "--out", "{d}/m", "{d}/shard0"], ("state.json",), setup=_fake_state),
    "merge_missing_args": Case(["merge", "--out", "{d}/m"], ("shard",)),
    # --- counted rejects instead of errors
    "skip_escaped_nul_is_counted": Case([*RUN, "--skip-bad-records"], counted=True, files={
        **BASE, "in.jsonl": jsonl([*GOOD, {"instruction": "Say hi\u0000", "input": "", "output": "Hi."}])}),
    "skip_malformed_is_counted": Case([*RUN, "--skip-bad-records"], counted=True, fresh=True, files={
        **BASE, "in.jsonl": jsonl(GOOD) + b"{oops\n"}),
}


def _fill(value: str, d: Path) -> str:
    return value.replace("{d}", str(d))


@dataclass
class Outcome:
    folder: Path
    before: dict[str, str]
    inputs: dict[str, str]
    proc: subprocess.CompletedProcess


def _run_case(name: str, base: Path) -> Outcome:
    """Write the case's files, snapshot them, run the real command in a fresh process."""
    case = CASES[name]
    d = base / name / "case"
    d.mkdir(parents=True)
    for rel, content in case.files.items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(_fill(content, d).encode() if isinstance(content, str) else content)
    if case.setup:
        case.setup(d)
    before, inputs = snapshot(d), snapshot(*[d / rel for rel in case.files])
    args = [_fill(a, d) for a in case.args]
    if args[:1] != ["merge"]:
        args = ["--no-progress", *args]
    proc = run_cli(PROG, args, cwd=d if case.cwd_is_case else d.parent, timeout=300, fresh_process=case.fresh)
    return Outcome(d, before, inputs, proc)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, Outcome]:
    """All cases at once: the fresh-process ones in parallel threads (as many as there are cores), the
    in-process ones one at a time in between (run_cli serialises them)."""
    base = tmp_path_factory.mktemp("hostile")
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(zip(sorted(CASES), pool.map(lambda n: _run_case(n, base), sorted(CASES))))


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_build_data(name: str, outcomes: dict[str, Outcome]) -> None:
    case, out = CASES[name], outcomes[name]
    d, proc = out.folder, out.proc
    if case.counted:
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        manifest = json.loads((d / "out" / "manifest.json").read_text())
        assert sum(manifest["pipeline"]["bad_records"].values()) == 1
        assert len((d / "out" / "rejects.jsonl").read_text().splitlines()) == 1
        assert_untouched(out.inputs, *[d / rel for rel in case.files])
        return
    assert_one_line_error(proc, PROG, *case.needles)
    assert_untouched(out.before, d)


def test_there_are_at_least_40_cases() -> None:
    assert len(CASES) >= 40
    assert sum(c.fresh for c in CASES.values()) >= 3  # the end-to-end proof of the in-process runs
