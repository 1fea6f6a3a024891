"""The language registry: every FLORES-101 file and FLORES-200 code resolves, look-up by any code kind."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayling.errors import BaylingError
from bayling.languages import (
    CHINESE,
    ENGLISH,
    ISO15924,
    TIERS,
    Language,
    all_languages,
    display_name,
    flores101_languages,
    get_language,
    languages_in_tier,
    parse_languages,
)

# The 102 file stems of the FLORES-101 devtest release (flores101_dataset/devtest/*.devtest), written out.
FLORES101_FILES = """
afr amh ara asm ast azj bel ben bos bul cat ceb ces ckb cym dan deu ell eng est fas fin fra ful gle
glg guj hau heb hin hrv hun hye ibo ind isl ita jav jpn kam kan kat kaz kea khm kir kor lao lav lin
lit ltz lug luo mal mar mkd mlt mon mri msa mya nld nob npi nso nya oci orm ory pan pol por pus ron
rus slk slv sna snd som spa srp swe swh tam tel tgk tgl tha tur ukr umb urd uzb vie wol xho yor
zho_simpl zho_trad zul
""".split()

# The 204 FLORES-200 codes (flores200_dataset/devtest/*.devtest), written out.
FLORES200_CODES = """
ace_Arab ace_Latn acm_Arab acq_Arab aeb_Arab afr_Latn ajp_Arab aka_Latn als_Latn amh_Ethi apc_Arab
arb_Arab arb_Latn ars_Arab ary_Arab arz_Arab asm_Beng ast_Latn awa_Deva ayr_Latn azb_Arab azj_Latn
bak_Cyrl bam_Latn ban_Latn bel_Cyrl bem_Latn ben_Beng bho_Deva bjn_Arab bjn_Latn bod_Tibt bos_Latn
bug_Latn bul_Cyrl cat_Latn ceb_Latn ces_Latn cjk_Latn ckb_Arab crh_Latn cym_Latn dan_Latn deu_Latn
dik_Latn dyu_Latn dzo_Tibt ell_Grek eng_Latn epo_Latn est_Latn eus_Latn ewe_Latn fao_Latn fij_Latn
fin_Latn fon_Latn fra_Latn fur_Latn fuv_Latn gaz_Latn gla_Latn gle_Latn glg_Latn grn_Latn guj_Gujr
hat_Latn hau_Latn heb_Hebr hin_Deva hne_Deva hrv_Latn hun_Latn hye_Armn ibo_Latn ilo_Latn ind_Latn
isl_Latn ita_Latn jav_Latn jpn_Jpan kab_Latn kac_Latn kam_Latn kan_Knda kas_Arab kas_Deva kat_Geor
kaz_Cyrl kbp_Latn kea_Latn khk_Cyrl khm_Khmr kik_Latn kin_Latn kir_Cyrl kmb_Latn kmr_Latn knc_Arab
knc_Latn kon_Latn kor_Hang lao_Laoo lij_Latn lim_Latn lin_Latn lit_Latn lmo_Latn ltg_Latn ltz_Latn
lua_Latn lug_Latn luo_Latn lus_Latn lvs_Latn mag_Deva mai_Deva mal_Mlym mar_Deva min_Arab min_Latn
mkd_Cyrl mlt_Latn mni_Beng mos_Latn mri_Latn mya_Mymr nld_Latn nno_Latn nob_Latn npi_Deva nso_Latn
nus_Latn nya_Latn oci_Latn ory_Orya pag_Latn pan_Guru pap_Latn pbt_Arab pes_Arab plt_Latn pol_Latn
por_Latn prs_Arab quy_Latn ron_Latn run_Latn rus_Cyrl sag_Latn san_Deva sat_Olck scn_Latn shn_Mymr
sin_Sinh slk_Latn slv_Latn smo_Latn sna_Latn snd_Arab som_Latn sot_Latn spa_Latn srd_Latn srp_Cyrl
ssw_Latn sun_Latn swe_Latn swh_Latn szl_Latn tam_Taml taq_Latn taq_Tfng tat_Cyrl tel_Telu tgk_Cyrl
tgl_Latn tha_Thai tir_Ethi tpi_Latn tsn_Latn tso_Latn tuk_Latn tum_Latn tur_Latn twi_Latn tzm_Tfng
uig_Arab ukr_Cyrl umb_Latn urd_Arab uzn_Latn vec_Latn vie_Latn war_Latn wol_Latn xho_Latn ydd_Hebr
yor_Latn yue_Hant zho_Hans zho_Hant zsm_Latn zul_Latn
""".split()

# FLORES-101 files whose FLORES-200 counterpart has a different code stem (macrolanguage -> individual language).
RENAMED = {
    "ara": "arb_Arab", "fas": "pes_Arab", "ful": "fuv_Latn", "lav": "lvs_Latn", "mon": "khk_Cyrl",
    "msa": "zsm_Latn", "orm": "gaz_Latn", "pus": "pbt_Arab", "uzb": "uzn_Latn",
    "zho_simpl": "zho_Hans", "zho_trad": "zho_Hant",
}  # fmt: skip


def test_lists_in_this_test_are_complete():
    assert len(FLORES101_FILES) == len(set(FLORES101_FILES)) == 102
    assert len(FLORES200_CODES) == len(set(FLORES200_CODES)) == 204


@pytest.mark.parametrize("stem", FLORES101_FILES)
def test_every_flores101_file_resolves_and_round_trips(stem):
    lang = get_language(stem)
    assert lang.flores101 == stem
    assert lang.flores_file(101) == stem
    assert lang.code in FLORES200_CODES
    if stem in RENAMED:
        assert lang.code == RENAMED[stem]
    else:
        assert lang.code.split("_")[0] == stem


def test_every_flores200_code_resolves_to_itself():
    for code in FLORES200_CODES:
        lang = get_language(code)
        assert lang.code == code == lang.flores200 == lang.flores_file(200)
    assert [lg.code for lg in all_languages()] == FLORES200_CODES


def test_flores101_languages_are_the_102_files_in_release_order():
    assert [lg.flores101 for lg in flores101_languages()] == sorted(FLORES101_FILES)


def test_every_entry_is_complete_and_consistent():
    for lang in all_languages():
        assert lang.name_en and lang.name_zh, lang.code
        assert any("\u4e00" <= ch <= "\u9fff" for ch in lang.name_zh), (lang.code, lang.name_zh)
        assert lang.script in ISO15924 and lang.code.endswith("_" + lang.script)
        assert lang.iso639_3 == lang.code.split("_")[0]
        assert lang.iso639_1 == "" or (len(lang.iso639_1) == 2 and lang.iso639_1.islower())
        assert lang.tier in TIERS
    names_en = [lg.name_en for lg in all_languages()]
    names_zh = [lg.name_zh for lg in all_languages()]
    assert len(set(names_en)) == len(names_en) and len(set(names_zh)) == len(names_zh)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("deu_Latn", "deu_Latn"),  # canonical
        ("DEU_LATN", "deu_Latn"),  # case-insensitive
        ("deu", "deu_Latn"),  # FLORES-101 stem / ISO 639-3
        ("de", "deu_Latn"),  # ISO 639-1
        ("ger", "deu_Latn"),  # ISO 639-2/B alias
        ("en", "eng_Latn"),
        ("zh", "zho_Hans"),
        ("zh-CN", "zho_Hans"),
        ("cmn", "zho_Hans"),
        ("zho_simpl", "zho_Hans"),
        ("zh-TW", "zho_Hant"),
        ("zh_Hant", "zho_Hant"),
        ("zho_trad", "zho_Hant"),
        ("ar", "arb_Arab"),
        ("ara", "arb_Arab"),
        ("fa", "pes_Arab"),
        ("ms", "zsm_Latn"),
        ("sw", "swh_Latn"),
        ("ne", "npi_Deva"),
        ("ace", "ace_Latn"),  # shared ISO 639-3 code resolved by the alias column
        ("yue", "yue_Hant"),
        (" ja ", "jpn_Jpan"),
    ],
)
def test_lookup_by_every_kind_of_code(code, expected):
    assert get_language(code).code == expected


def test_language_passes_through_and_constants():
    assert get_language(ENGLISH) is ENGLISH
    assert (ENGLISH.code, CHINESE.code) == ("eng_Latn", "zho_Hans")
    assert isinstance(ENGLISH, Language)


def test_unknown_code_error_is_one_line_and_suggests_close_codes():
    with pytest.raises(BaylingError) as err:
        get_language("deux")
    msg = str(err.value)
    assert "\n" not in msg and "'deux'" in msg and "deu_Latn" in msg
    with pytest.raises(BaylingError, match="fra_Latn"):
        get_language("frnch")
    with pytest.raises(BaylingError, match="unknown language code 'qqq'"):
        get_language("qqq")


def test_display_names_in_both_pivots():
    assert display_name("de", "en") == "German"
    assert display_name("de", "zh") == "德语"
    assert display_name("zho_Hant", "zh") == "繁体中文"
    assert get_language("fr").name("zh") == "法语"
    with pytest.raises(BaylingError):
        display_name("de", "fr")


def test_flores_file_of_a_flores200_only_language_is_an_error():
    with pytest.raises(BaylingError, match="not part of FLORES-101"):
        get_language("ace_Latn").flores_file(101)
    with pytest.raises(BaylingError):
        ENGLISH.flores_file(300)


def test_parse_languages_groups_and_lists():
    assert len(parse_languages("all")) == 204
    assert len(parse_languages("flores101")) == 102
    high = parse_languages("high")
    assert high and all(lg.tier == "high" for lg in high)
    assert {"eng_Latn", "zho_Hans", "deu_Latn", "fra_Latn"} <= {lg.code for lg in high}
    assert {lg.tier for lg in parse_languages("low")} == {"low"}
    assert sum(len(languages_in_tier(t)) for t in TIERS) == 204
    assert [lg.code for lg in parse_languages("de, fr,deu")] == ["deu_Latn", "fra_Latn"]
    assert [lg.code for lg in parse_languages(["zh", "en,ja"])] == ["zho_Hans", "eng_Latn", "jpn_Jpan"]
    with pytest.raises(BaylingError, match="unknown language code 'xx'"):
        parse_languages("de,xx")
    with pytest.raises(BaylingError, match="empty"):
        parse_languages(" , ")
    with pytest.raises(BaylingError, match="unknown tier"):
        languages_in_tier("huge")


def test_bad_table_is_reported_with_file_and_line(tmp_path):
    from bayling import languages as mod

    good = mod.LANGUAGES_TSV.read_text(encoding="utf-8").splitlines()
    bad = [ln.replace("\tLatn\t", "\tLatin\t", 1) if ln.startswith("deu_Latn") else ln for ln in good]
    path = tmp_path / "languages.tsv"
    path.write_text("\n".join(bad) + "\n", encoding="utf-8")
    with pytest.raises(BaylingError) as err:
        mod._load(str(path))
    assert (
        err.value.field == "script"
        and err.value.line == bad.index(next(ln for ln in bad if ln.startswith("deu_Latn"))) + 1
    )
    dup = good + [good[-1].replace("zul_Latn\tZulu", "zzz_Latn\tZulu2", 1)]
    path.write_text("\n".join(dup) + "\n", encoding="utf-8")
    with pytest.raises(BaylingError, match="used by both"):
        mod._load(str(path))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20))
def test_any_input_resolves_or_raises_a_one_line_bayling_error(code):
    try:
        lang = get_language(code)
    except BaylingError as err:
        assert "\n" not in str(err)
    else:
        assert get_language(lang.code) is lang
