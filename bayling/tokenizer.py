"""Loading tokenizers so that training, export and evaluation agree on special tokens.

The burn this prevents: pad == eos, so eos is masked or never learned and the model never stops.
"""

from __future__ import annotations

from pathlib import Path

from bayling.errors import BaylingError
from bayling.hub import resolve_model
from bayling.paths import DATA_DIR
from bayling.templates import Template, install_template

# Llama-3 ships 250 reserved special tokens; this one is the pad Llama-3.1 later standardised on.
LLAMA3_PAD = "<|reserved_special_token_2|>"


def load_tokenizer(name: str, template: Template | None = None):
    """Load a fast tokenizer from a local dir (or hub id), fix its pad token, attach ``template``."""
    from transformers import AutoTokenizer

    path = resolve_model(name, option="--tokenizer")
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise BaylingError(f"cannot load a tokenizer: {str(err).splitlines()[0]}", path=path) from None
    ensure_pad_token(tok)
    if template is not None:
        install_template(tok, template)
    return tok


def ensure_pad_token(tok) -> None:
    """Give the tokenizer a pad token distinct from eos (unk for Llama-2, a reserved token for Llama-3)."""
    if tok.pad_token is not None and tok.pad_token_id != tok.eos_token_id:
        return
    vocab = tok.get_vocab()
    if LLAMA3_PAD in vocab:
        tok.pad_token = LLAMA3_PAD
    elif tok.unk_token is not None and tok.unk_token_id != tok.eos_token_id:
        tok.pad_token = tok.unk_token
    else:
        tok.add_special_tokens({"pad_token": "<pad>"})
    if tok.pad_token_id == tok.eos_token_id:
        raise BaylingError("could not choose a pad token different from eos")


def tokenizer_dir(name: str) -> Path:
    """Path of a tokenizer shipped with the package (``llama2`` or ``llama3``)."""
    root = DATA_DIR / "tokenizers" / name
    if not root.is_dir():
        raise BaylingError(f"no shipped tokenizer '{name}' (looked in {root})")
    return root


def train_small_tokenizer(texts, out_dir: str | Path, vocab_size: int = 4000):
    """Train a small byte-level BPE tokenizer (HF ``tokenizers``) with Llama-style special tokens.

    Why: a laptop demo trains a model from scratch for minutes; with Llama's 32k vocabulary most of that
    compute goes to the output layer and the model barely leaves unigram statistics. A few thousand pieces
    learnt from the very data it trains on lets a tiny model learn the languages in the same budget.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out)
    return out
