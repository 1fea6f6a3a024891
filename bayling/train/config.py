"""The training configuration: one typed schema, filled by :func:`bayling.config.load_config`.

Every knob of a run lives here so that ``--print-config`` shows exactly what a run used and the resolved
config stored next to the checkpoints (``OUT/train_config.yaml``) reproduces it. Values whose default is
not published by BayLing 2 are marked "assumed" in the recipes and in docs/training.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bayling.errors import ConfigError

ZERO_CONFIGS = {"0": "zero0.json", "2": "zero2.json", "3": "zero3.json", "3-offload": "zero3_offload.json"}


def _check_template(name: str) -> None:
    """The template is checked with the config (not at tokenising time, minutes later)."""
    from bayling.templates import TEMPLATES

    if name not in TEMPLATES:
        raise ConfigError(f"unknown template {name!r}; known: {', '.join(sorted(TEMPLATES))}",
                          field="data.template")


@dataclass
class ModelSection:
    """Which model to fine-tune; ``init: tiny`` builds a random-init tiny Llama (CPU tests, the demo)."""

    path: str = ""
    init: Literal["pretrained", "tiny"] = "pretrained"
    tokenizer: str | None = None
    tiny_hidden_size: int = 64
    tiny_layers: int = 2
    gradient_checkpointing: bool = True
    # bayling/train/attention.py: auto = sdpa_varlen on CPU, flash_attention_2 on CUDA when flash-attn is
    # installed (else sdpa_varlen); sdpa/eager use a dense [B,1,L,L] mask; flex_attention trains on CUDA only
    attn_implementation: Literal["auto", "sdpa_varlen", "sdpa", "eager", "flex_attention", "flash_attention_2",
                                 "flash_attention_3"] = "auto"


@dataclass
class DataSection:
    """The ``bayling-build-data`` output to train on and how it is tokenised and packed."""

    dir: str = ""
    template: str = "bayling"
    max_length: int = 2048
    packing: bool = True
    overlong: Literal["truncate", "drop"] = "truncate"
    cache_dir: str | None = None
    background_collate: bool | None = None  # unset: on with a GPU, off on CPU (bayling.train.loop.BatchFeed)


@dataclass
class OptimSection:
    """AdamW + cosine schedule with linear warm-up; clipping on the global gradient norm."""

    lr: float = 2e-5
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0


@dataclass
class TrainConfig:
    """A whole run. What an optimizer step holds: ``instructions_per_step`` conversations (the paper's unit;
    packed per step, the number of rows varies), or else ``global_batch`` / ``grad_accum`` packed rows."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    out: str = "runs/train"
    micro_batch: int = 1
    grad_accum: int | None = None
    global_batch: int | None = None
    instructions_per_step: int | None = None
    epochs: int = 1
    max_steps: int | None = None
    zero: str = "2"
    deepspeed_config: str | None = None
    dtype: Literal["bf16", "fp32", "fp16"] = "bf16"
    export_dtype: Literal["bf16", "fp16", "fp32"] | None = None
    save_every: int = 500
    keep_last: int = 2
    eval_every: int = 0
    eval_batches: int | None = None
    log_every: int = 10
    seed: int = 42
    peak_tflops: float | None = None
    dist_timeout_minutes: int = 60

    def validate(self) -> None:
        """Reject values that would only fail deep inside DeepSpeed, naming the field."""
        if str(self.zero) not in ZERO_CONFIGS:
            raise ConfigError(f"must be one of {list(ZERO_CONFIGS)}, got {self.zero!r}", field="zero")
        positive = {
            "micro_batch": self.micro_batch,
            "epochs": self.epochs,
            "save_every": self.save_every,
            "keep_last": self.keep_last,
            "log_every": self.log_every,
            "data.max_length": self.data.max_length,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"must be >= 1, got {value}", field=name)
        for name, value in (("grad_accum", self.grad_accum), ("global_batch", self.global_batch),
                            ("max_steps", self.max_steps)):
            if value is not None and value < 1:
                raise ConfigError(f"must be >= 1 when set, got {value}", field=name)
        if self.grad_accum is not None and self.global_batch is not None:
            raise ConfigError("set either grad_accum or global_batch, not both", field="global_batch")
        if self.instructions_per_step is not None:
            if self.instructions_per_step < 1:
                raise ConfigError(f"must be >= 1 when set, got {self.instructions_per_step}",
                                  field="instructions_per_step")
            if self.grad_accum is not None or self.global_batch is not None:
                raise ConfigError("instructions_per_step fixes what a step holds; remove grad_accum and "
                                  "global_batch (the micro-steps per rank follow from the data)",
                                  field="instructions_per_step")
        if not 0.0 <= self.optim.warmup_ratio < 1.0:
            raise ConfigError(f"must be in [0, 1), got {self.optim.warmup_ratio}", field="optim.warmup_ratio")
        if self.optim.lr <= 0:
            raise ConfigError(f"must be > 0, got {self.optim.lr}", field="optim.lr")
        if len(self.optim.betas) != 2:
            raise ConfigError("must be two numbers [beta1, beta2]", field="optim.betas")
        for i, beta in enumerate(self.optim.betas):
            if not 0.0 <= beta < 1.0:  # AdamW divides by 1 - beta**t: beta >= 1 is a division by zero
                raise ConfigError(f"must be in [0, 1), got {beta}", field=f"optim.betas[{i}]")
        nonnegative = {"optim.weight_decay": self.optim.weight_decay, "optim.grad_clip": self.optim.grad_clip}
        for name, value in nonnegative.items():
            if value < 0:
                raise ConfigError(f"must be >= 0, got {value}", field=name)
        if self.optim.eps <= 0:
            raise ConfigError(f"must be > 0, got {self.optim.eps}", field="optim.eps")
        if not 0.0 <= self.optim.min_lr_ratio <= 1.0:
            raise ConfigError(f"must be in [0, 1], got {self.optim.min_lr_ratio}", field="optim.min_lr_ratio")
        if self.dist_timeout_minutes < 1:
            raise ConfigError(f"must be >= 1, got {self.dist_timeout_minutes}", field="dist_timeout_minutes")
        if self.model.tiny_hidden_size < 8 or self.model.tiny_hidden_size % 4:  # 4 heads of equal size
            raise ConfigError(f"must be a multiple of 4 and >= 8, got {self.model.tiny_hidden_size}",
                              field="model.tiny_hidden_size")
        if self.model.tiny_layers < 1:
            raise ConfigError(f"must be >= 1, got {self.model.tiny_layers}", field="model.tiny_layers")
        _check_template(self.data.template)
        if self.eval_every < 0:
            raise ConfigError("must be >= 0 (0 = no evaluation)", field="eval_every")
        if self.model.init == "tiny" and not self.model.tokenizer:
            raise ConfigError("model.init=tiny needs model.tokenizer (a tokenizer dir, or llama2/llama3)",
                              field="model.tokenizer")

    def require_paths(self) -> None:
        """Model and data are only needed to train (not for --print-config / --estimate-memory)."""
        if not self.model.path:
            raise ConfigError("required: a local model dir or hub id", field="model.path")
        if not self.data.dir:
            raise ConfigError("required: a bayling-build-data output dir", field="data.dir")

    def resolved_grad_accum(self, world_size: int) -> int | None:
        """GA from ``grad_accum``, or from ``global_batch`` = micro_batch * GA * world_size; None with
        ``instructions_per_step`` (then GA follows from the data: the fullest step's rows)."""
        if self.instructions_per_step is not None:
            if self.instructions_per_step < world_size:
                raise ConfigError(f"{self.instructions_per_step} instructions per step cannot keep {world_size} "
                                  "processes busy", field="instructions_per_step")
            return None
        if self.global_batch is None:
            return self.grad_accum or 1
        per_step = self.micro_batch * world_size
        if self.global_batch % per_step:
            raise ConfigError(
                f"global_batch {self.global_batch} is not a multiple of micro_batch x world size = {per_step}",
                field="global_batch",
            )
        return self.global_batch // per_step

    def resolved_export_dtype(self) -> str:
        """16-bit export by default: bf16 unless training in fp16."""
        if self.export_dtype is not None:
            return self.export_dtype
        return "fp16" if self.dtype == "fp16" else "bf16"

    def token_cache_root(self) -> Path:
        """Shared by all runs under the same parent so the cache is built once per (data, tokenizer, ...)."""
        if self.data.cache_dir:
            return Path(self.data.cache_dir)
        return Path(self.out).resolve().parent / "token_cache"
