"""Scale-out: N `--shard I/N` slices + `merge` give exactly the single-machine build."""

from __future__ import annotations

import json

import pytest
from buildkit import DEMO, SMALL, build, manifest, tree

from bayling.cli.build_data import main

EXTRA = ["--skip-bad-records"]


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> list[str]:
    """An extra source with bad records, so rejects.jsonl must be merged in a shard-independent order."""
    path = tmp_path_factory.mktemp("messy") / "messy.jsonl"
    lines = []
    for i in range(24):
        if i % 4 == 1:
            lines.append('{"instruction": "broken", ' if i % 8 == 1 else json.dumps({"instruction": "no output"}))
        else:
            lines.append(json.dumps({"instruction": f"Write a haiku about the number {i} and the sea.", "input": "",
                                     "output": f"Waves count to {i}."}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [f"instructions.messy.path={path}", "instructions.messy.category=en"]


@pytest.fixture(scope="module")
def single(tmp_path_factory, messy):
    out = tmp_path_factory.mktemp("single") / "data"
    assert build(out, *EXTRA, overrides=messy) == 0
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory, messy):
    base = tmp_path_factory.mktemp("shards")
    dirs = []
    for i in range(3):
        d = base / f"shard-{i}"
        assert build(d, *EXTRA, "--shard", f"{i}/3", overrides=messy) == 0
        dirs.append(d)
    return dirs


def test_merged_shards_equal_the_single_machine_build_byte_for_byte(single, shards, tmp_path):
    kept = [json.loads((d / "state.json").read_text())["kept"] for d in shards]
    assert all(k > 0 for k in kept)  # every slice really got work
    out = tmp_path / "merged"
    # shard folders given in any order
    assert main(["merge", "--no-progress", "--out", str(out), *map(str, reversed(shards))]) == 0
    assert tree(out) == tree(single)
    m = manifest(out)
    assert m["pipeline"]["read"] == manifest(single)["pipeline"]["read"]
    assert m["pipeline"]["bad_records"] == {"messy": 6}
    assert (out / "rejects.jsonl").read_text().count("\n") == 6


def test_merge_refuses_a_missing_slice(shards, tmp_path, capsys):
    assert main(["merge", "--out", str(tmp_path / "m"), str(shards[0]), str(shards[2])]) == 2
    err = capsys.readouterr().err
    assert "missing [1]" in err and err.count("\n") == 1
    assert not (tmp_path / "m").exists()


def test_merge_refuses_shards_of_different_recipes(shards, messy, tmp_path, capsys):
    other = tmp_path / "other-1"
    argv = ["--no-progress", "--recipe", str(DEMO), "--out", str(other), *EXTRA, "--shard", "1/3", *SMALL,
            *messy, "mix.target_total=700"]
    assert main(argv) == 0
    assert main(["merge", "--out", str(tmp_path / "m"), str(shards[0]), str(other), str(shards[2])]) == 2
    assert "'recipe'" in capsys.readouterr().err


def test_merge_refuses_a_folder_that_is_not_a_finished_shard(shards, tmp_path, capsys):
    (tmp_path / "half").mkdir()
    assert main(["merge", "--out", str(tmp_path / "m"), str(shards[0]), str(tmp_path / "half")]) == 2
    assert "no state.json" in capsys.readouterr().err


def test_shard_argument_is_checked(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "x"), "--recipe", str(DEMO), "--shard", "3/3"]) == 2
    assert "0 <= I < N" in capsys.readouterr().err
