"""Filters keep real FLORES pairs and real instruction samples, and reject each planted bad case with its reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from bayling.config import load_config
from bayling.data import filters as F
from bayling.data.readers import read_flores_dir, read_instructions
from bayling.errors import ConfigError
from bayling.languages import get_language

REPO = Path(__file__).resolve().parents[2]
FLORES = REPO / "data" / "samples" / "flores101_devtest_sample"
SAMPLES = REPO / "data" / "samples" / "instruct"
CFG = F.FilterConfig()


@pytest.fixture(scope="module")
def flores():
    return list(read_flores_dir(FLORES))


def test_real_flores_pairs_are_kept_for_every_language_and_pivot(flores):
    rejected = []
    for row in flores:
        for code, text in row.texts.items():
            for pivot in ("eng_Latn", "zho_Hans"):
                if code != pivot:
                    reason = F.check_pair(row.texts[pivot], text, pivot, code, CFG)
                    if reason:
                        rejected.append((row.key, pivot, code, reason))
    assert len(flores) >= 10 and len(flores[0].texts) == 102
    assert rejected == []


def test_script_check_accepts_own_script_and_rejects_wrong_script_for_all_102(flores):
    first = flores[0].texts
    for code, text in first.items():
        script = get_language(code).script
        wrong = "rus_Cyrl" if script == "Latn" else "eng_Latn"
        assert F.check_text(text, code, CFG) is None, code
        assert F.check_text(text, wrong, CFG) == "wrong_script", code
    assert len({get_language(c).script for c in first}) >= 20  # the sample really spans many scripts


PLANTED = [
    ("", "Hallo Welt, wie geht es dir heute?", "eng_Latn", "deu_Latn", "empty"),
    ("   ", "Hallo", "eng_Latn", "deu_Latn", "empty"),
    ("Hi", "Hallo", "eng_Latn", "deu_Latn", "too_short"),
    ("word " * 500, "Wort " * 500, "eng_Latn", "deu_Latn", "too_long"),
    ("Yes.", "Das ist eine sehr lange Antwort, die mit dem kurzen englischen Satz gar nichts zu tun hat, "
     "und sie geht immer weiter und weiter.", "eng_Latn", "deu_Latn", "length_ratio"),
    ("The meeting starts at nine o'clock tomorrow morning.", "The meeting starts at nine o'clock tomorrow morning.",
     "eng_Latn", "deu_Latn", "identical_src_tgt"),
    ("buy now buy now buy now buy now buy now buy now buy now buy now buy now buy now buy now buy now",
     "jetzt kaufen jetzt kaufen jetzt kaufen", "eng_Latn", "deu_Latn", "repetition"),
    ("The cat sleeps on the warm windowsill.", "Кошка спит на тёплом подоконнике.", "eng_Latn", "deu_Latn",
     "wrong_script"),
    ("The cat sleeps on the warm windowsill all afternoon.", "猫は午後ずっと暖かい窓辺で眠っています。", "eng_Latn",
     "jpn_Jpan", None),  # Han and kana together are the Japanese script set
    ("The cat sleeps on the warm windowsill all afternoon.",
     "Le chat dort tout l'après-midi sur le rebord chaud de la fenêtre.", "eng_Latn", "deu_Latn",
     "langid_mismatch"),
]


@pytest.mark.parametrize("src,tgt,sl,tl,reason", PLANTED)
def test_planted_bad_pairs_get_their_reason(src, tgt, sl, tl, reason):
    cfg = F.FilterConfig(min_chars=3)
    assert F.check_pair(src, tgt, sl, tl, cfg) == reason


def test_length_ratio_is_script_aware():
    en = "On Monday, scientists announced the invention of a new diagnostic tool."
    zh = "周一，科学家宣布发明了一种新的诊断工具。"
    assert len(en) / len(zh) > 3  # raw character counts would flag this good pair
    assert F.check_pair(en, zh, "eng_Latn", "zho_Hans", CFG) is None


def test_langid_only_where_covered_and_confusable_groups_allowed():
    english = "The committee will publish its final report on the economy next week."
    assert F.langid_covers("deu") and F.langid_covers("zho_Hant")
    assert not F.langid_covers("ast_Latn")  # Asturian is not in py3langid: never judged by it
    assert F.check_text(english, "ast_Latn", CFG) is None
    assert F.check_text(english, "deu_Latn", CFG) == "langid_mismatch"
    croatian = "Vlada je u ponedjeljak objavila da će se izbori održati sljedeće godine u proljeće."
    assert F.check_text(croatian, "hrv_Latn", CFG) is None
    assert F.check_text(croatian, "bos_Latn", CFG) is None  # bos/hrv/srp are one confusable group
    assert F.check_text(english, "deu_Latn", F.FilterConfig(langid=False)) is None
    # Chinese and Japanese share Han characters: the script check cannot separate them, language ID does
    chinese = "周一，斯坦福大学医学院的科学家宣布发明了一种新的诊断工具，可以按类型对细胞进行分类。"
    japanese = "月曜日にスタンフォード大学医学部の科学者たちは、細胞を種類別に分類できる新しい診断ツールを発明したと発表しました。"
    assert F.check_text(chinese, "zho_Hans", CFG) is None and F.check_text(japanese, "jpn_Jpan", CFG) is None
    assert F.check_text(chinese, "jpn_Jpan", CFG) == "wrong_script"  # no kana at all
    assert F.check_text(japanese, "zho_Hans", CFG) == "wrong_script"  # kana are not Chinese


@pytest.mark.parametrize("name,category", [("alpaca_en_300.json", "en"), ("belle_zh_300.jsonl", "zh"),
                                           ("fastchat_dummy_conversation.sharegpt.json", "en")])
def test_real_instruction_samples_pass(name, category):
    recs = list(read_instructions(SAMPLES / name, source="s", category=category))
    assert [F.check_record(r, CFG) for r in recs] == [None] * len(recs)


def _rec(user: str, assistant: str, category: str = "en") -> dict:
    return {"id": "t:0", "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
            "source": "t", "category": category, "task": "general", "langs": []}


def test_planted_bad_records_get_their_reason():
    assert F.check_record(_rec("Convert 20 inches to centimetres", ""), CFG) == "empty"
    assert F.check_record({"messages": []}, CFG) == "empty"
    assert F.check_record(_rec("Write a story.", "x" * 40000), CFG) == "too_long"
    assert F.check_record(_rec("讲个笑话", "哈" * 60, "zh"), CFG) == "repetition"
    assert F.check_record(_rec("Please tell me a joke about cats and dogs.", "OK", "zh"), CFG) == "wrong_script"
    german = "Bitte erkläre mir ausführlich, wie eine Wärmepumpe im Winter funktioniert."
    assert F.check_record(_rec(german, "Sure."), CFG) == "langid_mismatch"
    # cross-lingual records have no single prompt language: no script/langid check on them
    assert F.check_record(_rec(german, "Sure.", "cross_lingual"), CFG) is None
    assert F.check_record(_rec(german, "Sure."), F.FilterConfig(enabled=False)) is None


def test_filter_config_through_the_config_system():
    cfg = load_config(F.FilterConfig, None, ["max_ratio=2.5", "langid=false"])
    assert cfg.max_ratio == 2.5 and cfg.langid is False
    with pytest.raises(ConfigError):
        load_config(F.FilterConfig, None, ["min_script_fraction=1.5"])
