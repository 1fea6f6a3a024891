"""The filters keep correct sentences in every language and script of FLORES-200.

Every FLORES-200 devtest line is a correct, human translation, so a filter that drops more than a handful of them
is miscalibrated for that language -- the failure mode of issue 10: language ID that knows Acehnese only in Latin
script silently dropped 14% of correct Arabic-script Acehnese lines. For each of the 204 files (first 200 lines,
data/samples/flores200_devtest_sample), a line is lost when it fails the single-text checks or its pair with the
English or the Chinese line (what the builder checks for the x-en/x-zh records it makes from a FLORES row).
Measured on the full 1012-line files before the subset was cut: ace_Arab lost 146 lines (langid 141) and
knc_Arab 18 (length ratio against Chinese); after the script-aware language ID and the Kanuri density, no file
loses more than 1%.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from bayling.data import filters as F
from bayling.data.fileio import open_lines
from bayling.data.readers import flores_files

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "samples" / "flores200_devtest_sample"


@cache
def lines() -> dict[str, list[str]]:
    return {code: [t for _, t in open_lines(path)] for code, path in flores_files(SAMPLE).items()}


def lost(code: str) -> dict[int, str]:
    data = lines()
    en, zh = data["eng_Latn"], data["zho_Hans"]
    out = {}
    for i, text in enumerate(data[code]):
        reason = F.check_text(text, code)
        if not reason and code != "eng_Latn":
            reason = F.check_pair(text, en[i], code, "eng_Latn")
        if not reason and code != "zho_Hans":
            reason = F.check_pair(text, zh[i], code, "zho_Hans")
        if reason:
            out[i] = reason
    return out


def test_the_sample_holds_all_204_languages_and_their_scripts():
    data = lines()
    assert len(data) == 204
    assert {len(v) for v in data.values()} == {200}
    scripts = sorted({F.script_of(c) for c in data})
    assert scripts == ["Arab", "Armn", "Beng", "Cyrl", "Deva", "Ethi", "Geor", "Grek", "Gujr", "Guru", "Hang", "Hans",
                       "Hant", "Hebr", "Jpan", "Khmr", "Knda", "Laoo", "Latn", "Mlym", "Mymr", "Olck", "Orya", "Sinh",
                       "Taml", "Telu", "Tfng", "Thai", "Tibt"]


def test_language_id_is_script_aware():
    assert F.langid_covers("ace_Latn")  # py3langid's Acehnese is Latin-script
    assert not F.langid_covers("ace_Arab")  # ... so Arabic-script Acehnese is not judged by it
    assert F.langid_covers("zho_Hant") and F.langid_covers("deu_Latn")
    latin = lines()["ace_Latn"][0]
    assert F.check_text(latin, "ace_Arab") == "wrong_script"  # the script check still guards ace_Arab


def test_arabic_script_acehnese_is_kept():
    assert len(lost("ace_Arab")) <= 2


@pytest.mark.slow
def test_every_flores200_file_loses_at_most_one_percent_to_the_filters():
    over = {}
    for code in sorted(lines()):
        dropped = lost(code)
        if len(dropped) > 2:  # 1% of 200 lines
            over[code] = sorted(dropped.items())[:5]
    assert not over, over
