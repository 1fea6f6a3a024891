"""sacrebleu metrics: the tokenizer each target gets, signatures, and no silent metric switch."""

from __future__ import annotations

from pathlib import Path

import pytest
import sacrebleu

from bayling.errors import DataError
from bayling.eval import metrics
from bayling.eval.metrics import check_lines, choose_bleu_tokenizer, score_translation

REPO = Path(__file__).resolve().parents[2]
FLORES = REPO / "eval" / "flores_sample"


def _lines(stem: str) -> list[str]:
    return (FLORES / f"{stem}.devtest").read_text(encoding="utf-8").splitlines()


def test_chinese_target_uses_zh_tokenizer_and_matches_sacrebleu():
    hyp, ref = _lines("zho_simpl")[:10], _lines("zho_simpl")[10:20]
    s = score_translation(hyp, [ref], "zho_Hans")
    assert s["bleu"]["name"] == "bleu_zh" and "tok:zh" in s["bleu"]["signature"]
    assert s["bleu"]["score"] == sacrebleu.corpus_bleu(hyp, [ref], tokenize="zh").score
    assert s["chrf"]["name"] == "chrf++" and "nw:2" in s["chrf"]["signature"]
    assert s["chrf"]["score"] == sacrebleu.corpus_chrf(hyp, [ref], word_order=2).score


def test_missing_spbleu_model_is_reported_as_13a_with_the_reason(monkeypatch, tmp_path):
    """Offline without the FLORES sentencepiece model: bleu_13a plus a note, never a score named spbleu."""
    monkeypatch.setattr(metrics, "sacrebleu_dir", lambda: tmp_path)
    s = score_translation(_lines("deu")[:5], [_lines("deu")[5:10]], "deu_Latn", spm="flores101")
    assert s["bleu"]["name"] == "bleu_13a"
    assert "spBLEU (flores101) unavailable" in s["bleu"]["note"]
    assert "tok:13a" in s["bleu"]["signature"]


def test_spbleu_used_when_the_sentencepiece_model_is_present(monkeypatch, tmp_path):
    """A sentencepiece model at $SACREBLEU/models/<file> switches BLEU to spBLEU, named and signed as such."""
    import sentencepiece as spm
    from sacrebleu.tokenizers import tokenizer_spm

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(_lines("eng") + _lines("deu") + _lines("fra")), encoding="utf-8")
    (tmp_path / "models").mkdir()
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "models" / "m"),
                                   vocab_size=200, minloglevel=2)
    (tmp_path / "models" / "m.model").rename(tmp_path / "models" / metrics.SPM_FILES["flores101"])
    monkeypatch.setattr(tokenizer_spm, "SACREBLEU_DIR", str(tmp_path))
    assert choose_bleu_tokenizer("deu_Latn", "field", "flores101") == ("flores101", None)
    s = score_translation(_lines("deu")[:5], [_lines("deu")[5:10]], "deu_Latn", spm="flores101")
    assert s["bleu"]["name"] == "spbleu_flores101" and "tok:flores101" in s["bleu"]["signature"]
    assert "note" not in s["bleu"]


def test_japanese_without_spm_model_falls_back_to_char_with_a_note(monkeypatch, tmp_path):
    monkeypatch.setattr(metrics, "sacrebleu_dir", lambda: tmp_path)  # no FLORES spm model offline
    tok, note = choose_bleu_tokenizer("jpn_Jpan", "field", "flores101")
    assert tok == "char" and "spBLEU (flores101) unavailable" in note
    s = score_translation(_lines("jpn")[:4], [_lines("jpn")[4:8]], "ja")
    assert s["bleu"]["name"] == "bleu_char" and "char tokenization" in s["bleu"]["note"]


def test_wmt22_policy_is_zh_for_chinese_char_for_japanese_and_13a_otherwise():
    """The same choice in any install: no optional package decides the tokenizer (WMT22's published en-ja used char)."""
    assert choose_bleu_tokenizer("zh", "wmt22") == ("zh", None)
    assert choose_bleu_tokenizer("deu_Latn", "wmt22") == ("13a", None)
    assert choose_bleu_tokenizer("ja", "wmt22") == ("char", None)
    s = score_translation(_lines("eng")[:5], [_lines("eng")[5:10]], "en", policy="wmt22")
    assert s["chrf"]["name"] == "chrf" and "nw:0" in s["chrf"]["signature"]


def test_line_count_mismatch_and_empty_hypothesis_are_errors():
    with pytest.raises(DataError, match="reference has 3 lines but the hypothesis has 2"):
        check_lines(["a", "b"], [["a", "b", "c"]])
    with pytest.raises(DataError, match="empty"):
        check_lines([], [[]])
    check_lines(["", ""], [["a", "b"]], allow_empty=True)
