"""Cross-lingual synthesis on real FLORES-101 lines: every language, both pivots, determinism, chains, pivot join."""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from bayling.config import load_config
from bayling.data.pivot import pivot_join
from bayling.data.synth import (
    DIRECTIONS,
    SynthConfig,
    SynthStats,
    bayling_prompt,
    group_language,
    load_phrasings,
    synthesize,
)
from bayling.errors import BaylingError, ConfigError, DataError
from bayling.languages import CHINESE, ENGLISH, flores101_languages, get_language

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "flores101_devtest_sample" / "devtest"
EN, ZH = ENGLISH.code, CHINESE.code
CJK = re.compile(r"[\u4e00-\u9fff]")


def _raw_columns() -> dict[str, list[str]]:
    return {
        get_language(p.stem).code: p.read_text(encoding="utf-8").splitlines()
        for p in SAMPLE.glob("*.devtest")
    }


RAW = _raw_columns()
# what the records must hold: synthesis strips surrounding whitespace (some FLORES lines end in a space)
COLUMNS = {code: [ln.strip() for ln in lines] for code, lines in RAW.items()}
N_ROWS = len(COLUMNS[EN])
ROWS = [(f"flores101:{i}", {code: lines[i] for code, lines in RAW.items()}) for i in range(N_ROWS)]


@pytest.fixture(scope="module")
def full():
    stats = SynthStats()
    records = list(synthesize(ROWS, SynthConfig(seed=7), "flores101_sample", stats))
    return records, stats


def _template_of(rec: dict, pivot: str) -> str:
    """Undo the filling of a one-turn instruction: the phrasing it came from (names in the pivot language)."""
    src, tgt = rec["langs"]
    user = rec["messages"][0]["content"].replace(COLUMNS[src][int(rec["id"].split(":")[2])], "{text}")
    names = {get_language(src).name(pivot): "{src_lang}", get_language(tgt).name(pivot): "{tgt_lang}"}
    for name in sorted(names, key=len, reverse=True):
        user = user.replace(name, names[name])
    return user


def _pivot(rec: dict) -> str:
    fam = rec["direction"]
    if EN in rec["langs"] and ZH in rec["langs"]:
        return "zh" if CJK.search(_template_of(rec, "zh").replace("{text}", "")) else "en"
    return "en" if EN in fam else "zh"


def test_sample_is_all_flores101_languages():
    assert sorted(COLUMNS) == sorted(lg.code for lg in flores101_languages())
    assert len(COLUMNS) == 102 and all(len(v) == N_ROWS for v in COLUMNS.values())


def test_every_language_gets_all_four_directions_with_reference_answers(full):
    records, stats = full
    by_dir = defaultdict(list)
    for rec in records:
        if rec["task"] == "translation":
            by_dir[rec["direction"]].append(rec)
    for lang in flores101_languages():
        x = lang.code
        if x in (EN, ZH):
            continue
        for src, tgt in ((x, EN), (EN, x), (x, ZH), (ZH, x)):
            recs = by_dir[f"{src}-{tgt}"]
            assert len(recs) == N_ROWS, (src, tgt)
            for rec in recs:
                row = int(rec["id"].split(":")[2])
                assert rec["messages"][1] == {"role": "assistant", "content": COLUMNS[tgt][row]}
                assert COLUMNS[src][row] in rec["messages"][0]["content"]
                assert rec["category"] == "cross_lingual" and rec["langs"] == [src, tgt]
    assert len(by_dir[f"{EN}-{ZH}"]) == len(by_dir[f"{ZH}-{EN}"]) == N_ROWS
    assert stats.records["x-en"] == stats.records["zh-x"] == 100 * N_ROWS


def test_instruction_is_in_the_pivot_language_and_names_languages_in_it(full):
    records, _ = full
    used = {"en": Counter(), "zh": Counter()}
    named_targets = {"en": set(), "zh": set()}
    for rec in records:
        if rec["task"] != "translation":
            continue
        pivot = _pivot(rec)
        template = _template_of(rec, pivot)
        # Only the phrasing file's text remains after removing the sentence and the pivot-language names:
        # so the instruction is in the pivot language and names both languages in that language.
        assert template in load_phrasings(f"translation_{pivot}"), (rec["id"], template)
        frame = template.replace("{text}", "").replace("{src_lang}", "").replace("{tgt_lang}", "")
        if pivot == "en":
            assert frame.isascii() and not CJK.search(frame)
        else:
            assert CJK.search(frame) and not re.search(r"[A-Za-z]", frame)
        used[pivot][template] += 1
        named_targets[pivot].add(rec["langs"][1])
    assert len(used["en"]) >= 10 and len(used["zh"]) >= 10
    assert len(load_phrasings("translation_en")) >= 10 and len(load_phrasings("translation_zh")) >= 10
    # every FLORES-101 language was named (as a target) in English and in Chinese instructions
    all_codes = {lg.code for lg in flores101_languages()}
    assert named_targets["en"] == named_targets["zh"] == all_codes


def test_bayling1_prompts_are_first_and_available_for_evaluation():
    assert (
        load_phrasings("translation_en")[0] == "Provide the {tgt_lang} translation for this sentence: {text}"
    )
    assert load_phrasings("translation_zh")[0] == "提供这句话的{tgt_lang}翻译：{text}"
    assert (
        bayling_prompt("de", "Hallo {x}", "en")
        == "Provide the German translation for this sentence: Hallo {x}"
    )
    assert bayling_prompt("de", "Hallo", "zh") == "提供这句话的德语翻译：Hallo"


def test_same_seed_same_output_other_seed_other_phrasings(full):
    records, _ = full
    again = list(synthesize(ROWS, SynthConfig(seed=7), "flores101_sample"))
    assert again == records
    other = list(synthesize(ROWS, SynthConfig(seed=8), "flores101_sample"))
    one_turn = [r for r in records if r["task"] == "translation"]
    other_one = {r["id"]: r for r in other if r["task"] == "translation"}
    assert set(other_one) == {r["id"] for r in one_turn}
    changed = sum(other_one[r["id"]]["messages"][0] != r["messages"][0] for r in one_turn)
    assert changed > 0.5 * len(one_turn)
    assert all(other_one[r["id"]]["messages"][1] == r["messages"][1] for r in one_turn)


def test_any_subset_of_rows_gives_the_full_builds_records_for_those_rows(full):
    records, _ = full
    by_row = defaultdict(list)
    for rec in records:
        by_row[rec["id"].split(":")[2]].append(rec)
    subset = [ROWS[i] for i in (11, 3, 7)]
    random.Random(0).shuffle(subset)
    part = list(synthesize(subset, SynthConfig(seed=7), "flores101_sample"))
    expected = [rec for key, _ in subset for rec in by_row[key.split(":")[1]]]
    assert part == expected


def test_phrasings_limit_keeps_only_the_first_phrasings(full):
    """``synth.phrasings=1``: every instruction is BayLing 1's prompt (what evaluation asks); 0 keeps all."""
    records, _ = full
    cfg = load_config(SynthConfig, None, ["seed=7", "phrasings=1", "multiturn_fraction=0.5"])
    limited = list(synthesize(ROWS, cfg, "flores101_sample"))
    one_turn = [r for r in limited if r["task"] == "translation"]
    firsts = {"en": load_phrasings("translation_en")[0], "zh": load_phrasings("translation_zh")[0]}
    assert one_turn and {_template_of(r, _pivot(r)) for r in one_turn} <= set(firsts.values())
    assert {_template_of(r, _pivot(r)) for r in records if r["task"] == "translation"} > set(firsts.values())
    chains = [r for r in limited if r["task"] != "translation"]
    assert chains and all(
        any(c["messages"][0]["content"].startswith(f.split("{")[0]) for f in firsts.values()) for c in chains
    )
    with pytest.raises(ConfigError, match="synth.phrasings"):
        load_config(SynthConfig, None, ["phrasings=-1"])


def test_column_order_of_a_row_does_not_matter():
    key, row = ROWS[4]
    reordered = [(key, dict(reversed(list(row.items()))))]
    assert list(synthesize(reordered, SynthConfig(), "s")) == list(synthesize([ROWS[4]], SynthConfig(), "s"))


def test_directions_are_choosable_and_validated():
    cfg = load_config(SynthConfig, None, ["directions=[x-en, zh-x]", "multiturn_fraction=0"])
    records = list(synthesize(ROWS[:2], cfg, "s"))
    kinds = Counter(
        (
            "x" if r["langs"][0] not in (EN, ZH) else r["langs"][0],
            "x" if r["langs"][1] not in (EN, ZH) else r["langs"][1],
        )
        for r in records
    )
    assert kinds == {("x", EN): 2 * 100, (ZH, "x"): 2 * 100}  # 2 rows x 100 languages, nothing else
    assert all(r["task"] == "translation" for r in records)
    with pytest.raises(ConfigError, match="did you mean 'x-zh'"):
        load_config(SynthConfig, None, ["directions=[x_zh]"])
    with pytest.raises(ConfigError):
        load_config(SynthConfig, None, ["multiturn_max_turns=1"])
    assert set(SynthConfig().directions) == set(DIRECTIONS)


def test_disabled_arm_yields_nothing():
    assert list(synthesize(ROWS, SynthConfig(enabled=False), "s")) == []


def test_multiturn_chains_are_well_formed_and_use_only_reference_sentences(full):
    records, stats = full
    chains = [r for r in records if r["task"] == "multiturn_translation"]
    assert len(chains) == stats.records["multiturn"] > N_ROWS
    follow = {
        p: set(load_phrasings(f"followup_{p}")) | set(load_phrasings(f"back_{p}")) for p in ("en", "zh")
    }
    turn_counts = Counter()
    for rec in chains:
        msgs, langs = rec["messages"], rec["langs"]
        row = int(rec["id"].split(":")[2])
        assert [m["role"] for m in msgs] == ["user", "assistant"] * (len(msgs) // 2)
        assert 2 <= len(msgs) // 2 <= SynthConfig().multiturn_max_turns
        assert len(set(langs)) == len(langs) >= 2 and "direction" not in rec
        src = langs[0]
        assert COLUMNS[src][row] in msgs[0]["content"]
        targets = langs[1:] + [src] * (len(msgs) // 2 - len(langs) + 1)  # trailing back-translation turn
        for (_user, answer), tgt in zip(zip(msgs[::2], msgs[1::2]), targets):
            assert answer["content"] == COLUMNS[tgt][row]
        for user, tgt in zip(msgs[2::2], targets[1:]):
            pivot = "zh" if CJK.search(user["content"]) else "en"
            filled = user["content"].replace(get_language(tgt).name(pivot), "{tgt_lang}")
            assert filled in follow[pivot], user["content"]
        turn_counts[len(msgs) // 2] += 1
    assert set(turn_counts) == {2, 3}
    no_chain = list(synthesize(ROWS[:3], SynthConfig(multiturn_fraction=0), "s"))
    assert not [r for r in no_chain if r["task"] != "translation"]
    two_way = [("k", {"de": COLUMNS["deu_Latn"][0], "en": COLUMNS[EN][0]})]
    assert {r["task"] for r in synthesize(two_way, SynthConfig(multiturn_fraction=5), "s")} == {"translation"}


def test_rows_without_direction_and_empty_cells_are_counted_not_dropped_silently():
    stats = SynthStats()
    rows = [
        ("a", {"deu": "Hallo", "fra": "Bonjour"}),
        ("b", {"deu": "Hallo", "eng": " ", "zho_simpl": "你好"}),
    ]
    records = list(synthesize(rows, SynthConfig(), "s", stats))
    assert stats.rows == 2 and stats.rows_without_direction == 1 and stats.empty_sentences == 1
    assert sorted(r["direction"] for r in records) == ["deu_Latn-zho_Hans", "zho_Hans-deu_Latn"]
    assert group_language(records[0]) == "deu_Latn"
    assert group_language({"langs": [ZH, EN]}) == f"{EN}-{ZH}"
    with pytest.raises(BaylingError, match="unknown language code 'xx'"):
        list(synthesize([("c", {"xx": "?", "en": "?"})], SynthConfig(), "s"))


def test_bad_phrasing_file_names_file_and_line(tmp_path):
    (tmp_path / "translation_en.txt").write_text("# c\nTranslate {text} into {tgt_lang}\nTranslate {txt}\n")
    with pytest.raises(BaylingError) as err:
        load_phrasings("translation_en", str(tmp_path))
    assert err.value.line == 3 and "translation_en.txt" in str(err.value)


def _pairs(x: str, idx: list[int]) -> list:
    return [(f"{x}:{i}", {x: COLUMNS[x][i], EN: COLUMNS[EN][i]}) for i in idx]


def test_pivot_join_makes_x_zh_pairs_from_shared_english():
    x_en = _pairs("deu_Latn", list(range(0, 12))) + _pairs("fra_Latn", [2, 5, 14])
    # en-zh side: other order, extra spaces in the English, a line with no X partner, a duplicate
    en_zh = [
        (f"z:{i}", {EN: "  " + COLUMNS[EN][i].replace(" ", "   ") + " ", ZH: COLUMNS[ZH][i]})
        for i in (5, 13, 2, 9, 0, 15)
    ]
    en_zh.append(("z:dup", {EN: COLUMNS[EN][5], ZH: "另一个译文"}))
    expected = {("deu_Latn", i) for i in (5, 2, 9, 0)} | {("fra_Latn", i) for i in (5, 2)}
    for a, b in ((x_en, en_zh), (x_en[:3], en_zh), (x_en, en_zh[:2])):  # either side may be the smaller one
        got = list(pivot_join(iter(a), iter(b)))
        exp = {
            (x, i)
            for x, i in expected
            if f"{x}:{i}" in {k for k, _ in a} and any(k == f"z:{i}" for k, _ in b)
        }
        assert {
            (next(c for c in row if c != ZH), int(key.split("+")[0].split(":")[-1])) for key, row in got
        } == exp
        for key, row in got:
            x = next(c for c in row if c != ZH)
            i = int(key.split("+")[0].split(":")[-1])
            assert row == {x: COLUMNS[x][i], ZH: COLUMNS[ZH][i]}  # first occurrence wins over "z:dup"
            assert key == f"pivot:{x}:{i}+z:{i}"
    joined = list(pivot_join(x_en, en_zh))
    records = list(synthesize(joined, SynthConfig(directions=["x-zh", "zh-x"]), "pivot"))
    assert len(records) == 2 * len(joined) and all(ZH in r["langs"] for r in records)
    with pytest.raises(DataError, match="English and Chinese"):
        list(pivot_join(x_en, [("bad", {EN: "a", "deu": "b"})]))
