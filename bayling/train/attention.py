"""Attention implementations for packed rows: one registry, a default per device, a one-line refusal.

Why this module: a packed row holds several samples that must not see each other (burn #5). How that
isolation is expressed decides the memory of a training step and which kernels can run:

- ``sdpa_varlen`` (default on CPU, and on CUDA without flash-attn): the micro-batch is flattened to one
  row without padding; ``cu_seq_lens_q`` (sample boundaries) reach the attention function through the
  model's kwargs and every sample runs through transformers' own ``sdpa_attention_forward`` with
  ``is_causal=True`` and no mask. No [L, L] tensor exists, so memory grows linearly in the row length and
  the flash kernels of ``scaled_dot_product_attention`` stay usable (on CPU too). It is registered with
  transformers' ``AttentionInterface`` (the documented way to add an attention function); transformers
  then builds no mask for it.
- ``sdpa`` / ``eager``: rows padded to ``max_length`` with a dense block-diagonal mask ``[B, 1, L, L]``
  (quadratic in L: 256 MiB of bool per 16k row for sdpa, 1 GiB of fp32 for eager, plus eager's
  [B, H, L, L] scores). Kept as the reference the other paths are tested against.
- ``flex_attention``: padded rows with reset ``position_ids`` and no mask; transformers turns the
  positions into a compressed ``BlockMask`` (document mask) and runs ``torch.compile``'d flex attention.
  torch 2.13 has no FlexAttention backward on CPU ("FlexAttention does not support backward on CPU"),
  so it trains on CUDA only and is refused on CPU.
- ``flash_attention_2`` / ``flash_attention_3``: flattened row + ``cu_seq_lens`` select flash-attn's varlen
  kernel (the layout of transformers' ``DataCollatorWithFlattening``); CUDA and the flash-attn package.

``auto`` (the config default) resolves per device: CPU -> ``sdpa_varlen``; CUDA -> ``flash_attention_2``
when flash-attn is importable, else ``sdpa_varlen``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from bayling.errors import ConfigError

SDPA_VARLEN = "sdpa_varlen"


@dataclass(frozen=True)
class AttnImpl:
    """How one attention implementation wants a packed micro-batch laid out, and where it can train."""

    name: str
    flat: bool  # True: one row [1, T] + cu_seq_lens; False: [B, max_length] padded rows
    mask: str  # "dense" (4D block mask), "positions" (transformers builds a BlockMask), "none"
    cpu_train: bool
    package: str | None = None  # importable module it needs
    note: str = ""


IMPLS: dict[str, AttnImpl] = {
    SDPA_VARLEN: AttnImpl(SDPA_VARLEN, flat=True, mask="none", cpu_train=True,
                          note="per-sample SDPA (is_causal), no mask, linear memory"),
    "sdpa": AttnImpl("sdpa", flat=False, mask="dense", cpu_train=True, note="dense [B,1,L,L] bool mask"),
    "eager": AttnImpl("eager", flat=False, mask="dense", cpu_train=True, note="dense additive mask + [B,H,L,L]"),
    "flex_attention": AttnImpl("flex_attention", flat=False, mask="positions", cpu_train=False,
                               note="BlockMask from reset position ids; torch.compile; no CPU backward"),
    "flash_attention_2": AttnImpl("flash_attention_2", flat=True, mask="none", cpu_train=False,
                                  package="flash_attn", note="flash-attn varlen kernel"),
    "flash_attention_3": AttnImpl("flash_attention_3", flat=True, mask="none", cpu_train=False,
                                  package="flash_attn_interface", note="flash-attn 3 (Hopper) varlen kernel"),
}
CHOICES = ("auto", *IMPLS)


def resolve(name: str, cpu: bool | None = None) -> str:
    """The implementation ``name`` stands for on this device (``auto`` -> the documented default);
    ``cpu`` None: CPU unless torch sees CUDA."""
    if name != "auto":
        return name
    if cpu is None:
        import torch

        cpu = not torch.cuda.is_available()
    if not cpu and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return SDPA_VARLEN


def check(name: str, cpu: bool) -> str:
    """Resolve ``name`` and refuse, in one line (exit 2 through ConfigError), what cannot train here."""
    field = "model.attn_implementation"
    if name not in CHOICES:
        raise ConfigError(f"unknown attention {name!r}; known: {', '.join(CHOICES)}", field=field)
    impl = IMPLS[resolve(name, cpu)]
    if cpu and not impl.cpu_train:
        why = "torch has no FlexAttention backward on CPU" if impl.name == "flex_attention" else "needs a CUDA GPU"
        raise ConfigError(f"{impl.name} cannot train on CPU ({why}); use sdpa_varlen (or auto)", field=field)
    if impl.package and importlib.util.find_spec(impl.package) is None:
        raise ConfigError(f"{impl.name} needs the {impl.package} package, which is not installed; install it or "
                          "use sdpa_varlen (or auto)", field=field)
    return impl.name


def is_flat(name: str) -> bool:
    """Whether collation flattens a micro-batch to one unpadded row with ``cu_seq_lens`` kwargs."""
    return IMPLS[name].flat if name in IMPLS else False


def sdpa_varlen_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                        scaling: float | None = None, **kwargs):
    """transformers attention function: SDPA per sample of a flattened row ([1, H, T, D] tensors).

    The sample boundaries come from ``cu_seq_lens_q`` (set by :func:`bayling.train.packing.collate_packed`);
    without them the row's samples would see each other, so their absence is an error, not a fallback.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu = kwargs.get("cu_seq_lens_q")
    if cu is None or query.shape[0] != 1:
        raise ValueError("attn_implementation=sdpa_varlen needs one flattened row and cu_seq_lens_q (collate with "
                         "bayling.train.packing.collate_packed(..., attn_implementation='sdpa_varlen'))")
    bounds = cu.tolist()
    if bounds[0] != 0 or bounds[-1] != query.shape[2]:
        raise ValueError(f"cu_seq_lens_q {bounds[0]}..{bounds[-1]} does not cover the row of {query.shape[2]}")
    parts = [
        sdpa_attention_forward(module, query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], None, dropout=dropout,
                               scaling=scaling, is_causal=True)[0]
        for s, e in zip(bounds[:-1], bounds[1:]) if e > s
    ]
    return torch.cat(parts, dim=1), None


def hf_attn_implementation(name: str, cpu: bool | None = None) -> str:
    """The name to pass to ``from_pretrained(attn_implementation=...)``, registering ``sdpa_varlen`` first.

    ``cpu`` is only needed to resolve ``auto`` (None: CPU unless torch sees CUDA)."""
    name = resolve(name, cpu)
    if name == SDPA_VARLEN:
        from transformers import AttentionInterface

        AttentionInterface.register(SDPA_VARLEN, sdpa_varlen_forward)
    return name
