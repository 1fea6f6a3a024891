"""Labels from spans, drop/truncate rules, and the on-disk token cache (rank-0 build, others wait)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from train_helpers import FIXTURE, make_data_dir

from bayling.errors import BaylingError, DataError
from bayling.templates import get_template
from bayling.tokenizer import load_tokenizer
from bayling.train.cache import CacheSpec, get_or_build_cache, open_cache, prepare_cache
from bayling.train.tokenize import IGNORE_INDEX, tokenize_batch, tokenize_conversation

BAYLING = get_template("bayling")


@pytest.fixture(scope="module")
def tok(tiny_llama2):
    return load_tokenizer(str(tiny_llama2), BAYLING)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous True runs [a, b) of a boolean mask."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]))


def test_labels_cover_each_assistant_turn_and_its_eos_on_real_data(tok):
    records = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    convs = [r["messages"] for r in records]
    results = tokenize_batch(tok, BAYLING, convs, max_length=4096)
    assert tok.pad_token_id != tok.eos_token_id
    for msgs, res in zip(convs, results):
        assistants = [m["content"] for m in msgs if m["role"] == "assistant"]
        spans = runs(res.trainable)
        assert len(spans) == len(assistants)
        for (a, b), content in zip(spans, assistants):
            assert res.input_ids[b - 1] == tok.eos_token_id  # the model learns to stop
            assert tok.decode(res.input_ids[a : b - 1]).strip() == content.strip()
        assert (res.input_ids == tok.pad_token_id).sum() == 0
        labels = res.labels
        assert (labels[~res.trainable] == IGNORE_INDEX).all() and (labels[res.trainable] >= 0).all()


def test_one_call_equals_batch_call(tok):
    msgs = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！有什么可以帮你？"}]
    single = tokenize_conversation(tok, BAYLING, msgs, 512)
    batch = tokenize_batch(tok, BAYLING, [msgs, msgs], 512)
    assert single.input_ids.tolist() == batch[1].input_ids.tolist()
    assert single.trainable.tolist() == batch[1].trainable.tolist()


def test_no_trainable_token_is_a_reason_not_a_sample(tok):
    assert tokenize_conversation(tok, BAYLING, [{"role": "user", "content": "hi"}], 512) == "no_trainable_tokens"


def test_overlong_truncate_keeps_start_or_drops(tok):
    long_answer = "word " * 400
    msgs = [{"role": "user", "content": "Say many words."}, {"role": "assistant", "content": long_answer}]
    full = tokenize_conversation(tok, BAYLING, msgs, 4096)
    cut = tokenize_conversation(tok, BAYLING, msgs, 128)
    assert len(cut) == 128 and cut.truncated
    assert cut.input_ids.tolist() == full.input_ids[:128].tolist()
    assert tokenize_conversation(tok, BAYLING, msgs, 128, overlong="drop") == "too_long"
    late = [{"role": "user", "content": long_answer}, {"role": "assistant", "content": "ok"}]
    assert tokenize_conversation(tok, BAYLING, late, 128) == "no_trainable_after_truncation"


def test_template_whose_stop_token_is_not_special_fails_loudly(tok):
    """bayling3's <|eot_id|> is plain text to the Llama-2 tokenizer: the model would never learn to stop."""
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    with pytest.raises(BaylingError, match="stop token"):
        tokenize_conversation(tok, get_template("bayling3"), msgs, 512)


def test_cache_matches_direct_tokenisation_and_counts(token_cache_dir, tok):
    cache = open_cache(token_cache_dir)
    stats = json.loads((token_cache_dir / "stats.json").read_text())
    assert len(cache) == stats["train"]["kept"] == 300 and stats["train"]["records"] == 300
    assert stats["train"]["truncated"] > 0  # some fixture conversations exceed 512 tokens
    assert int(cache.lengths.sum()) == stats["train"]["tokens"]
    assert (token_cache_dir / "COMPLETE").is_file() and (token_cache_dir / "STATS.md").is_file()
    first = json.loads(FIXTURE.read_text(encoding="utf-8").splitlines()[0])
    direct = tokenize_conversation(tok, BAYLING, first["messages"], 512)
    ids, labels = cache.get(0)
    assert ids.tolist() == direct.input_ids.tolist() and labels.tolist() == direct.labels.tolist()
    assert cache.n_targets[0] == direct.n_targets
    assert len(open_cache(token_cache_dir, "valid")) == 100


def test_cache_is_reused_and_keyed(train_data_dir, tiny_llama2, token_cache_dir, tmp_path):
    root = token_cache_dir.parent
    stamp = (token_cache_dir / "COMPLETE").stat().st_mtime_ns
    again = prepare_cache(CacheSpec(train_data_dir, tiny_llama2, "bayling", 512, "truncate", root), show_progress=False)
    assert again == token_cache_dir and (again / "COMPLETE").stat().st_mtime_ns == stamp
    other = prepare_cache(CacheSpec(train_data_dir, tiny_llama2, "bayling", 256, "truncate", root), show_progress=False)
    assert other != token_cache_dir
    data2 = make_data_dir(tmp_path / "d2", n_train=298)
    changed = prepare_cache(CacheSpec(data2, tiny_llama2, "bayling", 512, "truncate", root), show_progress=False)
    assert changed not in (token_cache_dir, other)
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temp dirs left behind


def test_bad_data_errors_name_file_and_line(tiny_llama2, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        prepare_cache(CacheSpec(tmp_path / "missing", tiny_llama2, "bayling", 512, "truncate", tmp_path / "c"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="train/"):
        prepare_cache(CacheSpec(tmp_path / "empty", tiny_llama2, "bayling", 512, "truncate", tmp_path / "c"))
    d = make_data_dir(tmp_path / "bad", n_train=20)
    with open(d / "train" / "00001.jsonl", "a") as f:
        f.write('{"messages": [{"role": "user", "content": "x"}\n')
    with pytest.raises(DataError) as err:
        prepare_cache(CacheSpec(d, tiny_llama2, "bayling", 512, "truncate", tmp_path / "c"), show_progress=False)
    assert "00001.jsonl:11" in str(err.value)
    assert not any((tmp_path / "c").glob("*/COMPLETE"))


def test_all_dropped_is_an_error(tiny_llama2, tmp_path):
    d = tmp_path / "noasst"
    (d / "train").mkdir(parents=True)
    (d / "train" / "0.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(DataError, match="no usable training sample"):
        prepare_cache(CacheSpec(d, tiny_llama2, "bayling", 512, "truncate", tmp_path / "c"), show_progress=False)


def test_other_ranks_wait_for_rank0_and_never_build(tiny_llama2, tmp_path):
    d = make_data_dir(tmp_path / "d", n_train=40)
    spec = CacheSpec(d, tiny_llama2, "bayling", 512, "truncate", tmp_path / "c")
    got: dict = {}

    def waiter():
        got["path"] = get_or_build_cache(spec, rank=1, world_size=2, timeout_s=120, poll_s=0.05)
        got["when"] = time.time()

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.5)
    assert "path" not in got  # nothing built yet: rank 1 is still waiting
    built = get_or_build_cache(spec, rank=0, world_size=2)
    t.join(60)
    assert got["path"] == built and (built / "COMPLETE").is_file()
    assert len(list((tmp_path / "c").iterdir())) == 1


def test_waiting_rank_times_out_or_sees_rank0_failure(tiny_llama2, tmp_path):
    d = make_data_dir(tmp_path / "d", n_train=20)
    spec = CacheSpec(d, tiny_llama2, "bayling", 512, "truncate", tmp_path / "c")
    with pytest.raises(BaylingError, match="timed out"):
        get_or_build_cache(spec, rank=1, world_size=2, timeout_s=0.3, poll_s=0.05)
    with open(d / "valid.jsonl", "a") as f:
        f.write("not json\n")
    with pytest.raises(DataError):
        get_or_build_cache(spec, rank=0, world_size=2)
    with pytest.raises(BaylingError, match="rank 0 failed"):
        get_or_build_cache(spec, rank=1, world_size=2, timeout_s=30, poll_s=0.05)


def test_fixture_cache_key_and_token_counts_are_pinned(token_cache_dir):
    """Golden values (not only invariances): a change that shifts every sample the same way — template text,
    special tokens, truncation rule, the key's inputs — changes these. Update them deliberately, with the
    reason in the commit message."""
    import json

    meta = json.loads((token_cache_dir / "meta.json").read_text())
    stats = json.loads((token_cache_dir / "stats.json").read_text())
    assert meta["key"] == "7a77d9b0aa34c108e16c7226815077e033081db190cedc3aba30fbf6624d089c"
    assert meta["data_sha256"] == "73a473d69fea4f005aa9ffbccaac73fed01b12fb43d9207f90f49894cfd1d8b3"
    assert {k: stats["train"][k] for k in ("records", "kept", "truncated", "tokens", "trainable_tokens")} == {
        "records": 300, "kept": 300, "truncated": 26, "tokens": 59824, "trainable_tokens": 34388}
    assert {k: stats["valid"][k] for k in ("records", "kept", "truncated", "tokens", "trainable_tokens")} == {
        "records": 100, "kept": 100, "truncated": 7, "tokens": 19971, "trainable_tokens": 11724}
