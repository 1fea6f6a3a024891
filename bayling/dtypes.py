"""Config dtype names ("bf16", "fp16", "fp32") -> torch dtypes: one map for training, masks and export.

Why here: the engine, the attention-mask builder and the Hugging Face export each kept a copy of the map;
a new name added to one (say "fp8") would silently miss the others. torch is imported on call, so config
loading and ``--help`` stay light.
"""

from __future__ import annotations


def torch_dtype(name: str):
    """The torch dtype of a config name; KeyError for any other name (configs validate names first)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]
