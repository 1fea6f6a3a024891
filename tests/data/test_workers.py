"""``--workers N``: the per-record work runs in N processes and the data directory is byte for byte the same."""

from __future__ import annotations

from buildkit import build, manifest, tree


def test_two_workers_build_the_same_bytes_as_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert build(one) == 0
    assert build(two, "--workers", "2") == 0
    assert tree(one) == tree(two)
    assert manifest(two)["train"]["records"] > 0
