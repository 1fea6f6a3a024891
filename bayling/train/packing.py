"""Packing: best-fit-decreasing bins, collates with attention isolation, and the target-only loss.

Why packing: padding to the longest sample wastes most of a batch on SFT data (short answers next to
long ones); BFD fills max-length rows to ~99%. Packed samples must not see each other (burn #5), so:

- position ids restart at 0 for every sample (RoPE sees each sample as if alone);
- the attention implementation (bayling/train/attention.py: registry, per-device default, refusals)
  decides the layout. "sdpa_varlen" (default on CPU) and "flash_attention_2/3": the micro-batch is
  flattened to ONE row ``[1, T]`` without padding and ``cu_seq_lens_q/k`` + ``max_length_q/k`` kwargs give
  the sample boundaries (the layout of transformers' ``DataCollatorWithFlattening``): no mask exists.
  "sdpa"/"eager": a 4D block-diagonal causal mask ``[B, 1, L, L]`` (bool, True = attend, for sdpa;
  additive float 0 / dtype-min for eager); transformers 5 ``masking_utils._preprocess_mask_arguments``
  returns a 4D mask as-is, so it reaches the kernels untouched. "flex_attention": padded rows, reset
  position ids and NO attention mask, from which transformers builds a compressed BlockMask.
  Note: with a 2D ``attention_mask`` transformers does NOT infer packing from position ids, which is
  why the tests' negative control (plain causal mask) leaks.
- labels are unshifted (HF shifts inside the loss) and -100 on pad and on the first token of every
  sample, so no sample is trained to predict the next sample's first token.

Which bins every rank sees in every step, and the loss normaliser, are :mod:`bayling.train.plans`.

Public API::

    bins = pack_best_fit_decreasing(cache.lengths, max_length)          # list[list[int]] (sample idx)
    packing_efficiency(cache.lengths, bins, max_length) -> float
    batch = collate_packed(cache, [bins[b] for b in mb], max_length, attn_implementation="sdpa")
    model(**batch.model_inputs())  # input_ids, labels, position_ids, attention_mask / cu_seq_lens_*; unpacked
    collate_padded(cache, sample_indices) -> Batch                      # baseline: one sample per row
    loss_sum = causal_lm_loss_sum(model_or_engine, batch)  # summed token CE, logits only at targets, chunked

The loop should compute its loss with ``causal_lm_loss_sum`` (same value and gradients as full logits,
tested) rather than full logits: it skips the vocabulary projection on prompt tokens (~half of SFT tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from bayling.train.attention import is_flat
from bayling.train.tokenize import IGNORE_INDEX

LOSS_CHUNK_ELEMENTS = 1 << 25  # logits per loss chunk: 128 MiB in fp32 (256 rows of Llama-3's 128,256 vocab)


def pack_best_fit_decreasing(lengths: Sequence[int] | np.ndarray, max_length: int) -> list[list[int]]:
    """Bins of sample indices, each with total length <= ``max_length``; deterministic (ties by index).

    For each sample (longest first) choose the fullest bin that still fits it; bins are found through
    per-free-space stacks and a "non-empty" bitmap, O(n * max_length / SIMD) in practice.
    """
    lens = np.asarray(lengths, dtype=np.int64)
    if len(lens) and (lens.max() > max_length or lens.min() < 1):
        raise ValueError(f"sample lengths must be in [1, {max_length}] to pack (max is {lens.max()})")
    order = np.argsort(-lens, kind="stable")
    free: list[list[int]] = [[] for _ in range(max_length + 1)]  # free space -> stack of bin ids
    nonempty = np.zeros(max_length + 1, dtype=bool)
    bins: list[list[int]] = []
    space: list[int] = []
    for idx in order.tolist():
        n = int(lens[idx])
        hit = int(np.argmax(nonempty[n:])) + n if nonempty[n:].any() else -1
        if hit < 0:
            b = len(bins)
            bins.append([idx])
            space.append(max_length - n)
        else:
            b = free[hit].pop()
            if not free[hit]:
                nonempty[hit] = False
            bins[b].append(idx)
            space[b] -= n
        if space[b] > 0:
            free[space[b]].append(b)
            nonempty[space[b]] = True
    return bins


def packing_efficiency(lengths: Sequence[int] | np.ndarray, bins: list[list[int]], max_length: int) -> float:
    """Real tokens / (bins * max_length): the fraction of a packed batch that is not padding."""
    lens = np.asarray(lengths, dtype=np.int64)
    used = sum(int(lens[b].sum()) for b in bins)
    return used / (len(bins) * max_length) if bins else 0.0


@dataclass
class Batch:
    """Tensors for one micro-batch; ``model_inputs()`` is what to pass to the HF model."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    seq_ids: torch.Tensor | None = None  # sample number of each token (-1 on pad), for per-sample metrics
    extra: dict = field(default_factory=dict)  # flash varlen kwargs

    @property
    def n_targets(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())

    @property
    def n_real_tokens(self) -> int:
        return int((self.seq_ids >= 0).sum()) if self.seq_ids is not None else self.input_ids.numel()

    def model_inputs(self, with_labels: bool = True) -> dict:
        out = {"input_ids": self.input_ids}
        if with_labels:
            out["labels"] = self.labels
        for k in ("position_ids", "attention_mask"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        out.update(self.extra)
        return out

    def to(self, device) -> Batch:
        mv = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
        return Batch(mv(self.input_ids), mv(self.labels), mv(self.position_ids), mv(self.attention_mask),
                     mv(self.seq_ids), {k: mv(v) for k, v in self.extra.items()})


def _sample_labels(cache, i: int) -> tuple[np.ndarray, np.ndarray]:
    ids, labels = cache.get(i)
    labels = labels.copy()
    labels[0] = IGNORE_INDEX  # never predict a sample's first token from the previous sample
    return ids, labels


def block_causal_mask(
    seq_ids: torch.Tensor, attn_implementation: str = "sdpa", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """[B, 1, L, L] mask: token q sees token k iff same sample and k <= q.

    Bool (True = attend) for "sdpa", the format transformers' own sdpa masks use, so it works for any
    compute dtype; additive float (0 / dtype-min, ``dtype`` = compute dtype) for "eager".
    Padding (seq id -1) only sees padding, never a sample, and a sample never sees later padding.
    A sample is a run of equal ids (how :func:`collate_packed` lays rows out), so the mask is one causal
    block per run on the diagonal: a zero-filled [B, L, L] plus a copy of each run's [n, n] lower triangle,
    i.e. sum(n^2) written instead of B x L^2 compared (2 x 4096: 0.5 s -> BENCHMARKS.md, "Input pipeline").
    """
    B, L = seq_ids.shape
    allowed = torch.zeros(B, L, L, dtype=torch.bool)
    tril = torch.ones(L, L, dtype=torch.bool).tril_()
    starts = torch.ones(B, L, dtype=torch.bool)
    starts[:, 1:] = seq_ids[:, 1:] != seq_ids[:, :-1]
    for r in range(B):
        cuts = [*torch.nonzero(starts[r]).flatten().tolist(), L]
        for s, e in zip(cuts[:-1], cuts[1:]):
            allowed[r, s:e, s:e] = tril[: e - s, : e - s]
    if attn_implementation == "sdpa":
        return allowed[:, None]
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def collate_packed(
    cache,
    bins: Sequence[Sequence[int]],
    max_length: int,
    attn_implementation: str = "sdpa",
    mask_dtype: torch.dtype = torch.float32,
) -> Batch:
    """One micro-batch of packed bins -> Batch (``mask_dtype``: the compute dtype, used by "eager" only)."""
    pad_id = int(cache.pad_id)
    rows_ids, rows_lab, rows_pos, rows_seq = [], [], [], []
    seq = 0
    for b in bins:
        parts = [_sample_labels(cache, i) for i in b]
        ids = np.concatenate([p[0] for p in parts])
        lab = np.concatenate([p[1] for p in parts])
        pos = np.concatenate([np.arange(len(p[0])) for p in parts])
        sid = np.concatenate([np.full(len(p[0]), seq + k) for k, p in enumerate(parts)])
        seq += len(parts)
        if len(ids) > max_length:
            raise ValueError(f"bin of {len(ids)} tokens exceeds max_length {max_length}")
        rows_ids.append(ids), rows_lab.append(lab), rows_pos.append(pos), rows_seq.append(sid)
    if is_flat(attn_implementation):
        return _flatten(rows_ids, rows_lab, rows_pos, rows_seq)
    B = len(rows_ids)
    out_ids = torch.full((B, max_length), pad_id, dtype=torch.long)
    out_lab = torch.full((B, max_length), IGNORE_INDEX, dtype=torch.long)
    out_pos = torch.zeros((B, max_length), dtype=torch.long)
    out_seq = torch.full((B, max_length), -1, dtype=torch.long)
    for r in range(B):
        n = len(rows_ids[r])
        out_ids[r, :n] = torch.from_numpy(rows_ids[r])
        out_lab[r, :n] = torch.from_numpy(rows_lab[r])
        out_pos[r, :n] = torch.from_numpy(rows_pos[r])
        out_pos[r, n:] = torch.arange(max_length - n)
        out_seq[r, :n] = torch.from_numpy(rows_seq[r])
    if attn_implementation == "flex_attention":  # transformers derives the document mask from the positions,
        # but only without a KV cache: with use_cache (an eval-mode default) it silently attends across samples
        return Batch(out_ids, out_lab, out_pos, None, out_seq, {"use_cache": False})
    mask = block_causal_mask(out_seq, attn_implementation, mask_dtype)
    return Batch(out_ids, out_lab, out_pos, mask, out_seq)


def _flatten(rows_ids, rows_lab, rows_pos, rows_seq) -> Batch:
    """Flash-attention varlen: one row, no padding, cumulative sequence lengths per sample."""
    ids = np.concatenate(rows_ids)
    pos = np.concatenate(rows_pos)
    starts = np.nonzero(pos == 0)[0]
    cu = torch.tensor(np.append(starts, len(ids)), dtype=torch.int32)
    max_len = int(np.diff(cu.numpy()).max())
    extra = {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": max_len, "max_length_k": max_len}
    t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64))[None]  # noqa: E731
    return Batch(t(ids), t(np.concatenate(rows_lab)), t(pos), None, t(np.concatenate(rows_seq)), extra)


def collate_padded(cache, sample_indices: Sequence[int], pad_to: int | None = None,
                   attn_implementation: str = "sdpa") -> Batch:
    """Unpacked baseline: one sample per row, right-padded to the longest (or ``pad_to``), 2D mask.

    A flat implementation ("sdpa_varlen", flash) gets the flattened layout with one sample per segment
    instead (it has no mask to carry the padding). Same targets: a sample's first token is never one."""
    if is_flat(attn_implementation):
        rows = [[i] for i in sample_indices]
        return collate_packed(cache, rows, max(int(cache.lengths[i]) for i in sample_indices), attn_implementation)
    pairs = [cache.get(i) for i in sample_indices]
    L = pad_to or max(len(p[0]) for p in pairs)
    B = len(pairs)
    ids = torch.full((B, L), int(cache.pad_id), dtype=torch.long)
    lab = torch.full((B, L), IGNORE_INDEX, dtype=torch.long)
    att = torch.zeros((B, L), dtype=torch.long)
    seq = torch.full((B, L), -1, dtype=torch.long)
    for r, (i, lb) in enumerate(pairs):
        n = len(i)
        ids[r, :n], lab[r, :n], att[r, :n], seq[r, :n] = torch.from_numpy(i), torch.from_numpy(lb), 1, r
    return Batch(ids, lab, None, att, seq)


def causal_lm_loss_sum(model, batch: Batch, chunk_elements: int = LOSS_CHUNK_ELEMENTS) -> torch.Tensor:
    """Sum of next-token cross-entropies (fp32) over the batch's targets, computing logits ONLY there, in chunks.

    Why: the vocabulary projection and the fp32 softmax dominate small models and cost Llama-3 (128k vocab)
    gigabytes; prompt tokens (~40% of SFT tokens) need no logits, and even the target logits need not exist
    all at once. The model runs once with an all-False boolean ``logits_to_keep`` (its own LM head then
    projects nothing) and ``output_hidden_states`` (the last entry is the final-norm output, transformers 5
    ``capture_outputs``); the LM head + cross-entropy then run per chunk of ``chunk_elements // vocab``
    target rows under non-reentrant activation checkpointing, so neither the forward nor the backward holds
    more than one chunk's [rows, vocab] logits. Same value and gradients as the full-logit loss (tested);
    the price is one extra LM-head forward per chunk in the backward, so when all targets fit in ONE chunk
    (the usual case with a 32k vocabulary: 1,048 rows) it runs without checkpointing: the same peak (the
    logits are the last thing the forward makes and the first thing the backward frees), one head less. Works with a DeepSpeed engine (the
    forward goes through ``engine(...)``; the head is looked up on ``engine.module``).
    """
    keep = torch.zeros_like(batch.labels, dtype=torch.bool)
    keep[:, :-1] = batch.labels[:, 1:] != IGNORE_INDEX
    targets = batch.labels[:, 1:][keep[:, :-1]]
    out = model(**batch.model_inputs(with_labels=False), logits_to_keep=torch.zeros_like(keep),
                output_hidden_states=True)
    hidden = out.hidden_states[-1][keep.to(out.hidden_states[-1].device)]
    head = getattr(model, "module", model).get_output_embeddings()
    rows = max(1, chunk_elements // int(head.out_features))
    targets = targets.to(hidden.device)
    if len(targets) <= rows:  # one chunk: nothing runs after it in the forward, so checkpointing it would save
        return _chunk_loss_sum(head, hidden, targets)  # no peak memory and only add an LM-head forward
    total = None
    for start in range(0, max(len(targets), 1), rows):  # one (empty) chunk keeps a target-less batch in the graph
        part = checkpoint(_chunk_loss_sum, head, hidden[start:start + rows], targets[start:start + rows],
                          use_reentrant=False)
        total = part if total is None else total + part
    return total


def _chunk_loss_sum(head, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), targets, ignore_index=IGNORE_INDEX, reduction="sum")
