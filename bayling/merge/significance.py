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


def resample_scores(systems: dict[str, dict[str, tuple[list[str], list[str]]]], n_samples: int = 1000,
                    seed: int = DEFAULT_SEED, word_order: int = 2) -> tuple[list[str], dict, dict]:
    """Corpus chrF++ of every system on the full sample and on ``n_samples`` paired resamples.

    ``systems``: name -> direction -> (hypotheses, references). Every system gets the same resampled
    sentences (paired), each direction resamples its own sentences (stratified). Returns the sorted
    directions, name -> full-sample score per direction (array (d,)), name -> resampled scores (array (B, d)).
    """
    names = list(systems)
    dirs = sorted(systems[names[0]]) if names else []
    if not dirs or any(set(systems[n]) != set(dirs) for n in names):
        raise BaylingError("the systems must cover the same (non-empty) set of directions: "
                           + "; ".join(f"{n}: {sorted(systems[n])}" for n in names))
    if n_samples < 1:
        raise BaylingError(f"n_samples must be >= 1, got {n_samples}")
    metric = chrf_metric(word_order)
    rng = np.random.default_rng(seed)
    full = {n: np.zeros(len(dirs)) for n in names}
    boot = {n: np.zeros((n_samples, len(dirs))) for n in names}
    for j, d in enumerate(dirs):
        refs = systems[names[0]][d][1]
        if any(systems[n][d][1] != refs for n in names):
            raise BaylingError(f"{d}: the systems were scored against different references")
        stats = {n: sentence_stats(metric, systems[n][d][0], refs) for n in names}
        idx = rng.choice(len(refs), size=(n_samples, len(refs)), replace=True)
        for n in names:
            full[n][j] = corpus_scores(metric, stats[n], np.arange(len(refs))[None, :])[0]
            boot[n][:, j] = corpus_scores(metric, stats[n], idx)
    return dirs, full, boot


def paired_bootstrap(system_a: dict[str, tuple[list[str], list[str]]],
                     system_b: dict[str, tuple[list[str], list[str]]], n_samples: int = 1000,
                     seed: int = DEFAULT_SEED, word_order: int = 2) -> dict:
    """A vs B on the mean over directions of corpus chrF++; each system: direction -> (hypotheses, references).

    Returns the two means, their difference (A - B), its 95 % percentile interval, the two-sided p-value,
    the share of resamples where A's mean is higher, and the per-direction scores.
    """
    dirs, full, boot = resample_scores({"a": system_a, "b": system_b}, n_samples, seed, word_order)
    mean_a, mean_b = float(full["a"].mean()), float(full["b"].mean())
    diff = mean_a - mean_b
    deltas = boot["a"].mean(axis=1) - boot["b"].mean(axis=1)
    centred = np.abs(deltas - deltas.mean())
    p_value = (1 + int(np.sum(centred >= abs(diff) - 1e-12))) / (n_samples + 1)
    low, high = np.percentile(deltas, [2.5, 97.5])
    return {"mean_a": mean_a, "mean_b": mean_b, "diff": diff, "ci95": [float(low), float(high)],
            "p_value": float(p_value), "a_better_share": float(np.mean(deltas > 0)),
            "n_samples": n_samples, "seed": seed, "metric": f"chrF (word_order={word_order}), mean over directions",
            "directions": {d: {"a": float(full["a"][j]), "b": float(full["b"][j]), "lines": len(system_a[d][1])}
                           for j, d in enumerate(dirs)}}


def kept_share(base: dict, expert: dict, merged: dict, directions: list[str], threshold: float = 0.8,
               n_samples: int = 1000, seed: int = DEFAULT_SEED, word_order: int = 2) -> dict:
    """The share of an expert's gain over the base a merged model keeps on ``directions``, with a 95 % interval.

    kept = (merged - base) / (expert - base), each the mean corpus chrF++ over ``directions``; per paired
    resample likewise. A resample where the expert does not gain has no share: those are counted, not used.
    ``at_least_threshold``: the share of the usable resamples with kept >= ``threshold``.
    """
    pick = {name: {d: system[d] for d in directions} for name, system in
            (("base", base), ("expert", expert), ("merged", merged))}
    _, full, boot = resample_scores(pick, n_samples, seed, word_order)
    gain, got = full["expert"].mean() - full["base"].mean(), full["merged"].mean() - full["base"].mean()
    b_gain = boot["expert"].mean(axis=1) - boot["base"].mean(axis=1)
    b_got = boot["merged"].mean(axis=1) - boot["base"].mean(axis=1)
    usable = b_gain > 0
    shares = b_got[usable] / b_gain[usable]
    low, high = np.percentile(shares, [2.5, 97.5]) if shares.size else (float("nan"), float("nan"))
    return {"kept": float(got / gain) if gain > 0 else None, "gain": float(gain), "ci95": [float(low), float(high)],
            "at_least_threshold": float(np.mean(shares >= threshold)) if shares.size else None,
            "threshold": threshold, "resamples_without_gain": int((~usable).sum()), "n_samples": n_samples,
            "seed": seed}


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
