"""Reading expert checkpoints and writing the merged one.

Why safetensors directly (not ``from_pretrained``): a merge needs the raw tensors of N+1 models side by side;
reading the files keeps exactly the saved names and dtypes, reads a 13B shard by shard, and lets a truncated
or foreign file be named in one line. The merged folder is loadable by bayling-eval unchanged: it gets the
merged ``model.safetensors`` (sharded above ``SHARD_BYTES``), the base's config.json, and every other
top-level file of the base — tokenizer files, chat template, generation_config.json, final/bayling.json
(docs/merge.md; contracts item 2).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from bayling.atomic import atomic_write_text
from bayling.errors import BaylingError, read_json

MARKER = ".bayling-merge"
SHARD_BYTES = 5 * 1024**3
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".msgpack", ".h5")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
ARCH_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
             "intermediate_size", "num_key_value_heads", "tie_word_embeddings")


class MergeError(BaylingError):
    """Bad input to bayling-merge: a checkpoint that is missing, truncated or does not match the base."""


def model_dir(path: str, role: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise MergeError(f"{role} model folder does not exist (give a local checkpoint folder)", path=p)
    if not (p / "config.json").is_file():
        raise MergeError(f"{role} model folder has no config.json (not a Hugging Face checkpoint)", path=p)
    return p


def weight_files(p: Path) -> list[Path]:
    files = sorted(p.glob("*.safetensors"))
    if not files:
        bins = sorted(p.glob("*.bin"))
        hint = " (only PyTorch .bin files: re-save with safe_serialization=True)" if bins else ""
        raise MergeError(f"no *.safetensors weights{hint}", path=p)
    return files


def inputs_fingerprint(dirs: list[Path]) -> list:
    """Which checkpoints, as they are now (weight files' names, sizes, modification times): a cache or saved
    swarm made from other or re-trained models must not be reused. Cheaper than hashing 26 GB."""
    out = []
    for d in dirs:
        files = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in weight_files(d)]
        out.append([str(d.resolve()), files])
    return out


def read_config(p: Path) -> dict:
    cfg = read_json(p / "config.json", "model config", MergeError)
    if not isinstance(cfg, dict):
        raise MergeError("model config is not a JSON object", path=p / "config.json")
    return cfg


def load_state(p: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint folder, named as saved; one error line for an unreadable file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for f in weight_files(p):
        try:
            part = load_file(str(f))
        except (SafetensorError, OSError, ValueError) as err:
            msg = " ".join(str(err).split())
            raise MergeError(f"cannot read the weights (truncated or not safetensors?): {msg}", path=f) from None
        for name, t in part.items():
            if name in state:
                raise MergeError(f"tensor {name} appears in two weight files", path=f)
            state[name] = t
    return state


def check_compatible(base_dir: Path, base: dict[str, torch.Tensor], other_dir: Path,
                     other: dict[str, torch.Tensor]) -> None:
    """Experts must be fine-tunes of the base: same architecture, tensor names and shapes."""
    bc, oc = read_config(base_dir), read_config(other_dir)
    for k in ARCH_KEYS:
        if bc.get(k) != oc.get(k):
            raise MergeError(f"{k} is {oc.get(k)!r} here but {bc.get(k)!r} in the base {base_dir}; experts must be "
                             "fine-tuned from the base", path=other_dir / "config.json", field=k)
    missing = sorted(set(base) - set(other))
    extra = sorted(set(other) - set(base))
    if missing or extra:
        what = f"lacks tensor {missing[0]}" if missing else f"has tensor {extra[0]} the base lacks"
        raise MergeError(f"checkpoint {what} ({len(missing)} missing, {len(extra)} extra)", path=other_dir)
    for name, t in base.items():
        if other[name].shape != t.shape:
            raise MergeError(f"tensor {name} has shape {tuple(other[name].shape)}, base has {tuple(t.shape)}",
                             path=other_dir)


def check_out_dir(out: Path) -> None:
    """Contracts item 4: replace only an absent/empty folder or one this command marked."""
    if out.exists() and not out.is_dir():
        raise MergeError("--out exists and is not a folder", path=out)
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise MergeError(f"--out is a non-empty folder bayling-merge did not create (no {MARKER}); "
                         "choose a new or empty folder", path=out)


def copy_base_files(base_dir: Path, out: Path) -> None:
    """Every top-level non-weight file of the base: config, tokenizer, chat template, generation config,
    bayling.json. A merge changes weights only, so the model must be used exactly as the base was."""
    for f in sorted(base_dir.iterdir()):
        if f.is_file() and not f.name.endswith(WEIGHT_SUFFIXES) and f.name not in WEIGHT_INDEXES \
                and not f.name.startswith(".") and f.name not in ("merge.json", "README.md"):
            shutil.copy2(f, out / f.name)


def save_checkpoint(state: dict[str, torch.Tensor], base_dir: Path, out: Path, meta: dict) -> None:
    """Weights + the base's config, tokenizer, chat template, generation config and bayling.json."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    for f in list(out.glob("model*.safetensors")) + [out / WEIGHT_INDEXES[0]]:
        if f.is_file():  # earlier output of this command in its own marked folder
            f.unlink()
    copy_base_files(base_dir, out)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = t.contiguous()
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(out / "model.safetensors"), metadata={"format": "pt"})
    else:
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
                 "weight_map": {}}
        for i, shard in enumerate(shards, 1):
            fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(out / fname), metadata={"format": "pt"})
            index["weight_map"].update({n: fname for n in shard})
        atomic_write_text(out / WEIGHT_INDEXES[0], json.dumps(index, indent=1))
    atomic_write_text(out / "merge.json", json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
