"""Decontamination against a FLORES directory catches every planted overlap in every sample language."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from bayling.data.decontam import ContaminationIndex, canonical_tokens, eval_files
from bayling.data.readers import read_flores_dir, read_instructions
from bayling.errors import DataError

REPO = Path(__file__).resolve().parents[2]
FLORES = REPO / "data" / "samples" / "flores101_devtest_sample"
SAMPLES = REPO / "data" / "samples" / "instruct"


@pytest.fixture(scope="module")
def index():
    return ContaminationIndex.from_paths([FLORES])


@pytest.fixture(scope="module")
def rows():
    return list(read_flores_dir(FLORES))


def test_full_sentence_inside_a_longer_response_in_every_language(index, rows):
    missed = []
    for row in rows:
        for code, sent in row.texts.items():
            texts = ["Translate this, please.", f"Sure! Here is the text:\n« {sent} »\nAnything else?"]
            if index.check(texts) != str(FLORES):
                missed.append((row.key, code))
    assert missed == []


def test_shared_13_gram_in_every_language(index, rows):
    missed = []
    for row in rows:
        for code, sent in row.texts.items():
            toks = canonical_tokens(sent)
            if len(toks) < 16:
                continue
            window = " ".join(toks[2:15])  # 13 tokens of the middle, not the whole sentence
            if index.check([f"Unrelated opening words {window} and an unrelated ending."]) is None:
                missed.append((row.key, code))
    assert missed == []


def test_chinese_and_thai_fragments_without_spaces(index, rows):
    for code in ("zho_Hans", "zho_Hant", "tha_Thai", "jpn_Jpan", "khm_Khmr", "lao_Laoo", "mya_Mymr"):
        # a 20-character piece, cut anywhere, of a stretch without Latin names or digits
        fragment = next(f for r in rows for f in (r.texts[code][i:i + 20] for i in range(0, 40, 5))
                        if len(f) == 20 and not any(c.isascii() and c.isalnum() for c in f))
        assert len(canonical_tokens(fragment)) >= 13
        assert index.check([f"好的。{fragment}谢谢"]) == str(FLORES), fragment
    assert index.check(["我们今天去公园散步，天气很好，阳光明媚。"]) is None


def test_clean_real_records_are_kept(index):
    recs = list(read_instructions(SAMPLES / "alpaca_en_300.json", source="a", category="en"))
    recs += list(read_instructions(SAMPLES / "belle_zh_300.jsonl", source="b", category="zh"))
    hits = [index.check([m["content"] for m in r["messages"]]) for r in recs]
    assert hits.count(None) == len(recs)


def test_short_eval_sentences_caught_by_containment(tmp_path):
    evalset = tmp_path / "short.txt.gz"
    evalset.write_bytes(gzip.compress(b"The red kite circled above us.\nok\n"))
    idx = ContaminationIndex.from_paths([evalset], ngram=13)
    assert idx.check(["Look! THE RED KITE -- circled above us, twice."]) == str(evalset)
    assert idx.check(["The red kite circled above."]) is None  # a part of it is not the sentence
    assert idx.check(["ok"]) is None  # 1-token lines are not indexed


def test_wmt_style_directory_and_set_names(tmp_path, rows):
    wmt = tmp_path / "wmt22"
    (wmt / "sources").mkdir(parents=True)
    (wmt / "references").mkdir()
    (wmt / "README.md").write_text("Pedestrians crossing the road must look left and right first.\n")
    (wmt / "sources" / "generaltest2022.de-en.src.de").write_text(rows[0].texts["deu_Latn"] + "\n")
    (wmt / "references" / "generaltest2022.de-en.ref.A.en").write_text(rows[1].texts["eng_Latn"] + "\n")
    assert [f.name for f in eval_files(wmt)] == ["generaltest2022.de-en.ref.A.en", "generaltest2022.de-en.src.de"]
    idx = ContaminationIndex.from_paths([FLORES, wmt])
    assert idx.sets == [str(FLORES), str(wmt)]
    assert idx.check([rows[5].texts["fra_Latn"]]) == str(FLORES)
    only_wmt = ContaminationIndex.from_paths([wmt])
    assert only_wmt.check(["x " + rows[0].texts["deu_Latn"]]) == str(wmt)
    assert only_wmt.check(["Pedestrians crossing the road must look left and right first."]) is None


def test_missing_or_empty_eval_set_is_an_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        ContaminationIndex.from_paths([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no sentence files"):
        ContaminationIndex.from_paths([tmp_path / "empty"])


def test_index_is_compact(index, rows):
    n_sent = sum(len(r.texts) for r in rows)
    assert index.keys.dtype.itemsize == 8 and index.set_ids.dtype.itemsize == 2
    assert len(index) <= n_sent * 40  # at most one key per 13-gram window
