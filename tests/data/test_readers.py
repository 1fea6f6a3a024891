"""Readers on the real samples shipped in data/samples, compressed or not, and every bad-input case."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import zstandard

from bayling.data.readers import (
    BadRecord,
    SourceSpec,
    open_lines,
    read_aligned_files,
    read_flores_dir,
    read_instructions,
    read_source,
    read_tsv_pairs,
)
from bayling.errors import DataError, OfflineError

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples" / "instruct"
FLORES = REPO / "data" / "samples" / "flores101_devtest_sample"
ALPACA = SAMPLES / "alpaca_en_300.json"
BELLE = SAMPLES / "belle_zh_300.jsonl"
SHAREGPT = SAMPLES / "fastchat_dummy_conversation.sharegpt.json"


def compress(src: Path, dst_dir: Path, kind: str) -> Path:
    data = src.read_bytes()
    if kind == "plain":
        out = dst_dir / src.name
        out.write_bytes(data)
    elif kind == "gz":
        out = dst_dir / (src.name + ".gz")
        out.write_bytes(gzip.compress(data))
    else:
        out = dst_dir / (src.name + ".zst")
        out.write_bytes(zstandard.ZstdCompressor().compress(data))
    return out


def assert_canonical(rec: dict, category: str) -> None:
    assert set(rec) >= {"id", "messages", "source", "category", "task", "langs"}
    assert rec["category"] == category
    roles = [m["role"] for m in rec["messages"] if m["role"] != "system"]
    assert roles[0] == "user" and roles[-1] == "assistant"
    assert all(a != b for a, b in zip(roles, roles[1:]))
    assert all(isinstance(m["content"], str) for m in rec["messages"])


@pytest.mark.parametrize("kind", ["plain", "gz", "zst"])
def test_alpaca_belle_sharegpt_samples_in_every_compression(tmp_path, kind):
    alpaca = list(read_instructions(compress(ALPACA, tmp_path, kind), source="alpaca", category="en"))
    raw = json.loads(ALPACA.read_text(encoding="utf-8"))
    assert len(alpaca) == len(raw) == 300
    assert alpaca[0]["id"] == "alpaca:0" and alpaca[299]["id"] == "alpaca:299"
    first = raw[0]
    assert alpaca[0]["messages"][0]["content"] == f"{first['instruction']}\n\n{first['input']}"
    assert alpaca[0]["messages"][1]["content"] == first["output"]
    assert alpaca[0]["langs"] == ["eng_Latn"]

    belle = list(read_instructions(compress(BELLE, tmp_path, kind), source="belle", category="zh"))
    assert len(belle) == 300 and belle[0]["langs"] == ["zho_Hans"]
    assert "小明" in belle[0]["messages"][0]["content"]

    convs = list(read_instructions(compress(SHAREGPT, tmp_path, kind), "sharegpt", source="sg", category="en"))
    assert len(convs) == 500
    assert convs[0]["messages"][0] == {"role": "user", "content": "Who are you?"}
    assert max(len(c["messages"]) for c in convs) > 2  # multi-turn conversations survive
    for rec in alpaca + belle + convs:
        assert_canonical(rec, rec["category"])


def test_openai_messages_jsonl_and_alpaca_history(tmp_path):
    path = tmp_path / "chat.jsonl"
    rows = [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello!"}]},
        {"instruction": "And now?", "input": "", "output": "Done.", "system": "S",
         "history": [["first question", "first answer"]]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    recs = list(read_instructions(path, source="chat", category="en"))
    assert [m["role"] for m in recs[0]["messages"]] == ["system", "user", "assistant"]
    assert [m["content"] for m in recs[1]["messages"]] == ["S", "first question", "first answer", "And now?", "Done."]


BAD_RECORDS = [
    ('{"instruction": "x", "output": 5}', "output", "must be a string"),
    ('{"instruction": "x"}', "output", "missing field 'output'"),
    ('{"conversations": []}', "conversations", "empty conversation"),
    ('{"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]}', "conversations",
     "alternate"),
    ('{"conversations": [{"from": "human", "value": "a"}]}', "conversations", "last turn"),
    ('{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "b"}]}',
     "messages[0].content", "must be a string"),
    ('{"messages": [{"role": "robot", "content": "a"}]}', "messages[0].role", "unknown role"),
    ('{"instruction": "x", "output": "y"', None, "malformed JSON"),
    ('["not", "an", "object"]', None, "must be a JSON object"),
    ('{"text": "no known format"}', "instruction", "unknown record format"),
]


@pytest.mark.parametrize("bad,field,message", BAD_RECORDS)
def test_bad_jsonl_record_raises_with_file_line_field(tmp_path, bad, field, message):
    path = tmp_path / "data.jsonl"
    good = '{"instruction": "Say hi", "input": "", "output": "hi"}'
    path.write_text(f"{good}\n{good}\n{bad}\n{good}\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        list(read_instructions(path, source="s", category="en"))
    assert err.value.path == str(path) and err.value.line == 3 and err.value.field == field
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(f"{path}:3")

    rejects: list[BadRecord] = []
    recs = list(read_instructions(path, source="s", category="en", on_bad=rejects.append))
    assert [r["id"] for r in recs] == ["s:0", "s:1", "s:3"]  # ids stay stable: the bad line keeps its index
    assert len(rejects) == 1 and rejects[0].line == 3 and message in rejects[0].reason
    assert rejects[0].raw  # the record itself goes to rejects.jsonl


def test_bad_element_of_json_array_reports_its_line(tmp_path):
    items = json.loads(ALPACA.read_text(encoding="utf-8"))[:5]
    items[3]["output"] = ["not", "a", "string"]
    path = tmp_path / "arr.json"
    path.write_text(json.dumps(items, indent=2), encoding="utf-8")
    expected_line = path.read_text(encoding="utf-8").splitlines().index("  {", 0) + 1
    lines = path.read_text(encoding="utf-8").splitlines()
    starts = [i + 1 for i, ln in enumerate(lines) if ln == "  {"]
    with pytest.raises(DataError) as err:
        list(read_instructions(path, source="a", category="en"))
    assert err.value.line == starts[3] and err.value.field == "output" and starts[0] == expected_line
    rejects: list[BadRecord] = []
    assert len(list(read_instructions(path, source="a", category="en", on_bad=rejects.append))) == 4
    assert rejects[0].line == starts[3]


def test_syntax_error_inside_json_array_is_one_line_error(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n{"instruction": "a", "output": "b"},\n{"instruction": "a" "output": "b"}\n]\n')
    with pytest.raises(DataError, match="malformed JSON") as err:
        list(read_instructions(path, source="a", category="en", on_bad=lambda bad: None))
    assert err.value.line == 3


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"instruction": "ok", "output": "ok"}\n' + b'{"instruction": "caf\xe9", "output": "x"}\n')
    with pytest.raises(DataError, match="invalid UTF-8") as err:
        list(read_instructions(path, source="s", category="en"))
    assert (err.value.path, err.value.line) == (str(path), 2)
    arr = tmp_path / "latin1.json"
    arr.write_bytes(b'[\n{"instruction": "ok", "output": "ok"},\n{"instruction": "caf\xe9", "output": "x"}]')
    with pytest.raises(DataError, match="invalid UTF-8") as err:
        list(read_instructions(compress(arr, tmp_path, "zst"), source="s", category="en"))
    assert err.value.line == 3


def test_missing_file_and_corrupt_gzip(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        list(read_instructions(tmp_path / "nope.json", source="s", category="en"))
    bad = tmp_path / "x.jsonl.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read compressed"):
        list(open_lines(bad))


def test_flores_dir_all_languages_and_a_choice(tmp_path):
    rows = list(read_flores_dir(FLORES))
    assert len(rows[0].texts) == 102 and rows[0].key == "flores:0"
    assert "eng_Latn" in rows[0].texts and "zho_Hans" in rows[0].texts and "zho_Hant" in rows[0].texts
    eng = (FLORES / "devtest" / "eng.devtest").read_text(encoding="utf-8").splitlines()
    assert [r.texts["eng_Latn"] for r in rows] == eng
    two = list(read_flores_dir(FLORES, ["deu_Latn", "zho_simpl"]))
    assert list(two[0].texts) == ["deu_Latn", "zho_Hans"]
    # FLORES-200 file names work too
    for code, name in (("deu", "deu_Latn"), ("fra", "fra_Latn")):
        (tmp_path / f"{name}.devtest").write_bytes((FLORES / "devtest" / f"{code}.devtest").read_bytes())
    rows200 = list(read_flores_dir(tmp_path))
    assert set(rows200[0].texts) == {"deu_Latn", "fra_Latn"} and len(rows200) == len(eng)
    # compressed per-language files
    packed = tmp_path / "packed"
    packed.mkdir()
    compress(tmp_path / "deu_Latn.devtest", packed, "gz")
    compress(tmp_path / "fra_Latn.devtest", packed, "zst")
    assert [r.texts for r in read_flores_dir(packed)] == [r.texts for r in rows200]


def test_flores_misaligned_names_both_files_and_counts(tmp_path):
    for code in ("eng", "deu"):
        (tmp_path / f"{code}.devtest").write_bytes((FLORES / "devtest" / f"{code}.devtest").read_bytes())
    lines = (tmp_path / "deu.devtest").read_text(encoding="utf-8").splitlines()
    (tmp_path / "deu.devtest").write_text("\n".join(lines[:-2]) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        list(read_flores_dir(tmp_path))
    msg = str(err.value)
    assert "deu.devtest" in msg and "eng.devtest" in msg
    assert f"{len(lines) - 2} lines" in msg and f"has {len(lines)}" in msg


def test_unknown_language_file_or_choice_is_an_error(tmp_path):
    with pytest.raises(DataError, match="unknown language code 'xxq'"):
        list(read_flores_dir(FLORES, ["xxq"]))
    (tmp_path / "klingon.devtest").write_text("Qapla'\n", encoding="utf-8")
    with pytest.raises(DataError, match="klingon"):
        list(read_flores_dir(tmp_path))


def test_tsv_pairs_and_bad_column_count(tmp_path):
    eng = (FLORES / "devtest" / "eng.devtest").read_text(encoding="utf-8").splitlines()
    zho = (FLORES / "devtest" / "zho_simpl.devtest").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "en-zh.tsv"
    body = [f"{e}\t{z}" for e, z in zip(eng, zho)]
    body.insert(2, "only one column")
    path.write_text("\n".join(body) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="2 tab-separated columns, got 1") as err:
        list(read_tsv_pairs(path, "en", "zh", source="tsv"))
    assert err.value.line == 3
    rejects: list[BadRecord] = []
    rows = list(read_tsv_pairs(compress(path, tmp_path, "gz"), "en", "zh", source="tsv", on_bad=rejects.append))
    assert len(rows) == len(eng) and len(rejects) == 1
    assert rows[0].texts == {"eng_Latn": eng[0], "zho_Hans": zho[0]}


def test_two_aligned_files_and_length_mismatch(tmp_path):
    src = FLORES / "devtest" / "eng.devtest"
    tgt = tmp_path / "fra.txt"
    fra = (FLORES / "devtest" / "fra.devtest").read_text(encoding="utf-8").splitlines()
    tgt.write_text("\n".join(fra) + "\n", encoding="utf-8")
    rows = list(read_aligned_files(src, compress(tgt, tmp_path, "zst"), "eng", "fr", source="pair"))
    assert len(rows) == len(fra) and rows[1].texts["fra_Latn"] == fra[1] and rows[1].key == "pair:1"
    tgt.write_text("\n".join(fra[:5]) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        list(read_aligned_files(src, tgt, "eng", "fr", source="pair"))
    assert str(tgt) in str(err.value) and str(src) in str(err.value) and "5 lines" in str(err.value)


def test_read_source_dispatch_and_offline_hub_error(tmp_path):
    recs = list(read_source(SourceSpec(path=str(BELLE), category="zh", name="belle")))
    assert len(recs) == 300 and recs[0]["id"] == "belle:0"
    rows = list(read_source(SourceSpec(path=str(FLORES), format="flores", langs=["eng", "deu"])))
    assert set(rows[0].texts) == {"eng_Latn", "deu_Latn"}
    with pytest.raises(OfflineError) as err:  # conftest sets HF_*_OFFLINE
        list(read_source(SourceSpec(path="BelleGroup/train_0.5M_CN", category="zh")))
    msg = str(err.value)
    assert "download --repo-type dataset BelleGroup/train_0.5M_CN --local-dir DIR" in msg and "recipe" in msg
    with pytest.raises(DataError, match="not found"):
        list(read_source(SourceSpec(path=str(tmp_path / "missing.json"), category="en")))
    with pytest.raises(DataError, match="unknown category"):
        list(read_source(SourceSpec(path=str(BELLE), category="fr")))


def test_empty_input_is_an_error(tmp_path):
    for name, body in (("empty.jsonl", ""), ("blank.jsonl", "\n\n"), ("empty.json", "[]\n")):
        path = tmp_path / name
        path.write_text(body, encoding="utf-8")
        with pytest.raises(DataError, match="no records"):
            list(read_instructions(path, source="s", category="en", on_bad=lambda bad: None))


def test_large_json_array_streams_with_exact_lines_across_chunks(tmp_path):
    items = json.loads(ALPACA.read_text(encoding="utf-8")) * 30  # 9000 elements, several MB
    items[8888] = {"instruction": "x", "output": None}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(items, indent=2, ensure_ascii=False), encoding="utf-8")
    assert path.stat().st_size > 3 * (1 << 20)  # spans several read chunks
    starts = [i + 1 for i, ln in enumerate(path.read_text(encoding="utf-8").splitlines()) if ln == "  {"]
    rejects: list[BadRecord] = []
    recs = list(read_instructions(path, source="big", category="en", on_bad=rejects.append))
    assert len(recs) == 8999 and recs[-1]["id"] == "big:8999"
    assert [r.line for r in rejects] == [starts[8888]] and rejects[0].field == "output"
