"""DeepSpeed setup: fill the "auto" values of deepspeed_configs/*.json, load the model, build the engine.

Why the JSON files keep "auto" placeholders: the batch geometry, precision and optimizer settings must come
from ONE place (the training config), otherwise a run silently trains with a JSON value that disagrees
with what ``--print-config`` shows. Every "auto" left after filling is an error naming its key.

Optimizer: torch's AdamW, never DeepSpeed's FusedAdam, by default. With ``DS_BUILD_OPS=0`` (how the project
installs DeepSpeed) FusedAdam is JIT-compiled on first use, which needs nvcc and the CUDA headers on every
compute node and minutes per fresh node; torch's ``AdamW(fused=True)`` is the same single-kernel update and
ships compiled in the torch wheel. So ``torch_adam`` is filled with true everywhere, ``fused`` is added on
CUDA, and a DeepSpeed JSON that asks for DeepSpeed's own optimizer (``"torch_adam": false``) is checked for
its build requirement before the run starts (:func:`check_optimizer_build`).

ZeRO-3 loading: ``transformers.integrations.HfDeepSpeedConfig`` must exist (and stay referenced: transformers
holds only a weak reference) BEFORE ``from_pretrained``; transformers then creates each parameter already
partitioned (``deepspeed.zero.Init``), so no rank ever holds the full model.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bayling.dtypes import torch_dtype
from bayling.errors import ConfigError, read_json
from bayling.paths import REPO_ROOT
from bayling.train.config import ZERO_CONFIGS, TrainConfig


@dataclass
class EngineBundle:
    """The engine plus what must stay alive with it (the ZeRO-3 HfDeepSpeedConfig reference)."""

    engine: Any
    ds_config: dict
    hf_ds_config: Any
    n_params: int
    zero_stage: int


def on_cpu() -> bool:
    """True when DeepSpeed's accelerator is the CPU (no CUDA/XPU/...)."""
    from deepspeed.accelerator import get_accelerator

    return get_accelerator().device_name() == "cpu"


def prepare_deepspeed_for_cpu() -> None:
    """Skip the ~20 s shm-comm JIT build and keep JIT caches in the repo."""
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO_ROOT / ".cache" / "torch_extensions"))
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def ds_template_path(cfg: TrainConfig) -> Path:
    """``deepspeed_config`` if given, else the shipped JSON for ``zero`` (CWD first, then the repo)."""
    name = cfg.deepspeed_config or str(Path("deepspeed_configs") / ZERO_CONFIGS[str(cfg.zero)])
    for cand in (Path(name), REPO_ROOT / name):
        if cand.is_file():
            return cand
    raise ConfigError("DeepSpeed config file not found", path=name, field="deepspeed_config")


def load_ds_template(cfg: TrainConfig) -> dict:
    path = ds_template_path(cfg)
    return read_json(path, "DeepSpeed config", ConfigError)


def auto_values(cfg: TrainConfig, world_size: int, hidden_size: int,
                grad_accum: int | None = None) -> dict[str, Any]:
    """The value each "auto" key gets, by dotted path (HF's choices for the bucket sizes); ``grad_accum``
    when the data plan derived it (``instructions_per_step``)."""
    ga = grad_accum or cfg.resolved_grad_accum(world_size)
    # HF's hidden^2 bucket rule, floored: tiny models would otherwise issue thousands of tiny collectives.
    bucket = max(hidden_size * hidden_size, 50_000_000)
    return {
        "train_micro_batch_size_per_gpu": cfg.micro_batch,
        "gradient_accumulation_steps": ga,
        "train_batch_size": cfg.micro_batch * ga * world_size,
        "gradient_clipping": cfg.optim.grad_clip,
        "bf16.enabled": cfg.dtype == "bf16",
        "fp16.enabled": cfg.dtype == "fp16",
        "optimizer.params.lr": cfg.optim.lr,
        "optimizer.params.betas": list(cfg.optim.betas),
        "optimizer.params.eps": cfg.optim.eps,
        "optimizer.params.weight_decay": cfg.optim.weight_decay,
        "optimizer.params.torch_adam": True,  # no JIT build anywhere (module docstring)
        "zero_optimization.reduce_bucket_size": bucket,
        "zero_optimization.allgather_bucket_size": bucket,
        "zero_optimization.stage3_prefetch_bucket_size": int(0.9 * bucket),
        "zero_optimization.stage3_param_persistence_threshold": 10 * hidden_size,
    }


def fill_auto(template: dict, values: dict[str, Any], source: str = "deepspeed config") -> dict:
    """Replace every "auto" by ``values[dotted.key]``; an "auto" without a value is an error."""
    out = copy.deepcopy(template)

    def walk(node: dict, prefix: str) -> None:
        for key, val in node.items():
            dotted = f"{prefix}{key}"
            if isinstance(val, dict):
                walk(val, dotted + ".")
            elif val == "auto":
                if dotted not in values:
                    raise ConfigError("no training-config value fills this \"auto\"", path=source, field=dotted)
                node[key] = values[dotted]

    walk(out, "")
    return out


def choose_optimizer(ds: dict, cpu: bool) -> dict:
    """Pick the AdamW implementation in the filled config ``ds`` (changed in place, returned).

    torch's AdamW (``torch_adam``) with ``fused: true``: on CUDA one kernel per parameter group, the same
    update as DeepSpeed's FusedAdam, nothing to compile; on CPU (torch's vectorised fused kernel) 4.6x
    faster than the default foreach AdamW (BENCHMARKS.md), which is also what HF Trainer picks. A ``fused``
    or ``foreach`` key written in the JSON is left alone, and so is a JSON asking for DeepSpeed's optimizer
    (``"torch_adam": false``; :func:`check_optimizer_build` checks it can be built). ``cpu`` is kept for
    callers that want to differ per device; both get the fused kernel today."""
    opt = ds.get("optimizer")
    if not opt or str(opt.get("type", "")).lower() not in ("adam", "adamw"):
        return ds
    params = opt.setdefault("params", {})
    if params.get("torch_adam") and "fused" not in params and "foreach" not in params:
        params["fused"] = True
    return ds


def optimizer_class_name(ds: dict, cpu: bool) -> str:
    """What ``deepspeed.initialize`` will build from ``ds`` (for the run log and the tests)."""
    opt = ds.get("optimizer") or {}
    params = opt.get("params", {})
    if str(opt.get("type", "")).lower() not in ("adam", "adamw"):
        return f"DeepSpeed {opt.get('type', 'client optimizer')}"
    if params.get("torch_adam"):
        return "torch.optim.AdamW(fused=True)" if params.get("fused") else "torch.optim.AdamW"
    offload = (ds.get("zero_optimization", {}).get("offload_optimizer") or {}).get("device") == "cpu"
    return "deepspeed.ops.adam.DeepSpeedCPUAdam" if offload else "deepspeed.ops.adam.FusedAdam"


def check_optimizer_build(ds: dict, cpu: bool, source: str = "deepspeed config") -> None:
    """DeepSpeed's own Adam (``"torch_adam": false``) is JIT-built unless DeepSpeed was installed with its ops
    prebuilt; fail before the run (one line) when neither the prebuilt op nor a compiler is there."""
    import shutil

    name = optimizer_class_name(ds, cpu)
    if not name.startswith("deepspeed.ops.adam."):
        return
    op = "cpu_adam" if name.endswith("CPUAdam") else "fused_adam"
    try:
        from deepspeed.git_version_info import installed_ops
    except ImportError:
        installed_ops = {}
    if installed_ops.get(op):
        return
    compiler = "c++" if op == "cpu_adam" else "nvcc"
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    found = shutil.which(compiler) or (compiler == "nvcc" and Path(cuda_home, "bin", "nvcc").is_file())
    if not found:
        raise ConfigError(f"{name} is not prebuilt (DS_BUILD_OPS=0) and needs {compiler} to JIT-compile it on "
                          "every node; remove \"torch_adam\": false to use torch's fused AdamW (no build)",
                          path=source, field="optimizer.params.torch_adam")


def build_ds_config(cfg: TrainConfig, world_size: int, hidden_size: int, grad_accum: int | None = None,
                    cpu: bool | None = None) -> dict:
    """The DeepSpeed config this run uses (stored in OUT/ds_config.json); ``cpu`` defaults to the device."""
    cpu = on_cpu() if cpu is None else cpu
    source = str(ds_template_path(cfg))
    ds = fill_auto(load_ds_template(cfg), auto_values(cfg, world_size, hidden_size, grad_accum), source=source)
    if cpu:
        for key in ("offload_optimizer", "offload_param"):
            ds.get("zero_optimization", {}).pop(key, None)  # DeepSpeedCPUAdam would JIT-build; no gain on CPU
    choose_optimizer(ds, cpu)
    check_optimizer_build(ds, cpu, source)
    return ds


def lr_schedule(optimizer, total_steps: int, warmup_ratio: float, min_lr_ratio: float):
    """transformers' cosine-with-warmup: linear warm-up from 0 over ceil(ratio x steps) steps, then cosine
    down to ``min_lr_ratio`` x peak (a LambdaLR: its state is saved in the DeepSpeed checkpoint)."""
    from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup

    warmup = int(math.ceil(total_steps * warmup_ratio))
    return get_cosine_with_min_lr_schedule_with_warmup(optimizer, num_warmup_steps=warmup,
                                                       num_training_steps=total_steps, min_lr_rate=min_lr_ratio)


def load_model(model_dir: str, cfg: TrainConfig, ds_config: dict):
    """Load the HF model; under ZeRO-3 the HfDeepSpeedConfig (returned, keep it) partitions it on load."""
    from transformers import AutoModelForCausalLM
    from transformers.integrations import HfDeepSpeedConfig

    stage = ds_config.get("zero_optimization", {}).get("stage", 0)
    hf_ds = HfDeepSpeedConfig(ds_config) if stage == 3 else None
    dtype = torch_dtype(cfg.dtype)
    from bayling.train.attention import hf_attn_implementation

    attn = hf_attn_implementation(cfg.model.attn_implementation, on_cpu())  # auto -> this device's default
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation=attn)
    model.config.use_cache = False
    if cfg.model.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, hf_ds


def count_params(model) -> int:
    """Full parameter count, also under ZeRO-3 (partitioned params carry ``ds_numel``)."""
    return sum(int(getattr(p, "ds_numel", p.numel())) for p in model.parameters())


def build_engine(cfg: TrainConfig, model_dir: str, world_size: int, total_steps: int,
                 grad_accum: int | None = None) -> EngineBundle:
    """deepspeed.initialize with the filled config and a client cosine schedule (saved in checkpoints)."""
    import deepspeed
    from transformers import AutoConfig

    hidden = int(getattr(AutoConfig.from_pretrained(model_dir), "hidden_size", 4096))
    ds_config = build_ds_config(cfg, world_size, hidden, grad_accum)
    model, hf_ds = load_model(model_dir, cfg, ds_config)
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        model_parameters=[p for p in model.parameters() if p.requires_grad],
        config=ds_config,
        lr_scheduler=lambda opt: lr_schedule(opt, total_steps, cfg.optim.warmup_ratio, cfg.optim.min_lr_ratio),
    )
    stage = int(ds_config.get("zero_optimization", {}).get("stage", 0))
    return EngineBundle(engine, ds_config, hf_ds, count_params(model), stage)
