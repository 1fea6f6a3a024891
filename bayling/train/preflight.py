"""Every check one process can do before any process group exists (``bayling-train --check``).

Why a separate pass: a mistake found after ``torchrun`` started N workers is N copies of the same error,
plus the launcher's failure report, and a mistake found after tokenising 3.2M conversations costs an hour.
So the local launcher (``--nproc-per-node``) and the Slurm path (``--check --world-size N``) run these
checks once, first, and only then start workers: config values, the run folder (ours? locked?), the data
folder, the model folder (config, weights present, safetensors headers readable and files not truncated),
the tokenizer, the template, world size vs batch, precision and attention vs the hardware, and whether a
resume would silently change the run.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from bayling.errors import ConfigError
from bayling.train.config import TrainConfig

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


@dataclass
class CheckReport:
    """What the checks established, for the one-line summary and for the caller's next steps."""

    model: str
    tokenizer: str
    world_size: int
    grad_accum: int | None
    data_files: int
    resume: str

    def line(self) -> str:
        return (f"checks passed (model {self.model}, tokenizer {self.tokenizer}, {self.data_files} data "
                f"file(s), world size {self.world_size}, grad_accum "
                f"{self.grad_accum if self.grad_accum else 'from the data'}, {self.resume})")


def check_safetensors(path: Path) -> None:
    """Header readable and the file as long as the header says: a truncated download fails here, in one
    line, rather than in every worker's ``from_pretrained`` after the dataset was tokenised."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise ValueError("shorter than a safetensors header")
            (n,) = struct.unpack("<Q", raw)
            if n > min(size, 100_000_000):
                raise ValueError("header length is larger than the file")
            header = json.loads(fh.read(n))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ConfigError(f"not a readable safetensors file ({err})", path=path, field="model.path") from None
    if size != 8 + n + end:
        raise ConfigError(f"truncated or padded safetensors file: {size} bytes, its header says {8 + n + end}",
                          path=path, field="model.path")


def check_model_dir(model_dir: str | Path) -> None:
    """config.json, at least one weights file, every shard of an index present, safetensors intact."""
    root = Path(model_dir)
    if not root.is_dir():
        raise ConfigError("model path is not a folder", path=root, field="model.path")
    if not (root / "config.json").is_file():
        raise ConfigError("no config.json: not a Hugging Face model folder", path=root, field="model.path")
    for index in sorted(root.glob("*.index.json")):
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ConfigError("unreadable weight index", path=index, field="model.path") from None
        missing = sorted(s for s in shards if not (root / s).is_file())
        if missing:
            raise ConfigError(f"weight shards named by the index are missing: {', '.join(missing[:3])}",
                              path=index, field="model.path")
    weights = [p for pattern in WEIGHT_PATTERNS for p in sorted(root.glob(pattern))]
    if not weights:
        raise ConfigError("no weights (*.safetensors or pytorch_model*.bin) in the model folder", path=root,
                          field="model.path")
    for p in weights:
        if p.suffix == ".safetensors":
            check_safetensors(p)


def check_tiny_target(path: Path) -> None:
    """``model.init: tiny`` builds into ``model.path`` only if it is absent or empty (or already a model):
    it never replaces a folder it did not create."""
    if path.exists() and not path.is_dir():
        raise ConfigError("model.init=tiny: model.path is a file", path=path, field="model.path")
    if path.is_dir() and any(path.iterdir()) and not (path / "config.json").is_file():
        raise ConfigError("model.init=tiny: model.path exists, is not empty and holds no model; choose an "
                          "empty or new folder (nothing in it is removed)", path=path, field="model.path")


def check_hardware(cfg: TrainConfig) -> None:
    """Precision and attention that need a GPU (the config's equivalent of ``--device cuda``); ``auto``
    attention resolves per device here (bayling/train/attention.py)."""
    from bayling.train.attention import IMPLS, check

    name = cfg.model.attn_implementation
    if cfg.dtype != "fp16" and (name == "auto" or (IMPLS[name].cpu_train and not IMPLS[name].package)):
        return  # runs on any device (auto never refuses): skip importing DeepSpeed
    from bayling.train.engine import on_cpu

    cpu = on_cpu()
    if cfg.dtype == "fp16" and cpu:
        raise ConfigError("fp16 is not supported on CPU; use dtype=bf16 or dtype=fp32", field="dtype")
    check(cfg.model.attn_implementation, cpu)


def model_source(cfg: TrainConfig) -> str:
    """The local model folder to check, resolving a hub id through the local cache/offline rules."""
    from bayling.hub import resolve_model

    if cfg.model.init == "tiny":
        return cfg.model.path
    return resolve_model(cfg.model.path, option="model.path")


def run_checks(cfg: TrainConfig, world_size: int, resume: str = "auto", *, allow_changes: bool = False,
               trust_checkpoint: bool = False) -> CheckReport:
    """All one-process checks, cheapest first; raises the first :class:`BaylingError` found."""
    from bayling.train import rundir
    from bayling.train.cache import data_files
    from bayling.train.engine import ds_template_path, load_ds_template
    from bayling.train.tokenize import tokenizer_source

    if world_size < 1:
        raise ConfigError(f"must be >= 1, got {world_size}", field="--world-size")
    cfg.require_paths()
    out = rundir.check_out_dir(cfg.out)
    who = rundir.owner(out) if out.is_dir() else None
    if who:
        raise ConfigError(f"another bayling-train ({who}) is writing this run folder", path=out, field="out")
    ga = cfg.resolved_grad_accum(world_size)
    ds_template_path(cfg)
    load_ds_template(cfg)
    files = data_files(cfg.data.dir)
    if cfg.model.init == "tiny":
        check_tiny_target(Path(cfg.model.path))
        model_dir = cfg.model.path
        if (Path(model_dir) / "config.json").is_file():
            check_model_dir(model_dir)
    else:
        model_dir = model_source(cfg)
        check_model_dir(model_dir)
    resume_note = check_resume_config(cfg, out, resume, world_size, allow_changes=allow_changes,
                                      trust_checkpoint=trust_checkpoint)
    check_hardware(cfg)  # the first check that imports torch/DeepSpeed (seconds): cheap checks go first
    from bayling.templates import get_template
    from bayling.tokenizer import load_tokenizer

    tok_src = tokenizer_source(cfg, model_dir)
    tok = load_tokenizer(tok_src, get_template(cfg.data.template))
    check_vocab(model_dir, len(tok), tok_src)
    return CheckReport(model=str(model_dir), tokenizer=str(tok_src), world_size=world_size, grad_accum=ga,
                       data_files=sum(len(v) for v in files.values()), resume=resume_note)


def check_vocab(model_dir: str | Path, vocab_size: int | None, tok_src: str) -> None:
    """A tokenizer larger than the model's embedding would fail deep inside forward with an IndexError."""
    cfg_file = Path(model_dir) / "config.json"
    if vocab_size is None or not cfg_file.is_file():
        return
    try:
        model_vocab = json.loads(cfg_file.read_text(encoding="utf-8")).get("vocab_size")
    except (ValueError, UnicodeDecodeError, AttributeError):
        raise ConfigError("config.json is not valid JSON", path=cfg_file, field="model.path") from None
    if isinstance(model_vocab, int) and vocab_size > model_vocab:
        raise ConfigError(f"the tokenizer ({tok_src}) has {vocab_size} tokens but the model's embedding has "
                          f"{model_vocab}; point model.tokenizer at the model's own tokenizer", field="model.tokenizer")


def check_resume_config(cfg, out: Path, resume: str, world_size: int, *, allow_changes: bool,
                        trust_checkpoint: bool) -> str:
    """One-process version of the resume guards (``--check`` and the launchers): the manifest's file list and
    sizes, the geometry, the settings including the data's content hash. Returns a short note. It lives here, not
    in resume_guard.py, because it needs checkpoint.py, which itself imports resume_guard."""
    from bayling.train import resume_guard as guard
    from bayling.train.cache import data_files, data_sha256
    from bayling.train.checkpoint import find_resume, load_state

    ckpt = find_resume(Path(out) / "checkpoints", resume)
    if ckpt is None:
        return "new run" if resume != "none" else "new run (--resume none)"
    if not trust_checkpoint:
        guard.read_manifest(ckpt)
    state = load_state(ckpt)
    guard.check_geometry(state, guard.geometry(cfg, world_size), ckpt)
    wanted = guard.settings(cfg, data_sha256(data_files(cfg.data.dir)))
    diff = guard.check_settings(state, wanted, ckpt, allow=allow_changes)
    note = f"resumes from {ckpt.name}"
    return note + (f" with {len(diff)} allowed change(s)" if diff else "")
