"""Decontamination: drop training records that contain an evaluation sentence or share a long n-gram with one.

API
---
``ContaminationIndex.from_paths(paths, ngram=13)``: each path is one eval set, named by the path as given: a
    FLORES directory (its ``*.devtest`` / ``*.dev`` files, also under ``devtest/``), a directory of WMT
    sources/references (every file inside, recursively, except README/SOURCES/licence/metadata files), or a
    text file with one sentence per line (plain, .gz or .zst).
``index.check(texts) -> None | set_name``: the first eval set one of ``texts`` overlaps with.
``index.sets``: the eval set names in order; ``len(index)``: number of indexed keys.

How it matches (why)
--------------------
Texts are normalised as in dedup (NFKC, casefold, punctuation/whitespace collapsed) and split into tokens:
whitespace words, except that every character of a script written without spaces (Han, kana, Thai, Lao,
Khmer, Myanmar, Tibetan) is a token of its own, so Chinese, Japanese and Thai overlaps are found. The index
holds a 64-bit hash of every ``ngram``-token window of every eval sentence and, for sentences shorter than
``ngram`` tokens, of the whole sentence. A training text is contaminated when any of its windows of those
lengths hits the index -- so a full eval sentence embedded anywhere in a longer response is caught at any
length (containment on token boundaries), and a shared 13-gram is caught even when the sentences differ.

Hashes are polynomial (mod 2^64, odd base) over the token-joined string, computed for all windows of a text
with prefix sums in numpy, so checking a text costs a few vectorised calls. Sentences with fewer than
``min_tokens`` tokens (default 4) are not indexed: a 2-word eval "sentence" would flag half the corpus.
Index size: 10 bytes per distinct key (8-byte hash + 2-byte set id) plus a prefilter bitmap of 16-32 bits (bool
bytes) per key; FLORES-101 devtest, 102 languages x 1012 sentences, is 1.5M keys = 15 MB + 32 MB bitmap.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import regex

from bayling.data.dedup import mix64, normalize
from bayling.data.fileio import open_lines
from bayling.data.filters import UNSPACED
from bayling.data.readers import FLORES_SUFFIXES
from bayling.errors import DataError

_UNSP = "".join(rf"\p{{sc={s}}}" for s in UNSPACED)
_TOKEN = regex.compile(rf"[{_UNSP}]|[^\s{_UNSP}]+", regex.V1)
_HAS_UNSP = regex.compile(rf"[{_UNSP}]", regex.V1)
_BASE = np.uint64(0x100000001B3)  # odd, so it has an inverse mod 2^64
_BASE_INV = np.uint64(pow(int(_BASE), -1, 2**64))
_SKIP_NAMES = ("readme", "sources", "license", "licence", "metadata", "metedata", "md5sums", ".")
_SKIP_SUFFIXES = (".md", ".tsv", ".json", ".yaml", ".yml", ".py", ".sh", ".xz", ".tar", ".zip")


class _Powers:
    """Cached base^k and base^-k mod 2^64 (grown on demand)."""

    def __init__(self) -> None:
        self.pos = np.ones(1, dtype=np.uint64)
        self.neg = np.ones(1, dtype=np.uint64)

    def upto(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.pos) <= n:
            size = max(n + 1, 2 * len(self.pos))
            with np.errstate(over="ignore"):
                self.pos = np.cumprod(np.full(size, _BASE, dtype=np.uint64)) * _BASE_INV  # base^0..base^(size-1)
                self.neg = np.cumprod(np.full(size, _BASE_INV, dtype=np.uint64)) * _BASE
        return self.pos, self.neg


_POWERS = _Powers()


def canonical_tokens(text: str) -> list[str]:
    """Normalised tokens; the regex runs only on words holding characters of unspaced scripts."""
    norm = normalize(text)
    words = norm.split()
    if norm.isascii():
        return words
    out: list[str] = []
    for w in words:
        if w.isascii() or not _HAS_UNSP.search(w):
            out.append(w)
        else:
            out.extend(_TOKEN.findall(w))
    return out


def span_hashes(text: str, lengths: Iterable[int]) -> np.ndarray:
    """Hashes of every window of ``k`` tokens, for each k in ``lengths`` (k larger than the text: skipped)."""
    return token_span_hashes(canonical_tokens(text), lengths)


def token_span_hashes(toks: list[str], lengths: Iterable[int]) -> np.ndarray:
    if not toks:
        return np.empty(0, dtype=np.uint64)
    joined = " ".join(toks)
    codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    size = len(codes)
    pos, neg = _POWERS.upto(size + 1)
    lens = np.fromiter((len(t) for t in toks), dtype=np.int64, count=len(toks))
    starts = np.concatenate(([0], np.cumsum(lens + 1)[:-1]))
    ends = starts + lens
    with np.errstate(over="ignore"):
        # G[i] = sum_{j<i} c[j] * base^-j, so the hash of c[a:b] = base^(b-1) * (G[b] - G[a]).
        prefix = np.concatenate((np.zeros(1, dtype=np.uint64), np.cumsum(codes * neg[:size], dtype=np.uint64)))
        ks = [k for k in lengths if k <= len(toks)]
        if not ks:
            return np.empty(0, dtype=np.uint64)
        a = np.concatenate([starts[: len(toks) - k + 1] for k in ks])
        b = np.concatenate([ends[k - 1:] for k in ks])
        k_of = np.repeat(np.array(ks, dtype=np.uint64), [len(toks) - k + 1 for k in ks])
        return mix64(pos[b - 1] * (prefix[b] - prefix[a]) + k_of)


def sentence_keys(sentences: list[list[str]], ngram: int) -> np.ndarray:
    """Index keys of many tokenised eval sentences in one vectorised pass: every ``ngram`` window of the
    long ones, the whole of the short ones. Same hashes as ``token_span_hashes`` (the polynomial hash of a
    span does not depend on where the span sits), without per-sentence numpy overhead."""
    toks = [t for sent in sentences for t in sent]
    counts = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))
    joined = " ".join(toks)
    codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    pos, neg = _POWERS.upto(len(codes) + 1)
    lens = np.fromiter((len(t) for t in toks), dtype=np.int64, count=len(toks))
    starts = np.concatenate(([0], np.cumsum(lens + 1)[:-1]))
    ends = starts + lens
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))  # index of each sentence's first token
    sid = np.repeat(np.arange(len(sentences)), counts)
    prefix = np.concatenate((np.zeros(1, dtype=np.uint64), np.cumsum(codes * neg[: len(codes)], dtype=np.uint64)))
    # long sentences: windows of ngram tokens that stay inside one sentence
    i = np.arange(max(len(toks) - ngram + 1, 0))
    i = i[sid[i] == sid[i + ngram - 1]] if len(i) else i
    a_long, b_long = starts[i], ends[i + ngram - 1]
    # short sentences: the whole sentence
    short = counts < ngram
    a_short, b_short = starts[first[short]], ends[first[short] + counts[short] - 1]
    a = np.concatenate((a_long, a_short))
    b = np.concatenate((b_long, b_short))
    k = np.concatenate((np.full(len(a_long), ngram, dtype=np.uint64), counts[short].astype(np.uint64)))
    return mix64(pos[b - 1] * (prefix[b] - prefix[a]) + k)


def eval_files(path: str | Path) -> list[Path]:
    """The sentence files of one eval set path (see module docstring)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise DataError("decontamination set not found", path=p)
    flores = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in FLORES_SUFFIXES)
    if flores:
        return flores
    files = sorted(
        f for f in p.rglob("*")
        if f.is_file() and not f.name.lower().startswith(_SKIP_NAMES) and f.suffix.lower() not in _SKIP_SUFFIXES
    )
    if not files:
        raise DataError("no sentence files in decontamination directory", path=p)
    return files


def _sentences(files: list[Path]) -> Iterator[str]:
    for f in files:
        for _, line in open_lines(f):
            if line.strip():
                yield line


class ContaminationIndex:
    """Sorted 64-bit span hashes of eval sentences, each with the id of its eval set."""

    def __init__(self, keys: np.ndarray, set_ids: np.ndarray, sets: list[str], lengths: list[int],
                 ngram: int) -> None:
        self.keys, self.set_ids, self.sets, self.lengths, self.ngram = keys, set_ids, sets, lengths, ngram
        # A bitmap of the keys' top bits (>= 16 bits per key, so ~94% of misses stop here with one memory
        # access instead of a binary search of ~20 cache misses): this makes the check cheap.
        self.shift = np.uint64(64 - max(16, int(np.ceil(np.log2(max(len(keys), 1) * 16)))))
        self.bitmap = np.zeros(1 << (64 - int(self.shift)), dtype=bool)
        self.bitmap[keys >> self.shift] = True

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def from_paths(cls, paths: Iterable[str | Path], ngram: int = 13, min_tokens: int = 4,
                   progress: bool = False) -> ContaminationIndex:
        if ngram < 1:
            raise DataError("decontamination n-gram length must be >= 1", field="ngram")
        sets = [str(p) for p in paths]
        all_keys, all_ids, lengths = [], [], {ngram}
        for set_id, name in enumerate(sets):
            sentences = _sentences(eval_files(name))
            if progress:
                from tqdm import tqdm

                sentences = tqdm(sentences, desc=f"decontam index {name}", unit=" sent")
            chunk: list[np.ndarray] = []
            batch: list[list[str]] = []
            for sent in sentences:
                toks = canonical_tokens(sent)
                if len(toks) >= min_tokens:
                    batch.append(toks)
                    lengths.add(min(ngram, len(toks)))
                if len(batch) == 4096:
                    chunk.append(sentence_keys(batch, ngram))
                    batch = []
            if batch:
                chunk.append(sentence_keys(batch, ngram))
            if chunk:
                keys = np.unique(np.concatenate(chunk))
                all_keys.append(keys)
                all_ids.append(np.full(len(keys), set_id, dtype=np.uint16))
        if not all_keys:
            raise DataError("decontamination sets hold no sentence long enough to match",
                            path=sets[0] if sets else None)
        keys = np.concatenate(all_keys)
        ids = np.concatenate(all_ids)
        order = np.argsort(keys, kind="stable")
        keys, ids = keys[order], ids[order]
        first = np.concatenate(([True], keys[1:] != keys[:-1]))  # a key in several sets: the first set
        return cls(keys[first], ids[first], sets, sorted(lengths), ngram)

    def hit(self, text: str) -> str | None:
        hashes = span_hashes(text, self.lengths)
        hashes = hashes[self.bitmap[hashes >> self.shift]]
        if not hashes.size:
            return None
        idx = np.searchsorted(self.keys, hashes)
        idx[idx == len(self.keys)] = 0
        found = np.flatnonzero(self.keys[idx] == hashes)
        return self.sets[int(self.set_ids[idx[found[0]]])] if found.size else None

    def check(self, texts: Iterable[str]) -> str | None:
        """Name of the eval set the first contaminated text overlaps with, else None."""
        for text in texts:
            name = self.hit(text)
            if name is not None:
                return name
        return None
