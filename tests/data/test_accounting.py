"""Per-language accounting: every row and record of every language is either written or counted as a drop.

The manifest's ``languages`` section (and the DATA_CARD table) must add up exactly, per language and against the
build's totals -- a drop that is not counted anywhere makes these sums fail.
"""

from __future__ import annotations

import pytest
from buildkit import build, manifest

DEU_EN_TSV = "".join(f"Das ist Satz Nummer {i} mit einigen Wörtern.\tThis is sentence number {i} with some words.\n"
                     for i in range(40))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("acc")
    tsv = d / "deu_eng.tsv"
    # rows 40-42: an empty English cell (synthesis drop), a duplicate row (dedup), a NUL (filter)
    tsv.write_text(DEU_EN_TSV + "Ein Satz ohne Übersetzung hier.\t \n" + DEU_EN_TSV.splitlines()[0] + "\n"
                   + "Ein kaputter\x00 Satz mit Null.\tA broken sentence with a null.\n", encoding="utf-8")
    heldout = d / "heldout.txt"
    from buildkit import REPO

    heldout.write_text("\n".join((REPO / "data/samples/flores_demo/deu.devtest").read_text().splitlines()[:5]) + "\n")
    out = d / "data"
    assert build(out, "--decontaminate", str(heldout), overrides=[
        f"parallel.tsv_de.path={tsv}", "parallel.tsv_de.format=tsv", "parallel.tsv_de.langs=[deu,eng]"]) == 0
    return manifest(out)


def test_every_language_adds_up(built):
    for lang, c in built["languages"].items():
        drops = sum(c["filtered"].values()) + c["decontaminated"] + sum(c["dedup"].values())
        assert c["records"] == drops + c["unique_kept"], lang
        assert c["unique_kept"] == c["train_distinct"] + c["valid"] + c["not_selected"], lang
        assert c["not_selected"] >= 0 and c["train"] >= c["train_distinct"], lang


def test_languages_add_up_to_the_build_totals(built):
    langs, p = built["languages"], built["pipeline"]
    assert sum(c["records"] for c in langs.values()) == p["synthesised"] + sum(
        n for name, n in p["read"].items() if name in built["recipe"]["instructions"])
    for reason, n in p["filtered"].items():
        assert sum(c["filtered"].get(reason, 0) for c in langs.values()) == n
    assert sum(c["decontaminated"] for c in langs.values()) == sum(p["decontaminated"].values()) > 0
    for reason, n in p["dedup"].items():
        assert sum(c["dedup"].get(reason, 0) for c in langs.values()) == n
    assert sum(c["unique_kept"] for c in langs.values()) == p["unique_kept"]
    assert sum(c["train"] for c in langs.values()) == built["train"]["records"]
    assert sum(c["valid"] for c in langs.values()) == built["valid"]["records"]


def test_synthesis_and_filter_drops_are_counted_per_language(built):
    deu = built["languages"]["deu_Latn"]
    assert deu["synthesis_dropped"] == {"row_without_direction": 1}
    assert built["languages"]["eng_Latn-zho_Hans"]["records"] > 0
    assert built["pipeline"]["synthesis_dropped"] == {"empty_sentence": 1, "row_without_direction": 1}
    assert deu["filtered"].get("nul_character") == 2  # deu->eng and eng->deu of the NUL row
    assert sum(deu["dedup"].values()) >= 2  # the repeated row's two records
    assert {"zh", "en"} <= set(built["languages"])
