"""Per-GPU memory estimate for full fine-tuning under DeepSpeed ZeRO: will this job fit?

Why: a 13B full fine-tune OOMs or crawls depending on ZeRO stage, offload, micro-batch and sequence
length; ``bayling-train --estimate-memory`` answers before a cluster allocation is spent.

Model states (bf16 mixed precision + AdamW, P parameters, N GPUs in total) under ZeRO-2/3 come from
DeepSpeed's own estimators (``estimate_zero2/3_model_states_mem_needs``, the "cold" variants that take
parameter counts, so no model is built); the table is how the total splits into rows (the optimizer row is
DeepSpeed's total minus the others). ZeRO-0/1 and fp32, which DeepSpeed does not estimate, use the table:

======  ============  ====================  ==================  ========================
stage   16-bit params  gradients             optimizer (fp32     ZeRO-3 gathered layer
                                             master + Adam m, v)
======  ============  ====================  ==================  ========================
0       2P            2P                    12P                 -
1       2P            2P + 4P/N             12P/N               -
2       2P            6P/N                  12P/N               -
3       2P/N          4P/N                  12P/N               4 x largest layer
======  ============  ====================  ==================  ========================

``offload_optimizer`` moves gradients + optimizer to CPU; ``offload_params`` (ZeRO-3) also the params; the
CPU RAM per node is DeepSpeed's figure (with its 1.5x buffer factor) under ZeRO-2/3.
fp32 training: params 4, grads 4, Adam 8 bytes per parameter (no master copy).

Activations (per micro-batch of b sequences of s tokens, 16-bit, Llama block with SDPA/flash attention
so no s x s scores are kept): per layer ~ s*b*(6h + 2*kv_dim + 4*ffn) values; with gradient checkpointing
only each layer's input (s*b*h) is kept plus one layer being recomputed; plus the logits, which
transformers upcasts to fp32 for the loss: s*b*vocab*(2 + 4 + 4) bytes. Not counted: CUDA context and
allocator fragmentation (budget 1-3 GiB).

Public API::

    est = estimate_memory("llama2-13b", zero_stage=3, gpus_per_node=8)   # or an HF config dir
    print(format_estimate(est))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bayling.errors import ConfigError, read_json

# Public config.json hyper-parameters of the base models BayLing 2 fine-tunes.
LLAMA_CONFIGS: dict[str, dict] = {
    "llama2-7b": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                  "num_key_value_heads": 32, "intermediate_size": 11008, "vocab_size": 32000,
                  "tie_word_embeddings": False},
    "llama2-13b": {"hidden_size": 5120, "num_hidden_layers": 40, "num_attention_heads": 40,
                   "num_key_value_heads": 40, "intermediate_size": 13824, "vocab_size": 32000,
                   "tie_word_embeddings": False},
    "llama3-8b": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                  "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
                  "tie_word_embeddings": False},
}
# The recipes' hub ids (data/recipes/train/*.yaml) -> the table above, so --estimate-memory --config works
# offline, before anything is downloaded.
HUB_IDS = {"meta-llama/Llama-2-7b-chat-hf": "llama2-7b", "meta-llama/Llama-2-7b-hf": "llama2-7b",
           "meta-llama/Llama-2-13b-chat-hf": "llama2-13b", "meta-llama/Llama-2-13b-hf": "llama2-13b",
           "meta-llama/Meta-Llama-3-8B-Instruct": "llama3-8b", "meta-llama/Meta-Llama-3-8B": "llama3-8b"}
GiB = 1024**3


@dataclass
class MemoryEstimate:
    """Bytes per GPU (and per node on CPU for offloaded states)."""

    model: str
    total_params: int
    largest_layer_params: int
    zero_stage: int
    gpus_per_node: int
    nodes: int
    micro_batch: int
    seq_len: int
    grad_checkpointing: bool
    offload_optimizer: bool
    offload_params: bool
    dtype: str
    params: int
    grads: int
    optimizer: int
    zero3_buffers: int
    activations: int
    cpu_per_node: int

    @property
    def model_states(self) -> int:
        return self.params + self.grads + self.optimizer + self.zero3_buffers

    @property
    def total(self) -> int:
        return self.model_states + self.activations


def load_llama_config(model: str) -> tuple[str, dict]:
    """Hyper-parameters of a named base model or of an HF checkpoint/config directory (config.json)."""
    model = HUB_IDS.get(model, model)
    if model in LLAMA_CONFIGS:
        return model, LLAMA_CONFIGS[model]
    path = Path(model)
    cfg_file = path / "config.json" if path.is_dir() else path
    if not cfg_file.is_file():
        raise ConfigError(f"unknown model {model!r}: use one of {', '.join(LLAMA_CONFIGS)} or an HF config dir",
                          field="model")
    cfg = read_json(cfg_file, "model config", ConfigError)
    cfg.setdefault("num_key_value_heads", cfg.get("num_attention_heads"))
    missing = [k for k in LLAMA_CONFIGS["llama2-7b"] if k not in cfg and k != "tie_word_embeddings"]
    if missing:
        raise ConfigError(f"config has no {', '.join(missing)} (not a Llama-style config)", path=cfg_file)
    return str(path), cfg


def count_params(cfg: dict) -> tuple[int, int]:
    """(total parameters, largest single tensor) of a LlamaForCausalLM with this config."""
    h, n_layers, v = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    kv = cfg["num_key_value_heads"] * cfg.get("head_dim", h // cfg["num_attention_heads"])
    q = cfg["num_attention_heads"] * cfg.get("head_dim", h // cfg["num_attention_heads"])
    ffn = cfg["intermediate_size"]
    layer = h * q + 2 * h * kv + q * h + 3 * h * ffn + 2 * h
    embed = v * h
    total = embed + n_layers * layer + h + (0 if cfg.get("tie_word_embeddings") else embed)
    return total, max(embed, h * ffn)


def deepspeed_estimators():
    """DeepSpeed's own ZeRO-2/3 model-state estimators (the "cold" ones: parameter counts in, no model built).

    Imported with DeepSpeed's import-time chatter (its logger writes to stdout, e.g. "Setting accelerator to
    CPU") filtered, so ``--estimate-memory`` prints only the table.
    """
    import logging

    ds_logger = logging.getLogger("DeepSpeed")

    def errors_only(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR

    ds_logger.addFilter(errors_only)
    try:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs
    finally:
        ds_logger.removeFilter(errors_only)
    return estimate_zero2_model_states_mem_needs, estimate_zero3_model_states_mem_needs


def model_states(P: int, largest: int, gpus_per_node: int, nodes: int, stage: int, half: bool,
                 off_opt: bool, off_par: bool) -> tuple[int, int, int, int, int]:
    """(params, grads, optimizer, ZeRO-3 buffers) bytes per GPU and CPU bytes per node for offloaded states.

    16-bit mixed precision under ZeRO-2/3 (the recipes' settings): the GPU total and the CPU figure are
    DeepSpeed's (``estimate_zero2/3_model_states_mem_needs``); the split into params / grads / buffers
    follows the table in the module docstring and the optimizer row is the rest of DeepSpeed's total.
    ZeRO-0/1 and fp32 have no DeepSpeed estimator: the table's formula alone.
    """
    N = gpus_per_node * nodes
    if not half:
        p, g, o = 4 * P, 4 * P, 8 * P
        params, grads, opt = {0: (p, g, o), 1: (p, g, o // N), 2: (p, g // N, o // N), 3: (p // N, g // N, o // N)}[stage]
    else:
        params, grads, opt = {0: (2 * P, 2 * P, 12 * P), 1: (2 * P, 2 * P + 4 * P // N, 12 * P // N),
                              2: (2 * P, int(6 * P / N), 0), 3: (int(2 * P / N), int(4 * P / N), 0)}[stage]
    buffers = 4 * largest if stage == 3 else 0
    if off_opt:
        grads, opt = 0, 0
    if off_par:
        params = 0
    cpu = 0
    if half and stage in (2, 3):
        zero2, zero3 = deepspeed_estimators()
        if stage == 2:
            cpu_ds, gpu = zero2(P, gpus_per_node, nodes, cpu_offload=off_opt)
        else:
            cpu_ds, gpu, buffers = zero3(P, largest, gpus_per_node, nodes, cpu_offload=off_opt,
                                         cpu_offload_params=off_par)
        opt = gpu - params - grads - buffers
        cpu = cpu_ds if off_opt else 0
    elif off_opt:  # fp32 master + Adam + fp32 grads of this node's GPUs' partitions
        cpu = 16 * P // nodes
    return params, grads, opt, buffers, cpu


def _activations(cfg: dict, b: int, s: int, ckpt: bool, act_bytes: int) -> int:
    h, n_layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    head_dim = cfg.get("head_dim", h // cfg["num_attention_heads"])
    kv = cfg["num_key_value_heads"] * head_dim
    per_layer = act_bytes * s * b * (6 * h + 2 * kv + 4 * cfg["intermediate_size"])
    layers = n_layers * act_bytes * s * b * h + per_layer if ckpt else n_layers * per_layer
    logits = s * b * cfg["vocab_size"] * (act_bytes + 4 + 4)
    return layers + logits


def estimate_memory(
    model: str,
    zero_stage: int = 3,
    gpus_per_node: int = 8,
    nodes: int = 1,
    micro_batch: int = 1,
    seq_len: int = 2048,
    grad_checkpointing: bool = True,
    offload_optimizer: bool = False,
    offload_params: bool = False,
    dtype: str = "bf16",
) -> MemoryEstimate:
    """Per-GPU memory of full fine-tuning ``model`` (a name in LLAMA_CONFIGS or an HF config dir)."""
    if zero_stage not in (0, 1, 2, 3):
        raise ConfigError(f"zero stage must be 0-3, got {zero_stage}", field="zero")
    if dtype not in ("bf16", "fp16", "fp32"):
        raise ConfigError(f"dtype must be bf16, fp16 or fp32, got {dtype!r}", field="dtype")
    if offload_params and zero_stage != 3:
        raise ConfigError("parameter offload needs ZeRO-3", field="offload_params")
    if offload_optimizer and zero_stage == 0:
        raise ConfigError("optimizer offload needs ZeRO 1-3", field="offload_optimizer")
    if min(gpus_per_node, nodes, micro_batch, seq_len) < 1:
        raise ConfigError("gpus, nodes, micro batch and sequence length must be >= 1")
    name, cfg = load_llama_config(model)
    P, largest = count_params(cfg)
    half = dtype != "fp32"
    params, grads, opt, buffers, cpu = model_states(P, largest, gpus_per_node, nodes, zero_stage, half,
                                                    offload_optimizer, offload_params)
    act = _activations(cfg, micro_batch, seq_len, grad_checkpointing, 2 if half else 4)
    return MemoryEstimate(name, P, largest, zero_stage, gpus_per_node, nodes, micro_batch, seq_len,
                          grad_checkpointing, offload_optimizer, offload_params, dtype,
                          params, grads, opt, buffers, act, cpu)


def format_estimate(est: MemoryEstimate) -> str:
    """Human-readable table (GiB per GPU)."""
    off = [w for w, on in (("optimizer", est.offload_optimizer), ("params", est.offload_params)) if on]
    rows = [
        ("16-bit parameters" if est.dtype != "fp32" else "fp32 parameters", est.params),
        ("gradients", est.grads),
        ("optimizer states (AdamW)", est.optimizer),
        ("ZeRO-3 gathered-layer buffers", est.zero3_buffers),
        ("model states", est.model_states),
        (f"activations ({'with' if est.grad_checkpointing else 'no'} grad checkpointing, incl. fp32 logits)",
         est.activations),
        ("TOTAL per GPU (+1-3 GiB CUDA context/fragmentation)", est.total),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [
        f"Memory estimate: {est.model} ({est.total_params / 1e9:.2f}B params), ZeRO-{est.zero_stage}, "
        f"{est.nodes} node(s) x {est.gpus_per_node} GPU(s), micro-batch {est.micro_batch} x {est.seq_len} tokens, "
        f"{est.dtype}, offload: {', '.join(off) or 'none'}",
        "",
        f"{'per GPU':<{width}}  {'GiB':>8}",
        f"{'-' * width}  {'-' * 8}",
    ]
    lines += [f"{label:<{width}}  {value / GiB:8.2f}" for label, value in rows]
    if est.cpu_per_node:
        lines.append(f"{'CPU RAM per node for offloaded states':<{width}}  {est.cpu_per_node / GiB:8.2f}")
    lines.append("")
    lines.append("Model states (ZeRO-2/3) are DeepSpeed's estimate_zero2/3_model_states_mem_needs; activations are an "
                 "analytic estimate for a Llama block with SDPA/flash attention.")
    return "\n".join(lines)
