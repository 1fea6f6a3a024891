"""benchmarks/merge_experts.py's guards on the held-out split: a mix holding a test or dev sentence, or an
output folder built with another split, stops the experiment (the merge goals are judged on those lines)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_loader import load_script


def merge_experts():
    return load_script("benchmarks/merge_experts.py", "merge_experts_bench")


def record(row: int, user: str, answer: str) -> str:
    return json.dumps({"id": f"flores_demo:flores_demo:{row}:deu_Latn-eng_Latn",
                       "messages": [{"role": "user", "content": f"Translate: {user}"},
                                    {"role": "assistant", "content": answer}]}) + "\n"


def mix(tmp_path: Path, lines: list[str]) -> Path:
    data = tmp_path / "data_base"
    (data / "train").mkdir(parents=True)
    (data / "train" / "part-00000.jsonl").write_text("".join(lines[:-1]), encoding="utf-8")
    (data / "valid.jsonl").write_text(lines[-1], encoding="utf-8")
    return data


def held(tmp_path: Path) -> Path:
    folder = tmp_path / "heldout"
    folder.mkdir()
    (folder / "eng.devtest").write_text("The cat sat on the mat.\nA held-out line.\n", encoding="utf-8")
    return folder


def test_a_clean_mix_passes_with_a_summary(tmp_path):
    me = merge_experts()
    data = mix(tmp_path, [record(5, "Ein Satz.", "A sentence."), record(7, "Noch einer.", "Another one.")])
    summary = me.check_held_out(data, [held(tmp_path)], first_free_row=5)
    assert summary == "data_base: 4 messages, 2 FLORES records (rows >= 5), 0 of 2 held-out sentences"


@pytest.mark.parametrize("lines", [
    [record(5, "Ein Satz.", "A sentence."), record(4, "Noch einer.", "Another one.")],  # a held-out row
    [record(5, "Ein Satz.", "the  CAT sat on the mat."), record(6, "x", "y")],  # a held-out sentence (case, spaces)
    [record(5, "x", "y"), record(6, "Die Katze: The cat sat on the mat.", "y")],  # inside a prompt, in valid
])
def test_a_mix_holding_held_out_data_stops_the_experiment(tmp_path, lines):
    me = merge_experts()
    with pytest.raises(SystemExit, match="holds held-out data"):
        me.check_held_out(mix(tmp_path, lines), [held(tmp_path)], first_free_row=5)


def test_an_output_folder_built_with_another_split_is_refused(tmp_path):
    me = merge_experts()
    me.check_split(tmp_path, 200, 20)
    me.check_split(tmp_path, 200, 20)  # the same split: fine
    with pytest.raises(SystemExit, match="Use another --out"):
        me.check_split(tmp_path, 50, 20)


def test_seeds_parse_and_reject_bad_lists():
    me = merge_experts()
    assert me.parse_seeds("0,1,2") == [0, 1, 2]
    for bad in ("0,x", "1,1"):
        with pytest.raises(SystemExit, match="--seeds"):
            me.parse_seeds(bad)


def test_seed_folder_reuse_never_claims_a_folder_it_did_not_create(tmp_path):
    """Extra PSO seeds copy the first seed's reference evaluations and mark the folder as bayling-merge's;
    a non-empty folder without that marker (a user's) is refused and left as it was."""
    from bayling.merge.checkpoint import MARKER

    bench = merge_experts()
    first = tmp_path / "seed0"
    (first / "evals" / "test" / "base").mkdir(parents=True)
    (first / "evals" / "test" / "base" / "results.json").write_text("{}", encoding="utf-8")
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(SystemExit, match="not a bayling-merge output folder"):
        bench.reuse_reference_evals(first, user, 3)
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt"]

    fresh = tmp_path / "seed1"
    bench.reuse_reference_evals(first, fresh, 3)
    assert (fresh / MARKER).is_file() and (fresh / "evals" / "test" / "base" / "results.json").is_file()
