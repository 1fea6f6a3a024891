"""Dedup: exact and near duplicates on the prompt side of real samples; compact, deterministic, shardable."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from bayling.data.dedup import Deduplicator, normalize, prompt_text
from bayling.data.readers import read_instructions

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples" / "instruct"


@pytest.fixture(scope="module")
def real():
    en = list(read_instructions(SAMPLES / "alpaca_en_300.json", source="alpaca", category="en"))
    zh = list(read_instructions(SAMPLES / "belle_zh_300.jsonl", source="belle", category="zh"))
    return en + zh


def _rec(prompt: str, answer: str = "answer") -> dict:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}


def test_distinct_real_records_are_all_kept(real):
    d = Deduplicator()
    assert [d.add(sig) for sig in d.signatures(real)] == [None] * len(real)
    assert len(d.index) == len(real)


def test_exact_duplicates_after_normalisation(real):
    d = Deduplicator()
    for sig in d.signatures(real):
        d.add(sig)
    for rec in real[:50]:
        prompt = prompt_text(rec)
        variant = "  " + prompt.upper().replace(" ", "   ") + " !!"
        assert normalize(variant) == normalize(prompt)
        assert d.check(_rec(variant, "a different answer")) == "exact_duplicate"


def test_one_word_edit_is_a_near_duplicate(real):
    d = Deduplicator()
    for sig in d.signatures(real):
        d.add(sig)
    rng = random.Random(0)
    # Jaccard of character 5-grams after one edited word is >= 0.8 only for prompts of a few lines; on a
    # 50-character prompt one word is 20% of the text, which is not a near duplicate at threshold 0.8.
    long_prompts = [prompt_text(r) for r in real if len(normalize(prompt_text(r))) >= 120]
    assert len(long_prompts) >= 30
    caught = 0
    for prompt in long_prompts:
        words = prompt.split(" ")
        if len(words) >= 8:
            i = rng.randrange(len(words) // 4, 3 * len(words) // 4)
            edited = " ".join(words[:i] + ["zebra"] + words[i + 1:])
        else:  # Chinese: a word is about two characters
            i = rng.randrange(len(prompt) // 4, 3 * len(prompt) // 4)
            edited = prompt[:i] + "斑马" + prompt[i + 2:]
        assert edited != prompt
        caught += d.check(_rec(edited)) == "near_duplicate"
    assert caught / len(long_prompts) >= 0.9


def test_unrelated_and_template_sharing_prompts_are_not_near_duplicates():
    d = Deduplicator()
    a = "Summarise the history of the Roman Empire from its founding to the fall of Constantinople in 1453."
    b = "Explain how photosynthesis converts sunlight, water and carbon dioxide into glucose and oxygen."
    assert d.check(_rec(a)) is None and d.check(_rec(b)) is None


def test_chinese_near_duplicate():
    d = Deduplicator()
    a = "请详细介绍一下中国古代四大发明的历史背景，以及它们对世界文明发展产生的深远影响和意义。"
    b = "请详细介绍一下中国古代四大发明的历史背景，以及它们对人类文明发展产生的深远影响和意义。"
    assert d.check(_rec(a)) is None
    assert d.check(_rec(b)) == "near_duplicate"


def test_signatures_are_deterministic_across_processes(real):
    d = Deduplicator(seed=7)
    here = [tuple(d.signature(r)) for r in real[:3]]
    code = (
        "import json,sys; from bayling.data.readers import read_instructions; "
        "from bayling.data.dedup import Deduplicator; "
        f"recs=list(read_instructions({str(SAMPLES / 'alpaca_en_300.json')!r}, source='a', category='en'))[:3]; "
        "d=Deduplicator(seed=7); print(json.dumps([list(d.signature(r)) for r in recs]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=REPO).stdout
    import json

    there = [(e, tuple(b)) for e, b in json.loads(out)]
    assert there == here


def test_sharded_signatures_merged_equal_single_pass(real):
    dup = real[:100] + [_rec(prompt_text(r).upper()) for r in real[:20]] + real[100:]
    whole = Deduplicator()
    single = [whole.add(sig) for sig in whole.signatures(dup)]
    shards = [dup[i::3] for i in range(3)]  # each shard computes signatures on its own
    sigs_by_shard = [Deduplicator().signatures(s) for s in shards]
    merged = Deduplicator()
    order = sorted((k * 3 + i, sig) for i, sigs in enumerate(sigs_by_shard) for k, sig in enumerate(sigs))
    assert [merged.add(sig) for _, sig in order] == single
    assert single.count("exact_duplicate") == 20


def test_index_state_is_compact():
    rng = random.Random(1)
    vocab = [f"w{i}" for i in range(5000)]
    texts = [" ".join(rng.choice(vocab) for _ in range(12)) for _ in range(20000)]
    d = Deduplicator()
    sigs = d.signatures_text(texts)
    results = [d.add(s) for s in sigs]
    assert results.count(None) >= 19990
    d.index.exact.flush()
    for band in d.index.bands:
        band.flush()
    assert d.index.nbytes() / len(d.index) <= 8 * (1 + len(d.index.bands))  # 72 bytes per unique record


def test_batch_and_single_signatures_agree(real):
    d = Deduplicator()
    texts = [prompt_text(r) for r in real] + ["", "a", "短"]
    assert d.signatures_text(texts) == [d.signature_text(t) for t in texts]
