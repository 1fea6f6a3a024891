"""`bayling-eval score` reproduces sacrebleu's own numbers on real WMT22 human translations.

Real system output: WMT22 has two independent human references for several pairs, so reference B (or C)
is a real translation "system" scored against reference A (or B). The expected figures were computed once
with sacrebleu's own CLI (sacrebleu 2.6.0) on the shipped 30-line files, e.g. for en-zh:

    cd eval/wmt22_sample/references
    sacrebleu generaltest2022.en-zh.ref.A.zh -i generaltest2022.en-zh.ref.B.zh --tokenize zh \
        -m bleu chrf -w 10 -f json

(--tokenize zh for the Chinese target, 13a for the others: the WMT22 convention; chrF with defaults.)
On the full files (from wmt-conference/wmt22-news-systems, not shipped) the same commands give en-zh
B-vs-A BLEU 48.2 / chrF 44.0, de-en 26.9 / 53.9, cs-en C-vs-B 23.6 / 51.9, en-cs 22.9 / 49.7.
The WMT22 published automatic scores (scores/automatic-scores.tsv in that repository) list only
submitted systems, not references-as-systems, and no system outputs are available offline.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bayling.cli.evaluate import main

REFS = Path(__file__).resolve().parents[2] / "eval" / "wmt22_sample" / "references"

# (pair, hypothesis ref id, reference ref id, target, BLEU, chrF, BLEU signature) from sacrebleu's CLI.
EXPECTED = [
    ("en-zh", "B", "A", "zh", 49.9113450259, 47.0676053536, "nrefs:1|case:mixed|eff:no|tok:zh|smooth:exp|version:2.6.0"),
    ("de-en", "B", "A", "en", 27.3496185939, 51.9892735856, "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"),
    ("cs-en", "C", "B", "en", 20.6047803815, 53.2751893008, "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"),
    ("en-cs", "C", "B", "cs", 36.7224872584, 60.5400636052, "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"),
]
CHRF_SIG = "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"


def _ref(pair: str, rid: str, lang: str) -> str:
    return str(REFS / f"generaltest2022.{pair}.ref.{rid}.{lang}")


@pytest.mark.parametrize("pair,hyp_id,ref_id,tgt,bleu,chrf,bleu_sig", EXPECTED)
def test_score_reproduces_sacrebleu_cli_on_human_translations(pair, hyp_id, ref_id, tgt, bleu, chrf, bleu_sig,
                                                              tmp_path, capsys):
    out = tmp_path / "s.json"
    rc = main(["score", "--hyp", _ref(pair, hyp_id, tgt), "--ref", _ref(pair, ref_id, tgt),
               "--tgt-lang", tgt, "--json", str(out)])
    assert rc == 0
    scores = json.loads(out.read_text(encoding="utf-8"))["scores"]
    assert round(scores["bleu"]["score"], 10) == bleu
    assert round(scores["chrf"]["score"], 10) == chrf
    assert scores["bleu"]["signature"] == bleu_sig and scores["chrf"]["signature"] == CHRF_SIG
    assert f"{bleu:6.2f}" in capsys.readouterr().out


def test_several_references_are_all_used(tmp_path):
    """Scoring ref B against refs A and B must give 100 (only A would give 49.91)."""
    out = tmp_path / "s.json"
    b = _ref("en-zh", "B", "zh")
    assert main(["score", "--hyp", b, "--ref", _ref("en-zh", "A", "zh"), "--ref", b, "--tgt-lang", "zho_Hans",
                 "--json", str(out)]) == 0
    bleu = json.loads(out.read_text(encoding="utf-8"))["scores"]["bleu"]
    assert bleu["score"] == pytest.approx(100.0) and bleu["signature"].startswith("nrefs:2|")


def test_tokenizer_override_is_recorded(tmp_path):
    out = tmp_path / "s.json"
    assert main(["score", "--hyp", _ref("de-en", "B", "en"), "--ref", _ref("de-en", "A", "en"), "--tgt-lang", "en",
                 "--tokenize", "intl", "--json", str(out)]) == 0
    bleu = json.loads(out.read_text(encoding="utf-8"))["scores"]["bleu"]
    assert bleu["name"] == "bleu_intl" and "tok:intl" in bleu["signature"]
