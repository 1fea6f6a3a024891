"""Prompt-side deduplication: exact (normalised text hash) and near-duplicate (MinHash LSH).

API
---
``normalize(text) -> str``: NFKC, casefold, punctuation/symbols/whitespace runs collapsed to one space.
``prompt_text(record) -> str``: the user turns of a canonical record, joined (the "prompt side").
``Deduplicator.signature(record)`` / ``signature_text(text) -> Signature(exact, bands)``: a pure function of
    the text and the (threshold, num_perm, ngram, seed) settings (64-bit ints; no Python ``hash()``), so
    shards compute signatures in parallel processes and the merge step runs the global ``add`` on them.
``DedupIndex(num_bands)``: ``add(sig) -> None | 'exact_duplicate' | 'near_duplicate'`` (first one seen wins;
    a duplicate is not added, so the index holds unique records only).
``Deduplicator(threshold=0.8, num_perm=64, ngram=5, seed=1)``: ``check(record)`` = signature + add, and
    ``check_text(text)`` for callers that dedup on another field (e.g. the source sentence of a translation).

Why this design
---------------
Near duplicates are judged by LSH banding alone (no stored signatures to verify against): two prompts whose
character 5-gram Jaccard similarity is ``s`` collide in at least one of ``b`` bands of ``r`` rows with
probability ``1 - (1 - s^r)^b``; ``b`` and ``r`` are chosen so the curve's midpoint ``(1/b)^(1/r)`` is
closest to ``threshold`` (64 perms, threshold 0.8 -> 8 bands x 8 rows: s=0.9 -> 99%, 0.8 -> 77%, 0.5 -> 3%).
Character n-grams work for every script (Chinese has no spaces). Prompts sharing a long template with a short
variable part (synthetic translation prompts) look near-identical to MinHash: dedup those on the variable
part with ``check_text``.

Memory: the index keeps, per unique record, one 64-bit exact hash and one 64-bit key per band, in sorted
numpy arrays (one per band) plus a bounded Python-set buffer of recent keys that is merged into the arrays
when full. That is ``8 * (1 + bands)`` = 72 bytes per unique record with the defaults (72 MB per million),
plus a constant ~10 MB for the buffers; no Python object per record survives a merge. Measured (random
unique prompts, this module alone): peak RSS 87 MB at 100k records, 175 MB at 1M (98 bytes per record of
growth, merge transients included), ~50 us per record when signatures are computed in batches. For
tighter memory use ``num_perm=32`` (4 bands x 8 rows, curve midpoint 0.84): 40 bytes per record.

Why not ``datasketch`` (it was pinned but never imported, so it was dropped from the pins and the manifest):
its ``MinHashLSH`` keeps every band key in Python dicts of lists (hundreds of bytes per record: a 3.2M-record
build would need gigabytes for the index alone), and its ``MinHash`` hashes shingles one Python call at a
time; the index here keeps 72 bytes per record in sorted numpy arrays, and the hashing is vectorised, which is
what lets the paper-scale build stay under 2 GB (benchmarks/data_scale.py, BENCHMARKS.md).
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any, NamedTuple

import numpy as np
import regex

_PUNCT_WS = regex.compile(r"[\p{P}\p{S}\s\p{Z}\p{Cc}\p{Cf}]+")
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
_MAX_CHARS = 4000  # MinHash over the first 4000 normalised characters: near-dup decisions need no more
_CHUNK_WINDOWS = 32768  # shingles per numpy batch: 64 perms x 32k x 8 bytes = 16 MB transient at most


def normalize(text: str) -> str:
    """The form both dedup and decontamination compare: NFKC, casefold, punctuation+spaces collapsed."""
    return _PUNCT_WS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def prompt_text(record: dict[str, Any]) -> str:
    return "\n".join(m.get("content", "") for m in record.get("messages", []) if m.get("role") == "user")


def hash64(data: str | bytes) -> int:
    """Deterministic 64-bit hash (blake2b), identical in every process and Python version."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")


_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_BASE = np.uint64(1_000_003)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic), to spread polynomial hashes."""
    x = x ^ (x >> _S30)
    x = x * _M1  # array arithmetic wraps silently (no errstate needed for arrays)
    x = x ^ (x >> _S27)
    x = x * _M2
    return x ^ (x >> _S31)


class Signature(NamedTuple):
    """What the global check needs of one record (a plain tuple of ints: JSON- and pickle-friendly)."""

    exact: int
    bands: tuple[int, ...]


def choose_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands*rows == num_perm whose LSH curve midpoint is closest to ``threshold``."""
    best = min(
        ((b, num_perm // b) for b in range(1, num_perm + 1) if num_perm % b == 0),
        key=lambda br: (abs((1 / br[0]) ** (1 / br[1]) - threshold), br[0]),
    )
    return best


class MinHasher:
    """MinHash of character n-grams, vectorised with numpy (one call per text, no per-shingle Python)."""

    def __init__(self, num_perm: int = 64, bands: int = 8, ngram: int = 5, seed: int = 1) -> None:
        if num_perm % bands:
            raise ValueError("num_perm must be a multiple of bands")
        rng = np.random.default_rng(seed)
        self.num_perm, self.bands, self.rows, self.ngram = num_perm, bands, num_perm // bands, ngram
        odd = np.uint64(1)
        self.xor = rng.integers(0, 2**63, size=(num_perm, 1), dtype=np.uint64)
        self.mult = rng.integers(0, 2**62, size=(num_perm, 1), dtype=np.uint64) * np.uint64(2) + odd
        self.band_mult = rng.integers(0, 2**62, size=self.rows, dtype=np.uint64) * np.uint64(2) + odd
        with np.errstate(over="ignore"):
            self.band_salt = np.arange(bands, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)

    def bands_of(self, norm: str) -> tuple[int, ...]:
        """Band keys of one normalised text (slices instead of the batch path's gathers: fewer calls)."""
        norm = norm[:_MAX_CHARS]
        if not norm:
            return ()
        n = self.ngram
        codes = np.frombuffer(norm.ljust(n, "\0").encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        codes = codes.astype(np.uint64)
        count = len(codes) - n + 1
        sh = codes[:count].copy()
        for j in range(1, n):
            sh *= _BASE
            sh += codes[j:j + count]
        mins = ((mix64(sh)[None, :] ^ self.xor) * self.mult).min(axis=1).reshape(self.bands, self.rows)
        keys = mix64((mins * self.band_mult).sum(axis=1, dtype=np.uint64) + self.band_salt)
        return tuple(keys.tolist())

    def bands_many(self, norms: list[str]) -> list[tuple[int, ...]]:
        """Band keys of many normalised texts in a few numpy calls (the per-call overhead dominates
        short prompts, so batching is what makes MinHash cheap). Bounded work per chunk keeps memory flat."""
        out: list[tuple[int, ...]] = []
        chunk: list[str] = []
        windows = 0
        for norm in norms:
            norm = norm[:_MAX_CHARS]
            chunk.append(norm)
            windows += max(len(norm), self.ngram)
            if windows >= _CHUNK_WINDOWS:
                out += self._bands_chunk(chunk)
                chunk, windows = [], 0
        if chunk:
            out += self._bands_chunk(chunk)
        return out

    def _bands_chunk(self, norms: list[str]) -> list[tuple[int, ...]]:
        n = self.ngram
        live = [i for i, t in enumerate(norms) if t]
        result: list[tuple[int, ...]] = [() for _ in norms]
        if not live:
            return result
        padded = [norms[i].ljust(n, "\0") for i in live]  # a text shorter than n is one shingle
        lens = np.array([len(t) for t in padded], dtype=np.int64)
        codes = np.frombuffer("".join(padded).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
        starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
        counts = lens - n + 1
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
        idx = np.arange(int(counts.sum()), dtype=np.int64) + np.repeat(starts - offsets, counts)
        with np.errstate(over="ignore"):
            sh = codes[idx]
            for j in range(1, n):
                sh = sh * _BASE + codes[idx + j]
            sh = mix64(sh)
            perm = (sh[None, :] ^ self.xor) * self.mult
            mins = np.minimum.reduceat(perm, offsets, axis=1).T.reshape(len(live), self.bands, self.rows)
            keys = mix64((mins * self.band_mult).sum(axis=2, dtype=np.uint64) + self.band_salt)
        for row, i in zip(keys.tolist(), live):
            result[i] = tuple(row)
        return result


class U64Set:
    """A set of uint64 in a sorted numpy array + a small Python-set buffer (8 bytes per member)."""

    def __init__(self, buffer: int = 16384) -> None:
        self.sorted = np.empty(0, dtype=np.uint64)
        self.recent: set[int] = set()
        self.buffer = buffer

    def __len__(self) -> int:
        return len(self.sorted) + len(self.recent)

    def __contains__(self, key: int) -> bool:
        if key in self.recent:
            return True
        arr = self.sorted
        if not len(arr):
            return False
        i = arr.searchsorted(np.uint64(key))
        return i < len(arr) and arr[i] == key

    def add(self, key: int) -> None:
        self.recent.add(key)
        if len(self.recent) >= self.buffer:
            self.flush()

    def flush(self) -> None:
        if not self.recent:
            return
        new = np.fromiter(self.recent, dtype=np.uint64, count=len(self.recent))
        new.sort()
        self.sorted = np.insert(self.sorted, np.searchsorted(self.sorted, new), new)
        self.recent = set()

    def keys(self) -> np.ndarray:
        self.flush()
        return self.sorted


class DedupIndex:
    """The global state: exact hashes and LSH band keys of every unique record seen so far."""

    def __init__(self, num_bands: int = 8, buffer: int = 16384) -> None:
        self.exact = U64Set(buffer)
        self.bands = [U64Set(buffer) for _ in range(num_bands)]

    def __len__(self) -> int:
        return len(self.exact)

    def add(self, sig: Signature) -> str | None:
        """Reason if ``sig`` duplicates a record already added, else None (and remember it)."""
        if sig.exact in self.exact:
            return "exact_duplicate"
        if any(key in band for key, band in zip(sig.bands, self.bands)):
            return "near_duplicate"
        self.exact.add(sig.exact)
        for key, band in zip(sig.bands, self.bands):
            band.add(key)
        return None

    def nbytes(self) -> int:
        sets = [self.exact, *self.bands]
        return sum(s.sorted.nbytes for s in sets)


class Deduplicator:
    """Exact + near-duplicate check on the prompt side of canonical records, first occurrence kept."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 64, ngram: int = 5, seed: int = 1,
                 bands: int | None = None) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        b = bands or choose_bands(threshold, num_perm)[0]
        self.hasher = MinHasher(num_perm=num_perm, bands=b, ngram=ngram, seed=seed)
        self.index = DedupIndex(num_bands=b)

    def signature_text(self, text: str) -> Signature:
        norm = normalize(text)
        return Signature(hash64(norm), self.hasher.bands_of(norm))

    def signature(self, record: dict[str, Any]) -> Signature:
        return self.signature_text(prompt_text(record))

    def signatures_text(self, texts: list[str]) -> list[Signature]:
        """Signatures of many texts at once (much faster than one by one)."""
        norms = [normalize(t) for t in texts]
        return [Signature(hash64(nm), b) for nm, b in zip(norms, self.hasher.bands_many(norms))]

    def signatures(self, records: list[dict[str, Any]]) -> list[Signature]:
        return self.signatures_text([prompt_text(r) for r in records])

    def add(self, sig: Signature) -> str | None:
        return self.index.add(sig)

    def check(self, record: dict[str, Any]) -> str | None:
        return self.index.add(self.signature(record))

    def check_text(self, text: str) -> str | None:
        return self.index.add(self.signature_text(text))
