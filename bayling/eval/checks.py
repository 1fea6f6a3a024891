"""Checks every ``bayling-eval`` command makes before it writes anything or loads a model.

WHY a module of its own: each check guards something a user cannot get back or should not wait for.

* Output folders (the project's folder rule): a command writes into ``--out`` only if that folder is absent,
  empty, or was written by ``bayling-eval`` before (it carries the ``.bayling-eval`` marker, or a
  ``results.json`` this tool wrote before the marker existed). ``--out .`` in a project folder, or a typo
  naming someone's data folder, is refused with one line and the folder is left untouched.
* The model: weights present and safetensors files not truncated, checked in milliseconds from their headers
  instead of failing inside ``from_pretrained`` after the data was read.
* The device: ``--device cuda`` on a machine without a GPU is one line, not a CUDA traceback.
* The model's *content* fingerprint: resume must not reuse hypotheses of an older model written to the same
  path (retraining into the same ``final/``). Files are hashed in full; the hashes are cached in the marker
  keyed on (size, mtime), so a rerun against an unchanged model does not re-read gigabytes.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from bayling.atomic import atomic_write_text
from bayling.errors import ConfigError, DataError
from bayling.hashing import sha256_file_cached

MARKER = ".bayling-eval"
#: Files that define what a checkpoint generates: weights, config, tokenizer + chat template, generation
#: settings and the trainer's bayling.json.
MODEL_FILES = ("config.json", "generation_config.json", "tokenizer_config.json", "tokenizer.json",
               "tokenizer.model", "special_tokens_map.json", "chat_template.jinja", "chat_template.json",
               "bayling.json", "model.safetensors.index.json", "pytorch_model.bin.index.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def _blocking_file(path: Path) -> Path | None:
    """The regular file standing where ``path`` or one of its parent folders should be, if any."""
    for cand in [path, *path.parents]:
        if cand.exists() and not cand.is_dir():
            return cand
    return None


def _written_by_us(folder: Path) -> bool:
    if (folder / MARKER).is_file():
        return True
    results = folder / "results.json"  # runs made before the marker existed
    try:
        doc = json.loads(results.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and "suite" in doc and ("schema_version" in doc or "lm_eval_version" in doc)


def prepare_out_dir(out: str | Path, option: str = "--out", create: bool = True) -> Path:
    """Check ``out`` against the folder rule; with ``create``, make it and mark it as ours.

    Commands call it once with ``create=False`` before any other work (so bad input leaves no folder behind)
    and again with ``create=True`` right before they write the first file."""
    path = Path(out)
    blocker = _blocking_file(path)
    if blocker is not None:
        where = "is a regular file" if blocker == path else f"is under a regular file ({blocker})"
        raise ConfigError(f"{option} {where}; choose a folder", path=path)
    if path.is_dir() and any(path.iterdir()) and not _written_by_us(path):
        raise ConfigError(f"{option} is a non-empty folder that bayling-eval did not write (no {MARKER} marker); "
                          "refusing to write into it: choose a new or empty folder", path=path.resolve())
    if not create:
        return path
    path.mkdir(parents=True, exist_ok=True)
    marker = path / MARKER
    if not marker.is_file():
        atomic_write_text(marker, json.dumps({"tool": "bayling-eval", "format": 1}) + "\n")
    return path


def check_output_file(path: str | Path, inputs: list[str], option: str) -> Path:
    """A file the user asked us to write: not a folder, not under a regular file, not one of the inputs."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{option} is a folder; give a file name", path=p)
    blocker = _blocking_file(p.parent) if str(p.parent) not in ("", ".") else None
    if blocker is not None:
        raise ConfigError(f"{option} is under a regular file ({blocker})", path=p)
    for item in inputs:
        if p.exists() and Path(item).exists() and p.resolve() == Path(item).resolve():
            raise ConfigError(f"{option} would overwrite the input file {item}", path=p)
    return p


def check_device(device: str | None) -> None:
    """A device torch knows and this machine has; ``None`` (auto) always passes."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device '{device}' (use cpu, cuda or cuda:N)", field="device") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA GPU is visible on this machine "
                              "(torch.cuda.is_available() is False); use --device cpu or omit --device",
                              field="device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible",
                              field="device")
    elif dev.type not in ("cpu", "mps"):
        raise ConfigError(f"--device {device}: unsupported device type '{dev.type}' (use cpu or cuda)",
                          field="device")


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot be loaded (bad header, truncated), or None when it looks whole."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return "shorter than a safetensors header"
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, 100_000_000):
            return "not a safetensors file (header length out of range)"
        try:
            header = json.loads(fh.read(n))
        except (ValueError, UnicodeDecodeError):
            return "not a safetensors file (header is not JSON)"
    if not isinstance(header, dict):
        return "not a safetensors file (header is not a mapping)"
    ends = [v["data_offsets"][1] for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict) and isinstance(v.get("data_offsets"), list)]
    need = 8 + n + max(ends, default=0)
    if size < need:
        return f"truncated: {size} bytes, the header needs {need}"
    return None


def weight_files(model_dir: Path) -> list[Path]:
    return sorted(p for p in model_dir.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES
                  and not p.name.startswith("training_args"))


def check_model_dir(path: str | Path) -> None:
    """A local model folder that ``from_pretrained`` can load: config, weights, whole safetensors files."""
    model = Path(path)
    if not model.is_dir():
        raise ConfigError("--model is not a folder", path=model)
    config = model / "config.json"
    if not config.is_file():
        raise ConfigError("not a model folder (no config.json)", path=model)
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"config.json is not valid JSON: {err}", path=config) from None
    weights = weight_files(model)
    if not weights:
        raise ConfigError("no weights in the model folder (expected *.safetensors or pytorch_model*.bin)",
                          path=model)
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = model / index_name
        if index.is_file():
            try:
                shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
            except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
                raise DataError("not a valid weight index (no weight_map)", path=index) from None
            missing = sorted(s for s in shards if not (model / s).is_file())
            if missing:
                raise ConfigError(f"weight shards listed in {index_name} are missing: {', '.join(missing[:5])}",
                                  path=model)
    for w in weights:
        if w.stat().st_size == 0:
            raise DataError("weight file is empty", path=w)
        if w.suffix == ".safetensors":
            problem = safetensors_problem(w)
            if problem:
                raise DataError(f"weight file is unreadable: {problem}", path=w)


def model_fingerprint(model_dir: str | Path, out: Path | None = None) -> str:
    """sha256 over the model's defining files (weights, config, tokenizer, chat template, generation config).

    The per-file hashes are cached in ``out/.bayling-eval`` keyed on (path, size, mtime_ns): an unchanged
    model is not re-read; a rewritten file (new size or mtime) is hashed again.
    """
    model = Path(model_dir).resolve()
    marker = out / MARKER if out is not None else None
    state: dict[str, Any] = {}
    if marker is not None and marker.is_file():
        try:
            state = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = {}
    cache: dict[str, Any] = state.get("file_hashes", {}) if isinstance(state.get("file_hashes"), dict) else {}
    files = sorted({model / n for n in MODEL_FILES if (model / n).is_file()} | set(weight_files(model)))
    h = hashlib.sha256()
    fresh: dict[str, Any] = {}
    for f in files:
        entry = fresh[str(f)] = sha256_file_cached(f, cache)
        h.update(f"{f.name}\0{entry['size']}\0{entry['sha256']}\n".encode())
    if marker is not None:
        state = {**state, "tool": "bayling-eval", "format": 1, "file_hashes": {**cache, **fresh}}
        atomic_write_text(marker, json.dumps(state, indent=1) + "\n")
    return h.hexdigest()
