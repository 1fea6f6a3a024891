"""Checkpoints that count only when complete, exact resume, keep-last-K, and the final HF export.

Layout (docs/training.md)::

    OUT/checkpoints/step-000120/   DeepSpeed files (model/optimizer/scheduler states, one set per rank)
                                   rng_rank{R}.pt    python/numpy/torch RNG of rank R
                                   MANIFEST.json     size + sha256 of every file above (resume_guard.py)
                                   train_state.json  step, world size, batch geometry, run settings
                                   COMPLETED         written LAST, after every rank finished writing
    OUT/checkpoints/latest         name of the newest COMPLETE checkpoint, replaced atomically after COMPLETED
    OUT/final/                     HF safetensors (16-bit), config, generation_config, tokenizer + chat template

Why the order: a crash (or kill -9) mid-save leaves a folder without COMPLETED and ``latest`` still naming
the previous complete checkpoint; ``--resume auto`` only ever trusts folders with COMPLETED.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

from bayling.atomic import atomic_write_text
from bayling.errors import ConfigError, read_json
from bayling.train import resume_guard as guard

TAG_RE = re.compile(r"^step-(\d+)$")
COMPLETED = "COMPLETED"
LATEST = "latest"
STATE_FILE = "train_state.json"


def tag_for(step: int) -> str:
    return f"step-{step:06d}"


def is_complete(ckpt: Path) -> bool:
    return (ckpt / COMPLETED).is_file() and (ckpt / STATE_FILE).is_file()


def complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """(step, dir) of every complete checkpoint under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        m = TAG_RE.match(d.name)
        if m and d.is_dir() and is_complete(d):
            found.append((int(m.group(1)), d))
    return sorted(found)


def rng_state() -> dict[str, Any]:
    """RNG of this rank in a form ``torch.load(weights_only=True)`` accepts (no pickle of numpy objects)."""
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(ckpt: Path, rank: int) -> None:
    import numpy as np
    import torch

    path = ckpt / f"rng_rank{rank}.pt"
    if not path.is_file():
        return
    state = torch.load(path, weights_only=True)
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(engine, root: Path, step: int, state: dict, *, rank: int, keep_last: int,
                    update_latest: bool = True, tag: str | None = None) -> Path:
    """Collective: every rank writes its part; rank 0 then marks it COMPLETED and moves ``latest``."""
    import torch
    import torch.distributed as dist

    tag = tag or tag_for(step)
    ckpt = root / tag
    if is_complete(ckpt):
        return ckpt
    if rank == 0 and ckpt.exists():
        shutil.rmtree(ckpt)  # a partial leftover of a crashed save of the same step
    dist.barrier()
    engine.save_checkpoint(str(root), tag=tag, client_state={"bayling": state}, save_latest=False)
    torch.save(rng_state(), ckpt / f"rng_rank{rank}.pt")
    dist.barrier()
    hashes = hash_files_collectively(ckpt, rank)
    if rank == 0:
        guard.write_manifest(ckpt, hashes)
        atomic_write_text(ckpt / STATE_FILE, json.dumps(state, indent=2) + "\n")
        atomic_write_text(ckpt / COMPLETED, f"{tag}\n")
        if update_latest:
            atomic_write_text(root / LATEST, tag)
            prune(root, keep_last)
    dist.barrier()
    return ckpt


def prune(root: Path, keep_last: int) -> None:
    """Keep the newest ``keep_last`` complete checkpoints and drop partial leftovers older than them."""
    done = complete_checkpoints(root)
    keep = {d for _, d in done[-keep_last:]}
    newest = done[-1][0] if done else -1
    for d in root.iterdir():
        m = TAG_RE.match(d.name)
        if not m or d in keep:
            continue
        if is_complete(d) or int(m.group(1)) < newest:
            shutil.rmtree(d, ignore_errors=True)


def find_resume(root: Path, resume: str) -> Path | None:
    """``none`` -> None; ``auto`` -> ``latest`` if complete, else the newest complete one; PATH -> checked."""
    if resume == "none":
        return None
    if resume != "auto":
        ckpt = Path(resume)
        if not ckpt.is_dir():
            raise ConfigError("checkpoint directory not found", path=ckpt, field="--resume")
        if not is_complete(ckpt):
            raise ConfigError(f"checkpoint is incomplete (no {COMPLETED} marker)", path=ckpt, field="--resume")
        return ckpt
    latest = root / LATEST
    if latest.is_file():
        cand = root / latest.read_text(encoding="utf-8").strip()
        if is_complete(cand):
            return cand
    done = complete_checkpoints(root)
    return done[-1][1] if done else None


def load_state(ckpt: Path) -> dict:
    state = read_json(ckpt / STATE_FILE, "checkpoint state", ConfigError)
    if not isinstance(state, dict):
        raise ConfigError("checkpoint state is not a JSON object", path=ckpt / STATE_FILE, field="--resume")
    return state


def hash_files_collectively(ckpt: Path, rank: int) -> dict[str, str]:
    """sha256 of every checkpoint file, the work split over all ranks (a 13B ZeRO checkpoint is ~200 GB);
    the full map on rank 0, {} elsewhere."""
    import torch.distributed as dist

    world = dist.get_world_size()
    names: list = [guard.checkpoint_files(ckpt) if rank == 0 else None]
    dist.broadcast_object_list(names, src=0)
    mine = {n: guard.sha256_file(ckpt / n) for n in guard.share(names[0], rank, world)}
    parts: list = [None] * world
    dist.all_gather_object(parts, mine)
    return {k: v for part in parts for k, v in part.items()} if rank == 0 else {}


def verify_manifest(ckpt: Path, rank: int, world: int) -> None:
    """Before unpickling anything: the file list and sizes (every rank), then the hashes, split over ranks.
    Raises the same :class:`~bayling.train.resume_guard.ResumeRefused` on every rank."""
    import torch.distributed as dist

    files = guard.read_manifest(ckpt)
    bad = guard.verify_hashes(ckpt, files, guard.share(sorted(files), rank, world))
    found: list = [None] * world
    dist.all_gather_object(found, bad)
    first = next((b for b in found if b), None)
    if first:
        raise guard.ResumeRefused(f"{first} differs from the checkpoint's {guard.MANIFEST} (sha256); refusing "
                                  "to unpickle it (--trust-checkpoint overrides)", path=ckpt, field="--resume")


def load_checkpoint(engine, ckpt: Path, rank: int) -> dict:
    """Restore DeepSpeed states and RNG; return the saved train state."""
    engine.load_checkpoint(str(ckpt.parent), tag=ckpt.name, load_optimizer_states=True,
                           load_lr_scheduler_states=True)
    restore_rng(ckpt, rank)
    return load_state(ckpt)


def write_requeue_marker(out: Path, info: dict) -> None:
    """OUT/REQUEUE tells a Slurm script that the run stopped on a signal and must be resumed."""
    atomic_write_text(out / "REQUEUE", json.dumps(info) + "\n")


def gather_state_dict(bundle) -> dict | None:
    """Full weights on rank 0 (None elsewhere); under ZeRO-3 every rank must call this (collective)."""
    engine = bundle.engine
    if bundle.zero_stage == 3:
        return engine._zero3_consolidated_16bit_state_dict()
    if engine.global_rank != 0:
        return None
    return {k: v.detach() for k, v in engine.module.state_dict().items()}


def export_final(bundle, *, model_dir: str, tokenizer_src: str, template_name: str, export_dtype: str,
                 out: Path, rank: int, identity: dict) -> Path | None:
    """OUT/final: 16-bit safetensors + config + generation_config (stop tokens) + tokenizer with template.

    Written to ``final.tmp`` and renamed, so a ``final/`` folder is always a whole export.
    """
    import torch
    import torch.distributed as dist

    state = gather_state_dict(bundle)
    final = out / "final"
    if rank == 0:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[export_dtype]
        tmp = out / "final.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        # copy=True: on CPU with the same dtype ``.to`` returns the tensor itself, and under ZeRO-2 bf16 that is a
        # view into DeepSpeed's flat buffer, which safetensors refuses to save ("None is covering the entire storage")
        state = {k: v.to(device="cpu", dtype=dtype, copy=True).contiguous() for k, v in state.items()}
        _write_hf_dir(state, tmp, model_dir=model_dir, tokenizer_src=tokenizer_src,
                      template_name=template_name, dtype=dtype, max_length=identity["max_length"])
        atomic_write_text(tmp / "bayling.json", json.dumps(identity, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    dist.barrier()
    return final if rank == 0 else None


def _write_hf_dir(state: dict, out: Path, *, model_dir: str, tokenizer_src: str, template_name: str,
                  dtype, max_length: int) -> None:
    """Weights via huggingface_hub (sharded safetensors + index) and the files that make it usable."""
    from huggingface_hub import save_torch_state_dict
    from transformers import AutoConfig, GenerationConfig

    from bayling.templates import get_template, stop_token_ids
    from bayling.tokenizer import load_tokenizer

    tpl = get_template(template_name)
    tok = load_tokenizer(tokenizer_src, tpl)
    config = AutoConfig.from_pretrained(model_dir)
    config.dtype = dtype
    config.use_cache = True
    config.pad_token_id = tok.pad_token_id
    tied = getattr(config, "tie_word_embeddings", False)
    discard = ["lm_head.weight"] if tied and "lm_head.weight" in state else None
    save_torch_state_dict(state, out, max_shard_size="5GB", shared_tensors_to_discard=discard)
    config.save_pretrained(out)
    stops = stop_token_ids(tok, tpl)
    GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=stops, pad_token_id=tok.pad_token_id,
                     do_sample=False).save_pretrained(out)
    tok.model_max_length = max_length  # what the model was trained on: readers truncate/warn from it
    tok.save_pretrained(out)
