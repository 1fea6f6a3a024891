"""Property tests: hostile bytes, JSON and unicode either become valid canonical records or reported errors.

Never another exception type (no KeyError/TypeError/UnicodeError traceback reaching the user), never a silent
drop: every input record is either yielded or handed to ``on_bad``.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bayling.data import filters as F
from bayling.data.decontam import ContaminationIndex
from bayling.data.dedup import Deduplicator
from bayling.data.readers import BadRecord, read_instructions, read_tsv_pairs
from bayling.errors import BaylingError, DataError

REPO = Path(__file__).resolve().parents[2]
FLORES = REPO / "data" / "samples" / "flores101_devtest_sample"
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REASONS = {None, "nul_character", "empty", "too_short", "too_long", "length_ratio", "identical_src_tgt", "repetition", "wrong_script",
           "langid_mismatch"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
turn = st.fixed_dictionaries({"from": st.sampled_from(["human", "gpt", "system", "user", "assistant", "bot", 3]),
                              "value": st.one_of(st.text(max_size=40), st.integers(), st.none())})
record_like = st.one_of(
    json_values,
    st.fixed_dictionaries({"instruction": st.one_of(st.text(max_size=40), st.integers()),
                           "output": st.one_of(st.text(max_size=40), st.none())},
                          optional={"input": st.text(max_size=20), "history": json_values}),
    st.fixed_dictionaries({"conversations": st.lists(turn, max_size=5)}),
    st.fixed_dictionaries({"messages": st.lists(
        st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool"]),
                               "content": st.one_of(st.text(max_size=40), st.integers())}), max_size=5)}),
)


def _valid(rec: dict) -> None:
    assert isinstance(rec["id"], str) and rec["category"] == "en"
    body = [m for m in rec["messages"] if m["role"] != "system"]
    assert body and body[-1]["role"] == "assistant"
    assert [m["role"] for m in body] == ["user", "assistant"] * (len(body) // 2)
    for m in rec["messages"]:
        assert isinstance(m["content"], str)
        m["content"].encode("utf-8")  # writable as UTF-8


def _consume(path: Path, *, lenient: bool) -> tuple[list[dict], list[BadRecord] | None]:
    """(records, bad records), or (records so far, None) when the file as a whole raised a DataError."""
    bad: list[BadRecord] = []
    recs: list[dict] = []
    try:
        for rec in read_instructions(path, source="h", category="en", on_bad=bad.append if lenient else None):
            _valid(rec)
            recs.append(rec)
    except DataError as err:
        assert err.path == str(path) and "\n" not in str(err)
        return recs, None
    return recs, bad


@SETTINGS
@given(data=st.binary(max_size=300), gz=st.booleans())
def test_random_bytes(data, gz):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("x.jsonl.gz" if gz else "x.jsonl")
        path.write_bytes(gzip.compress(data) if gz else data)
        _consume(path, lenient=True)
        _consume(path, lenient=False)


@SETTINGS
@given(items=st.lists(record_like, max_size=6), as_array=st.booleans())
def test_random_json_records_are_yielded_or_reported(items, as_array):
    # A JSON-lines file whose first line is an array is a JSON array (Alpaca files are often one line).
    assume(as_array or not items or not isinstance(items[0], list))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.json"
        if as_array:
            path.write_text(json.dumps(items, indent=1), encoding="utf-8")
        else:
            path.write_text("\n".join(json.dumps(i) for i in items) + "\n", encoding="utf-8")
        recs, bad = _consume(path, lenient=True)
        if bad is not None:  # the file was readable: every item is a record or a reported bad record
            assert len(recs) + len(bad) == len(items) > 0
            strict, strict_bad = _consume(path, lenient=False)
            assert (strict, strict_bad) == (recs, []) if not bad else strict_bad is None


@SETTINGS
@given(lines=st.lists(st.text(max_size=30), max_size=6))
def test_random_tsv_lines(lines):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.tsv"
        path.write_text("\n".join(ln.replace("\n", " ").replace("\r", " ") for ln in lines), encoding="utf-8",
                        errors="surrogatepass")
        bad: list[BadRecord] = []
        try:
            rows = list(read_tsv_pairs(path, "en", "de", source="t", on_bad=bad.append))
        except DataError:
            return  # e.g. a surrogate written as invalid UTF-8: reported with file and line
        for row in rows:
            assert set(row.texts) == {"eng_Latn", "deu_Latn"}


@SETTINGS
@given(src=st.text(max_size=80), tgt=st.text(max_size=80),
       langs=st.sampled_from([("eng_Latn", "zho_Hans"), ("deu", "jpn_Jpan"), ("tha", "ara"), ("ast", "bos")]))
def test_filters_return_a_known_reason(src, tgt, langs):
    cfg = F.FilterConfig()
    assert F.check_pair(src, tgt, langs[0], langs[1], cfg) in REASONS
    assert F.check_text(src, langs[1], cfg) in REASONS
    rec = {"messages": [{"role": "user", "content": src}, {"role": "assistant", "content": tgt}],
           "category": "zh"}
    assert F.check_record(rec, cfg) in REASONS


_INDEX: list[ContaminationIndex] = []


@SETTINGS
@given(texts=st.lists(st.text(max_size=120), max_size=3))
def test_dedup_and_decontam_accept_any_unicode(texts):
    if not _INDEX:
        _INDEX.append(ContaminationIndex.from_paths([FLORES]))
    assert _INDEX[0].check(texts) in (None, str(FLORES))
    d = Deduplicator()
    first = [d.check_text(t) for t in texts]
    assert all(r in (None, "exact_duplicate", "near_duplicate") for r in first)
    assert all(d.check_text(t) == "exact_duplicate" for t in texts)


def test_errors_are_bayling_errors():
    assert issubclass(DataError, BaylingError)
