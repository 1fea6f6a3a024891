"""Conversation -> token ids + labels, with labels taken from character spans of the rendered text.

Why this way: the template renderer (:mod:`bayling.templates`) returns the rendered text AND the
character spans of everything the model must learn to produce (assistant contents plus the closing
eos / ``<|eot_id|>``). We tokenise the WHOLE text once with ``return_offsets_mapping=True`` and label
every token whose characters overlap a span. Tokenising substrings on their own (prompt, then answer)
gives different ids at the seams (sentencepiece "▁" prefixes, BPE merges) and is the classic way to
end up with masks that silently miss tokens.

Rule for a token with character range ``[s, e)`` and a span ``[a, b)``: trainable iff ``s < b`` and
``max(e, s + 1) > a`` (overlap; a zero-width token counts as its start character). Overlap rather than
"starts inside" because Llama-2 folds the space before an answer into its first token (``"▁Hello"``
starts on the space): "starts inside" would leave the first answer token unlearned.

Guards (a template/tokenizer mismatch must fail loudly, never train with a loss of 0):
- the last token of every complete span must be one of the template's stop tokens (the model must
  learn to stop), else :class:`BaylingError`;
- the very first token is never a target (nothing predicts it).

Public API::

    tokenize_conversation(tokenizer, template, messages, max_length, overlong="truncate")
        -> TokenizedSample | str        # str = drop reason: "no_trainable_tokens" | "too_long"
                                         #                    | "no_trainable_after_truncation"
    tokenize_batch(tokenizer, template, conversations, max_length, overlong) -> list[...]  (fast path)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bayling.errors import BaylingError
from bayling.templates import Message, Template, render_for_tokenizer, stop_token_ids

IGNORE_INDEX = -100
OVERLONG_MODES = ("truncate", "drop")
DROP_REASONS = ("no_trainable_tokens", "too_long", "no_trainable_after_truncation")


@dataclass
class TokenizedSample:
    """Token ids (int32) and a boolean mask of target tokens (unshifted: HF shifts inside the loss)."""

    input_ids: np.ndarray
    trainable: np.ndarray
    truncated: bool = False

    @property
    def labels(self) -> np.ndarray:
        """HF-style labels: the token id where trainable, -100 elsewhere (int64)."""
        return np.where(self.trainable, self.input_ids, IGNORE_INDEX).astype(np.int64)

    @property
    def n_targets(self) -> int:
        return int(self.trainable.sum())

    def __len__(self) -> int:
        return len(self.input_ids)


def label_mask(offsets: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Boolean mask over tokens: True where the token's characters overlap any trainable span."""
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    starts = offsets[:, 0]
    ends = np.maximum(offsets[:, 1], starts + 1)
    mask = np.zeros(len(offsets), dtype=bool)
    for a, b in spans:
        mask |= (starts < b) & (ends > a)
    return mask


def _check_closing_tokens(ids: np.ndarray, offsets: np.ndarray, spans, n_kept: int, stops: set[int]) -> None:
    """Every span that survived truncation must end on a stop token, or the model never learns to stop."""
    starts = offsets[:, 0]
    ends = np.maximum(offsets[:, 1], starts + 1)
    for a, b in spans:
        inside = np.nonzero((starts < b) & (ends > a))[0]
        if len(inside) == 0 or inside[-1] >= n_kept:
            continue  # empty span or cut by truncation
        last = int(ids[inside[-1]])
        if last not in stops:
            raise BaylingError(
                f"template/tokenizer mismatch: an assistant turn ends on token id {last}, not on a stop token "
                f"{sorted(stops)}; the closing eos/eot string is not a special token of this tokenizer"
            )


def _finish(
    ids: list[int], offsets: list[tuple[int, int]], spans, max_length: int, overlong: str, stops: set[int]
) -> TokenizedSample | str:
    ids_a = np.asarray(ids, dtype=np.int32)
    off_a = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    mask = label_mask(off_a, spans)
    if len(mask):
        mask[0] = False
    if not mask.any():
        return "no_trainable_tokens"
    n_kept = len(ids_a)
    truncated = False
    if n_kept > max_length:
        if overlong == "drop":
            return "too_long"
        n_kept, truncated = max_length, True
    _check_closing_tokens(ids_a, off_a, spans, n_kept, stops)
    if truncated:
        ids_a, mask = ids_a[:n_kept], mask[:n_kept]
        if not mask.any():
            return "no_trainable_after_truncation"
    return TokenizedSample(ids_a, mask, truncated)


def _check_args(tokenizer, max_length: int, overlong: str) -> None:
    if overlong not in OVERLONG_MODES:
        raise BaylingError(f"overlong must be one of {OVERLONG_MODES}, got {overlong!r}", field="overlong")
    if max_length < 2:
        raise BaylingError(f"max_length must be >= 2, got {max_length}", field="max_length")
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise BaylingError("the tokenizer's pad token is missing or equal to eos (load it with load_tokenizer)")


def tokenize_batch(
    tokenizer,
    template: Template,
    conversations: Sequence[Sequence[Message]],
    max_length: int,
    overlong: str = "truncate",
) -> list[TokenizedSample | str]:
    """Tokenise many conversations with ONE batched tokenizer call (the Rust tokenizer parallelises it)."""
    _check_args(tokenizer, max_length, overlong)
    rendered = [render_for_tokenizer(template, tokenizer, msgs) for msgs in conversations]
    if not rendered:
        return []
    enc = tokenizer(
        [r.text for r in rendered],
        return_offsets_mapping=True,
        add_special_tokens=False,
        return_attention_mask=False,
    )
    stops = set(stop_token_ids(tokenizer, template))
    return [
        _finish(ids, offs, r.spans, max_length, overlong, stops)
        for ids, offs, r in zip(enc["input_ids"], enc["offset_mapping"], rendered)
    ]


def tokenize_conversation(
    tokenizer,
    template: Template,
    messages: Sequence[Message],
    max_length: int,
    overlong: str = "truncate",
) -> TokenizedSample | str:
    """One conversation -> :class:`TokenizedSample`, or the reason (str) it must be dropped."""
    return tokenize_batch(tokenizer, template, [messages], max_length, overlong)[0]


def tokenizer_source(cfg, model_dir: str) -> str:
    """``model.tokenizer`` (a dir, hub id, or the shipped ``llama2``/``llama3``), else the model dir."""
    from pathlib import Path

    from bayling.tokenizer import tokenizer_dir

    name = cfg.model.tokenizer
    if not name:
        return model_dir
    if name in ("llama2", "llama3") and not Path(name).exists():
        return str(tokenizer_dir(name))
    return name
