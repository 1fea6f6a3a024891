"""What a resume may not change silently, and why a checkpoint is trusted before it is unpickled.

Two guards (docs/training.md, "Resuming"):

* **Same run.** A checkpoint records the batch geometry (world size, micro batch, GA, seed, packing, max
  length: the data plan depends on them, so they can never change) and the run's *settings* — ``optim.*``,
  the schedule (``epochs``, ``max_steps``), ``model.path`` and the training data's content hash. Resuming
  with different settings would train on with the old optimizer/scheduler state while ``train_config.yaml``
  records the new values, so it is refused naming every difference, unless ``--allow-config-change`` is
  given; then the differences are appended to ``OUT/config_changes.jsonl`` and printed.
* **Our own files.** DeepSpeed checkpoints are Python pickles and DeepSpeed loads them with
  ``torch.load(weights_only=False)``: loading a pickle runs whatever code it names. So every save writes
  ``MANIFEST.json`` (size and sha256 of each file, hashed in parallel by all ranks) before ``COMPLETED``, and
  a resume checks it before anything is loaded: sizes and the file list here, in one process, hashes in the
  workers. A checkpoint without a manifest (written elsewhere, or by an older version) or with a file that
  differs is refused unless ``--trust-checkpoint`` is given. The manifest catches files that this trainer
  did not write or that changed since; it is not a signature — resume only from checkpoints whose origin
  you know.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bayling.atomic import atomic_write_text
from bayling.config import to_dict
from bayling.errors import ConfigError
from bayling.hashing import sha256_file

MANIFEST = "MANIFEST.json"
CHANGES = "config_changes.jsonl"
GEOMETRY_KEYS = ("world_size", "micro_batch", "grad_accum", "seed", "packing", "max_length")


class ResumeRefused(ConfigError):
    """Raised identically on every rank: only rank 0 prints it (one line for N workers)."""

    all_ranks = True


def model_identity(cfg) -> str:
    """``model.path`` as it names the model: an absolute folder, or the hub id as given."""
    p = Path(cfg.model.path).expanduser()
    return str(p.resolve()) if p.exists() else cfg.model.path


def settings(cfg, data_sha256: str | None) -> dict[str, Any]:
    """The settings a resume must keep (unless explicitly allowed to change)."""
    return {"optim": to_dict(cfg.optim), "schedule": {"epochs": cfg.epochs, "max_steps": cfg.max_steps},
            "model_path": model_identity(cfg), "data_sha256": data_sha256}


def geometry(cfg, world_size: int, grad_accum: int | None = None) -> dict[str, Any]:
    """The batch geometry (the data plan is a function of it). ``grad_accum`` is the plan's when it follows
    from the data (``instructions_per_step``); the one-process check then compares the rest."""
    ga = grad_accum or cfg.resolved_grad_accum(world_size)
    out = {"world_size": world_size, "micro_batch": cfg.micro_batch, "grad_accum": ga, "seed": cfg.seed,
           "packing": cfg.data.packing, "max_length": cfg.data.max_length,
           "instructions_per_step": cfg.instructions_per_step}
    return {k: v for k, v in out.items() if v is not None or k == "instructions_per_step"}


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differences(saved: dict, now: dict) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (checkpoint value, this run's value)}`` of every setting that differs."""
    a, b = _flatten(saved), _flatten(now)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check_geometry(state: dict, expected: dict, ckpt: Path) -> None:
    """Exact resume needs the same world size and batch geometry (the data plan depends on them)."""
    for key, want in expected.items():
        have = state.get(key)
        if have != want:
            hint = ""
            if key == "world_size":
                hint = (f"; relaunch with {have} processes (e.g. torchrun --nproc_per_node {have}) or start "
                        f"a new run with --resume none")
            raise ResumeRefused(f"cannot resume: checkpoint has {key}={have}, this run has {want}{hint}",
                                path=ckpt, field=key)


def check_settings(state: dict, now: dict, ckpt: Path, *, allow: bool) -> dict[str, tuple[Any, Any]]:
    """Refuse changed settings unless ``allow``; return the differences (to record when allowed)."""
    saved = state.get("settings")
    if saved is None:
        raise ResumeRefused("cannot resume: the checkpoint records no run settings (written by an older "
                            "version); start a new run with --resume none", path=ckpt, field="--resume")
    diff = differences(saved, now)
    if diff and not allow:
        shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(diff.items())[:4])
        raise ResumeRefused(f"cannot resume: settings differ from the checkpoint ({shown}); restore them, "
                            "start a new run (--resume none or a new out=), or pass --allow-config-change "
                            "to continue with the new values (recorded)", path=ckpt, field="--resume")
    return diff


def record_changes(out: Path, step: int, diff: dict[str, tuple[Any, Any]]) -> None:
    """Append what changed at this resume to OUT/config_changes.jsonl (rank 0)."""
    line = json.dumps({"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "changes": {k: {"checkpoint": a, "now": b} for k, (a, b) in diff.items()}})
    with open(out / CHANGES, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def checkpoint_files(ckpt: Path) -> list[str]:
    """Every file of a checkpoint folder except the markers written after the manifest."""
    skip = {MANIFEST, "COMPLETED", "train_state.json"}
    return sorted(str(p.relative_to(ckpt)) for p in ckpt.rglob("*") if p.is_file() and p.name not in skip)


def write_manifest(ckpt: Path, hashes: dict[str, str]) -> None:
    files = {name: {"size": (ckpt / name).stat().st_size, "sha256": h} for name, h in sorted(hashes.items())}
    atomic_write_text(ckpt / MANIFEST, json.dumps({"format": 1, "tool": "bayling-train", "files": files},
                                                  indent=1) + "\n")


def read_manifest(ckpt: Path) -> dict[str, dict]:
    """The manifest's files, after checking that it lists exactly the files present with their sizes."""
    path = ckpt / MANIFEST
    if not path.is_file():
        raise ResumeRefused(f"no {MANIFEST}: this checkpoint was not written by this trainer (DeepSpeed "
                            "checkpoints are pickles that can run code when loaded); pass --trust-checkpoint "
                            "only if you know where it comes from", path=ckpt, field="--resume")
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        sizes = {name: int(v["size"]) for name, v in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise ResumeRefused(f"unreadable {MANIFEST}; pass --trust-checkpoint only if you know where this "
                            "checkpoint comes from", path=ckpt, field="--resume") from None
    present = set(checkpoint_files(ckpt))
    extra, missing = sorted(present - set(files)), sorted(set(files) - present)
    changed = sorted(n for n in present & set(files) if (ckpt / n).stat().st_size != sizes[n])
    bad = [f"not in the manifest: {extra[0]}"] if extra else []
    bad += [f"missing: {missing[0]}"] if missing else []
    bad += [f"size differs: {changed[0]}"] if changed else []
    if bad:
        raise ResumeRefused(f"checkpoint files do not match its {MANIFEST} ({'; '.join(bad)}); refusing to "
                            "unpickle them (--trust-checkpoint overrides)", path=ckpt, field="--resume")
    return files


def share(names: list[str], rank: int, world_size: int) -> list[str]:
    """The files rank ``rank`` hashes: hashing a 13B ZeRO checkpoint is split over all ranks."""
    return names[rank::world_size]


def verify_hashes(ckpt: Path, files: dict[str, dict], names: list[str]) -> str | None:
    """The first of ``names`` whose sha256 differs from the manifest, or None."""
    for name in names:
        if sha256_file(ckpt / name) != files[name]["sha256"]:
            return name
    return None
