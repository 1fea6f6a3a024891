"""Paired bootstrap of two systems' *mean* corpus chrF++ over several translation directions.

What it answers: is system A's test-mean (the unweighted mean of per-direction corpus chrF++, the number
bayling-merge's report and the merge goals compare) better than system B's beyond sentence sampling noise?

WHY not ``sacrebleu.significance.PairedTest`` as it is: it compares one corpus per system, while the
statistic here is a mean over directions, each a corpus of its own (pooling the directions into one corpus
gives another number than the mean). So this is sacrebleu's paired bootstrap (Koehn 2004) applied per
direction and averaged, with sacrebleu's own pieces: sentence-level chrF++ sufficient statistics
(``CHRF._extract_corpus_statistics``), the corpus score from summed statistics
(``CHRF._compute_score_from_stats``, what ``corpus_score`` computes: the full sample reproduces the reported
chrF++ exactly), sacrebleu's resample draw (``numpy.random.default_rng(seed).choice(n, (B, n))``) and its
default seed 12345. Resampling is paired (A and B get the same sentences) and stratified (each direction
resamples its own sentences, so every resample still has every direction with its own size).

The p-value is two-sided, from the bootstrap distribution of the difference shifted to mean zero (the null
hypothesis; Berg-Kirkpatrick et al. 2012, the shift sacrebleu also applies): p = (1 + #{b: |d_b - mean(d)|
>= |d|}) / (B + 1). sacrebleu's own formula counts ``>`` on absolute differences, which gives identical
systems p = 1/(B+1) (a "significant" difference of zero); ``>=`` gives them p = 1. The 95 % interval is the
2.5th-97.5th percentile of the resampled differences (percentile bootstrap).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bayling.errors import BaylingError
from bayling.eval.metrics import read_lines

DEFAULT_SEED = 12345  # sacrebleu's default bootstrap seed (SACREBLEU_SEED)


def chrf_metric(word_order: int = 2):
    from sacrebleu.metrics import CHRF

    return CHRF(word_order=word_order)


def sentence_stats(metric, hyps: list[str], refs: list[str]) -> np.ndarray:
    """Per-sentence chrF++ sufficient statistics, shape (sentences, statistics)."""
    if len(hyps) != len(refs):
        raise BaylingError(f"{len(hyps)} hypotheses but {len(refs)} references")
    return np.asarray(metric._extract_corpus_statistics(hyps, [refs]), dtype=np.float64)


def corpus_scores(metric, stats: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Corpus chrF++ of each resample: ``idx`` (B, n) sentence indices into ``stats`` (n, k)."""
    sums = stats[idx].sum(axis=1)
    return np.array([metric._compute_score_from_stats(s).score for s in sums])


def paired_bootstrap(system_a: dict[str, tuple[list[str], list[str]]],
                     system_b: dict[str, tuple[list[str], list[str]]], n_samples: int = 1000,
                     seed: int = DEFAULT_SEED, word_order: int = 2) -> dict:
    """A vs B on the mean over directions of corpus chrF++; each system: direction -> (hypotheses, references).

    Returns the two means, their difference (A - B), its 95 % percentile interval, the two-sided p-value,
    the share of resamples where A's mean is higher, and the per-direction scores.
    """
    if set(system_a) != set(system_b) or not system_a:
        raise BaylingError("the two systems must cover the same (non-empty) set of directions: "
                           f"{sorted(system_a)} vs {sorted(system_b)}")
    if n_samples < 1:
        raise BaylingError(f"n_samples must be >= 1, got {n_samples}")
    metric = chrf_metric(word_order)
    rng = np.random.default_rng(seed)
    dirs = sorted(system_a)
    full_a, full_b, boot_a, boot_b = {}, {}, np.zeros(n_samples), np.zeros(n_samples)
    for d in dirs:
        (hyp_a, ref_a), (hyp_b, ref_b) = system_a[d], system_b[d]
        if ref_a != ref_b:
            raise BaylingError(f"{d}: the two systems were scored against different references")
        sa, sb = sentence_stats(metric, hyp_a, ref_a), sentence_stats(metric, hyp_b, ref_b)
        n = len(ref_a)
        everything = np.arange(n)[None, :]
        full_a[d], full_b[d] = corpus_scores(metric, sa, everything)[0], corpus_scores(metric, sb, everything)[0]
        idx = rng.choice(n, size=(n_samples, n), replace=True)
        boot_a += corpus_scores(metric, sa, idx)
        boot_b += corpus_scores(metric, sb, idx)
    boot_a, boot_b = boot_a / len(dirs), boot_b / len(dirs)
    mean_a, mean_b = float(np.mean(list(full_a.values()))), float(np.mean(list(full_b.values())))
    diff = mean_a - mean_b
    deltas = boot_a - boot_b
    centred = np.abs(deltas - deltas.mean())
    p_value = (1 + int(np.sum(centred >= abs(diff) - 1e-12))) / (n_samples + 1)
    low, high = np.percentile(deltas, [2.5, 97.5])
    return {"mean_a": mean_a, "mean_b": mean_b, "diff": diff, "ci95": [float(low), float(high)],
            "p_value": float(p_value), "a_better_share": float(np.mean(deltas > 0)),
            "n_samples": n_samples, "seed": seed, "metric": f"chrF (word_order={word_order}), mean over directions",
            "directions": {d: {"a": float(full_a[d]), "b": float(full_b[d]), "lines": len(system_a[d][1])}
                           for d in dirs}}


def load_eval_dir(folder: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Direction -> (hypotheses, references) of a bayling-eval / bayling-merge evaluation folder.

    Reads ``directions/*.json`` (the per-direction records), the hypothesis file each names and the
    reference file it was scored against (its first ``n`` lines: the records of a held-out split).
    """
    files = sorted((folder / "directions").glob("*.json"))
    if not files:
        raise BaylingError("no finished directions (directions/*.json) in this evaluation folder", path=folder)
    out = {}
    for f in files:
        rec = json.loads(f.read_text(encoding="utf-8"))
        hyps = (folder / rec["hyp_file"]).read_text(encoding="utf-8").split("\n")[:-1]
        refs = read_lines(rec["files"]["reference"], "reference file")[: rec["n"]]
        if len(hyps) != rec["n"] or len(refs) != rec["n"]:
            raise BaylingError(f"{rec['direction']}: {len(hyps)} hypotheses, {len(refs)} references, record says "
                               f"{rec['n']}", path=f)
        out[rec["direction"]] = (hyps, refs)
    return out


def verdict(result: dict, alpha: float = 0.05) -> str:
    """One sentence: the difference, its interval, p, and whether it is beyond noise at ``alpha``."""
    lo, hi = result["ci95"]
    beyond = result["p_value"] < alpha and (lo > 0 or hi < 0)
    return (f"{result['diff']:+.2f} chrF++ (95 % CI {lo:+.2f} .. {hi:+.2f}, p = {result['p_value']:.3f}, "
            f"{result['n_samples']} paired resamples, seed {result['seed']}): "
            + ("beyond noise" if beyond else "within noise") + f" at {alpha:g}")
