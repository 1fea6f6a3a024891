"""Tokenise once: an on-disk token cache keyed by a hash of everything that changes the tokens.

Why: tokenising 3.2M conversations on every rank wastes hours and races on caches, and a long
preprocessing step inside a collective times the job out. So one process (rank 0, or
``bayling-train --prepare-only``) builds the cache; other ranks only WAIT for a ``COMPLETE`` marker
by polling the filesystem (no collective, no timeout that expires during preprocessing).

Layout (``cache_root/<key[:20]>/``, built in a temp dir and renamed: a crash never leaves a cache
that looks complete)::

    train/ valid/        input_ids.npy int32 (flat), trainable.npy bool (flat), offsets.npy int64 (n+1),
                         n_targets.npy int32 (targets per sample, the loss normaliser)
    stats.json           counts: records, kept, dropped per reason, truncated, tokens, trainable tokens
    STATS.md             the same for people
    meta.json            key inputs: tokenizer, template, max_length, overlong, pad/eos/bos ids, key
    COMPLETE             written last

Key = sha256(format version, data_sha256 (data files' names and bytes), tokenizer (backend JSON + special tokens), template
name + chat_template, max_length, overlong).

Public API (a :class:`CacheSpec` names one cache's inputs: the same six values travel together)::

    spec = CacheSpec(data_dir, tokenizer_path, template, max_length, overlong, root)  # or CacheSpec.for_run(cfg, tok)
    prepare_cache(spec) -> Path
    get_or_build_cache(spec, rank=, world_size=, timeout_s=) -> Path   # rank 0 builds, others poll
    find_cache(spec) -> Path | None   # the complete cache for spec, if built; never tokenises
    open_cache(path, split="train") -> TokenCache   # len(), .lengths, .n_targets, .get(i), .pad_id
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bayling.errors import BaylingError, DataError
from bayling.hashing import sha256_file
from bayling.templates import get_template
from bayling.tokenizer import load_tokenizer
from bayling.train.tokenize import DROP_REASONS, IGNORE_INDEX, TokenizedSample, tokenize_batch

FORMAT_VERSION = 1
CHUNK = 512
SPLITS = ("train", "valid")
_ARRAYS = {"input_ids": np.int32, "trainable": np.bool_}


@dataclass(frozen=True)
class CacheSpec:
    """Everything that decides which token cache a run uses and where it lives.

    Why a value object: the build, the lookup and the rank-0/poll wrapper all need the same six inputs; passed
    positionally they were easy to swap (two strings, two paths) and every new input meant editing every call.
    """

    data_dir: str | Path
    tokenizer_path: str | Path
    template: str
    max_length: int
    overlong: str
    root: str | Path

    @classmethod
    def for_run(cls, cfg, tokenizer_path: str | Path) -> CacheSpec:
        """The spec of a training config (``cfg``: :class:`bayling.train.config.TrainConfig`)."""
        return cls(cfg.data.dir, tokenizer_path, cfg.data.template, cfg.data.max_length, cfg.data.overlong,
                   cfg.token_cache_root())


def data_files(data_dir: str | Path) -> dict[str, list[Path]]:
    """``{"train": [...], "valid": [...]}`` of a bayling-build-data output dir (or one .jsonl = train)."""
    root = Path(data_dir)
    if root.is_file():
        return {"train": [root], "valid": []}
    if not root.is_dir():
        raise DataError("data directory does not exist", path=root)
    train = sorted((root / "train").glob("*.jsonl")) if (root / "train").is_dir() else []
    if not train:
        raise DataError("no training data: expected train/*.jsonl (the output of bayling-build-data)", path=root)
    valid = [root / "valid.jsonl"] if (root / "valid.jsonl").is_file() else []
    return {"train": train, "valid": valid}


def data_sha256(files: dict[str, list[Path]]) -> str:
    """Hash of the training data's content (file names and bytes): what a resume must not change."""
    h = hashlib.sha256()
    for split in SPLITS:
        for p in files[split]:
            h.update(f"{split}/{p.name}:{sha256_file(p)}\n".encode())
    return h.hexdigest()


def cache_key(data_hash: str, tokenizer, template_name: str, max_length: int, overlong: str) -> str:
    """Hash of everything that changes the cached tokens (``data_hash`` from :func:`data_sha256`)."""
    h = hashlib.sha256(f"bayling-token-cache v{FORMAT_VERSION}\n{data_hash}\n".encode())
    h.update(tokenizer.backend_tokenizer.to_str().encode())
    special = [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token]
    h.update(json.dumps([str(s) for s in special]).encode())
    h.update(f"\n{template_name}\n{get_template(template_name).chat_template}\n{max_length}\n{overlong}".encode())
    return h.hexdigest()


def read_records(path: Path) -> Iterator[tuple[int, list[dict], int]]:
    """Yield (line number, messages, bytes read) of a canonical JSONL file; bad lines -> DataError."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise DataError(f"malformed JSON: {err}", path=path, line=lineno) from None
            msgs = rec.get("messages") if isinstance(rec, dict) else None
            ok = isinstance(msgs, list) and all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in msgs
            )
            if not ok:
                raise DataError("expected a list of {role, content} objects", path=path, line=lineno, field="messages")
            yield lineno, msgs, len(raw)


class _SplitWriter:
    """Streams flat arrays to raw files, then writes .npy files (header + data) without holding them."""

    def __init__(self, out: Path) -> None:
        self.out = out
        out.mkdir(parents=True)
        self.files = {name: open(out / f"{name}.bin", "wb") for name in _ARRAYS}
        self.lengths: list[int] = []
        self.n_targets: list[int] = []

    def add(self, s: TokenizedSample) -> None:
        self.files["input_ids"].write(s.input_ids.astype(np.int32).tobytes())
        self.files["trainable"].write(s.trainable.astype(np.bool_).tobytes())
        self.lengths.append(len(s))
        self.n_targets.append(s.n_targets)

    def close(self) -> None:
        total = int(sum(self.lengths))
        for name, dtype in _ARRAYS.items():
            self.files[name].close()
            raw = self.out / f"{name}.bin"
            with open(self.out / f"{name}.npy", "wb") as dst, open(raw, "rb") as src:
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                          "shape": (total,)}
                np.lib.format.write_array_header_2_0(dst, header)
                shutil.copyfileobj(src, dst, 1 << 22)
            raw.unlink()
        offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=offsets[1:])
        np.save(self.out / "offsets.npy", offsets)
        np.save(self.out / "n_targets.npy", np.asarray(self.n_targets, dtype=np.int32))


def _tokenize_split(files: list[Path], tok, spec: CacheSpec, out: Path, progress) -> dict:
    tpl, max_length, overlong = get_template(spec.template), spec.max_length, spec.overlong
    writer = _SplitWriter(out)
    stats = {"records": 0, "kept": 0, "truncated": 0, "tokens": 0, "trainable_tokens": 0,
             "dropped": dict.fromkeys(DROP_REASONS, 0)}

    def flush(batch: list[tuple[Path, int, list]]) -> None:
        try:
            results = tokenize_batch(tok, tpl, [m for _, _, m in batch], max_length, overlong)
        except BaylingError:
            for path, lineno, msgs in batch:  # find the record that failed, report it with file:line
                try:
                    tokenize_batch(tok, tpl, [msgs], max_length, overlong)
                except BaylingError as err:
                    raise DataError(err.message, path=path, line=lineno, field="messages") from None
            raise
        for res in results:
            stats["records"] += 1
            if isinstance(res, str):
                stats["dropped"][res] += 1
                continue
            writer.add(res)
            stats["kept"] += 1
            stats["truncated"] += int(res.truncated)
            stats["tokens"] += len(res)
            stats["trainable_tokens"] += res.n_targets

    for path in files:
        batch: list[tuple[Path, int, list]] = []
        for lineno, msgs, nbytes in read_records(path):
            batch.append((path, lineno, msgs))
            progress.update(nbytes)
            if len(batch) >= CHUNK:
                flush(batch)
                batch = []
        flush(batch)
    writer.close()
    return stats


def _stats_markdown(stats: dict, meta: dict) -> str:
    lines = [f"# Token cache {meta['key'][:20]}", "",
             f"template `{meta['template']}`, max_length {meta['max_length']}, overlong `{meta['overlong']}`", "",
             "| split | records | kept | truncated | tokens | trainable tokens | dropped |", "|---|---|---|---|---|---|---|"]
    for split, s in stats.items():
        dropped = ", ".join(f"{k}: {v}" for k, v in s["dropped"].items() if v) or "none"
        lines.append(f"| {split} | {s['records']} | {s['kept']} | {s['truncated']} | {s['tokens']} "
                     f"| {s['trainable_tokens']} | {dropped} |")
    return "\n".join(lines) + "\n"


def _cache_dir(cache_root: str | Path, key: str) -> Path:
    return Path(cache_root) / key[:20]


def resolve_cache_path(spec: CacheSpec) -> Path:
    """The cache directory for these inputs (hashes the data, loads the tokenizer; builds nothing)."""
    files = data_files(spec.data_dir)
    tok = load_tokenizer(str(spec.tokenizer_path), get_template(spec.template))
    key = cache_key(data_sha256(files), tok, spec.template, spec.max_length, spec.overlong)
    return _cache_dir(spec.root, key)


def find_cache(spec: CacheSpec) -> Path | None:
    """The complete cache for ``spec`` if one was built (e.g. by ``--prepare-only``), else None; never tokenises."""
    path = resolve_cache_path(spec)
    return path if (path / "COMPLETE").is_file() else None


def prepare_cache(spec: CacheSpec, *, show_progress: bool = True) -> Path:
    """Build (or reuse) the token cache; returns its directory. Atomic: temp dir + rename, COMPLETE last."""
    from tqdm import tqdm

    data_dir, template_name, max_length, overlong = spec.data_dir, spec.template, spec.max_length, spec.overlong
    files = data_files(data_dir)
    tpl = get_template(template_name)
    tok = load_tokenizer(str(spec.tokenizer_path), tpl)
    data_hash = data_sha256(files)
    key = cache_key(data_hash, tok, template_name, max_length, overlong)
    final = _cache_dir(spec.root, key)
    if (final / "COMPLETE").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        total = sum(p.stat().st_size for split in SPLITS for p in files[split])
        stats = {}
        with tqdm(total=total, unit="B", unit_scale=True, desc="tokenising", disable=not show_progress) as bar:
            for split in SPLITS:
                stats[split] = _tokenize_split(files[split], tok, spec, tmp / split, bar)
        if stats["train"]["kept"] == 0:
            raise DataError(f"no usable training sample: dropped {stats['train']['dropped']} "
                            f"(does template '{template_name}' fit this data?)", path=data_dir)
        meta = {"key": key, "format_version": FORMAT_VERSION, "data": str(data_dir), "data_sha256": data_hash,
                "tokenizer": str(spec.tokenizer_path),
                "template": template_name, "max_length": max_length, "overlong": overlong,
                "pad_id": tok.pad_token_id, "eos_id": tok.eos_token_id, "bos_id": tok.bos_token_id, "vocab_size": len(tok)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
        (tmp / "STATS.md").write_text(_stats_markdown(stats, meta))
        (tmp / "COMPLETE").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
        try:
            os.rename(tmp, final)
        except OSError:  # another builder won the race with identical content, or a stale incomplete dir
            if not (final / "COMPLETE").is_file():
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def get_or_build_cache(
    spec: CacheSpec,
    *,
    rank: int,
    world_size: int = 1,
    timeout_s: float = 24 * 3600,
    poll_s: float = 2.0,
) -> Path:
    """Rank 0 builds; the other ranks poll for COMPLETE (or the FAILED note rank 0 leaves on an error).

    ``rank`` is the builder-relevant rank: the global rank when ``spec.root`` is on a shared filesystem,
    the local rank when it is node-local. Non-zero ranks hash the inputs too (cheap) but never tokenise.
    """
    final = resolve_cache_path(spec)
    failed = final.parent / f"{final.name}.FAILED"
    if rank == 0:
        failed.unlink(missing_ok=True)
        try:
            return prepare_cache(spec)
        except BaseException as err:
            final.parent.mkdir(parents=True, exist_ok=True)
            failed.write_text(str(err) + "\n")
            raise
    start = time.time()
    while not (final / "COMPLETE").is_file():
        if failed.is_file() and failed.stat().st_mtime >= start - 60:
            err = BaylingError(f"rank 0 failed to build the token cache: {failed.read_text().strip()}")
            err.all_ranks = True  # rank 0 reports its own error: one line for N workers
            raise err
        if time.time() - start > timeout_s:
            raise BaylingError(f"timed out after {timeout_s:.0f}s waiting for rank 0 to build the token cache {final}")
        time.sleep(poll_s)
    return final


class TokenCache:
    """Read-only, memory-mapped view of one split of a cache (no pickle)."""

    def __init__(self, path: str | Path, split: str = "train") -> None:
        root = Path(path)
        if not (root / "COMPLETE").is_file():
            raise BaylingError("not a complete token cache (no COMPLETE marker)", path=root)
        self.root, self.split = root, split
        d = root / split
        load = lambda name: np.load(d / f"{name}.npy", mmap_mode="r", allow_pickle=False)  # noqa: E731
        self.input_ids, self.trainable = load("input_ids"), load("trainable")
        self.offsets = np.load(d / "offsets.npy", allow_pickle=False)
        self.n_targets = np.load(d / "n_targets.npy", allow_pickle=False).astype(np.int64)
        self.lengths = np.diff(self.offsets)
        self.meta = json.loads((root / "meta.json").read_text())
        self.stats = json.loads((root / "stats.json").read_text())[split]
        self.pad_id: int = self.meta["pad_id"]
        self.max_length: int = self.meta["max_length"]

    def __len__(self) -> int:
        return len(self.lengths)

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids int64, labels int64 with -100 on non-targets) of sample ``i``."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        ids = np.asarray(self.input_ids[a:b], dtype=np.int64)
        labels = np.where(self.trainable[a:b], ids, IGNORE_INDEX)
        return ids, labels


def open_cache(path: str | Path, split: str = "train") -> TokenCache:
    return TokenCache(path, split)
