"""Mixing: how many examples each category and language gets, and which records fill those slots.

The BayLing 2 mix is given as category proportions of a total (zh 43.2% / en 26.2% / cross-lingual
30.6% of 3.2M). Real sources rarely have exactly that much, so the plan is computed first as plain
numbers (quota, what is available, what upsampling may add, what is reached) and reported; the
selection itself then only needs compact integer arrays, never the records.

Inside the cross-lingual arm every language gets a share ``p_l ∝ n_l ** alpha`` (temperature sampling:
alpha=1 keeps the natural proportions, alpha=0 is uniform), so low-resource languages are not drowned
by the big ones. No record is repeated more than ``upsample_cap`` times; quota that a capped group cannot
absorb flows to the groups that can (water-filling), and what still cannot be placed is a shortfall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

CATEGORIES = ("zh", "en", "cross_lingual")


@dataclass
class GroupPlan:
    """One sampling group (a category, or one language inside the cross-lingual arm)."""

    name: str
    available: int
    share: float = 0.0
    selected: int = 0

    @property
    def upsample_factor(self) -> float:
        return self.selected / self.available if self.available else 0.0


@dataclass
class CategoryPlan:
    name: str
    proportion: float
    quota: int
    available: int
    reached: int = 0
    groups: list[GroupPlan] = field(default_factory=list)

    @property
    def shortfall(self) -> int:
        return max(0, self.quota - self.reached)


def largest_remainder(total: int, weights: list[float]) -> list[int]:
    """Split integer ``total`` in proportion to ``weights``; parts sum exactly to ``total``.

    Ties are broken by position so the split is deterministic.
    """
    wsum = float(sum(weights))
    if total <= 0 or wsum <= 0:
        return [0] * len(weights)
    exact = [total * w / wsum for w in weights]
    parts = [math.floor(x) for x in exact]
    rest = total - sum(parts)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[:rest]:
        parts[i] += 1
    return parts


def temperature_shares(counts: list[int], alpha: float) -> list[float]:
    """``p_l ∝ n_l ** alpha`` over the groups that have data (empty groups get 0)."""
    raw = [float(n) ** alpha if n > 0 else 0.0 for n in counts]
    total = sum(raw)
    return [r / total if total else 0.0 for r in raw]


def allocate(quota: int, counts: list[int], shares: list[float], cap: float) -> list[int]:
    """Give ``quota`` slots to groups by ``shares``, no group above ``floor(cap * n)``.

    Water-filling: groups that hit their cap keep the cap and the rest of the quota is shared again
    among the others by their shares, until everything is placed or every group is full.
    """
    limits = [math.floor(cap * n + 1e-9) for n in counts]
    alloc = [0] * len(counts)
    open_ = [i for i, n in enumerate(counts) if n > 0 and shares[i] > 0]
    remaining = quota
    while remaining > 0 and open_:
        parts = largest_remainder(remaining, [shares[i] for i in open_])
        full = []
        for i, part in zip(open_, parts):
            take = min(part, limits[i] - alloc[i])
            alloc[i] += take
            remaining -= take
            if alloc[i] >= limits[i]:
                full.append(i)
        if not full:
            break
        open_ = [i for i in open_ if i not in full]
    return alloc


def plan_mix(
    available: dict[str, dict[str, int]],
    proportions: dict[str, float],
    target_total: int,
    alpha: float,
    cap: float,
    drop: tuple[str, ...] = (),
) -> list[CategoryPlan]:
    """Quota per category, then per group inside it.

    ``available`` maps category -> {group: unique records}. zh and en are one group each in practice;
    the cross-lingual arm has one group per non-pivot language. Quotas are of the *target* total, so a
    dropped (``drop``) or empty category does not inflate the others (the paper's ablation removes the arm).
    """
    names = [c for c in proportions if proportions[c] > 0]
    quotas = largest_remainder(target_total, [proportions[c] for c in names])
    plans = []
    for cat, quota in zip(names, quotas):
        if cat in drop:
            continue
        groups = available.get(cat, {})
        gnames = sorted(groups)
        counts = [groups[g] for g in gnames]
        shares = temperature_shares(counts, alpha if cat == "cross_lingual" else 1.0)
        alloc = allocate(quota, counts, shares, cap)
        gplans = [GroupPlan(g, n, s, a) for g, n, s, a in zip(gnames, counts, shares, alloc)]
        plans.append(CategoryPlan(cat, proportions[cat], quota, sum(counts), sum(alloc), gplans))
    return plans


def sample_group(indices: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` draws from ``indices``: whole copies first, then a without-replacement remainder.

    Every record appears floor(k/n) or ceil(k/n) times, the least repetitive way to upsample.
    """
    n = len(indices)
    if k <= 0 or n == 0:
        return np.empty(0, dtype=np.int32)
    copies, rest = divmod(k, n)
    parts = [np.tile(indices, copies)] if copies else []
    if rest:
        parts.append(np.sort(rng.choice(indices, size=rest, replace=False)))
    return np.concatenate(parts).astype(np.int32)  # 4 bytes per slot: mixing 3.2M needs ~13 MB


def select(
    plans: list[CategoryPlan],
    cat_codes: np.ndarray,
    group_codes: np.ndarray,
    cat_names: list[str],
    group_names: list[str],
    seed: int,
) -> np.ndarray:
    """Record indices (with repeats) realising ``plans``; ``cat_codes``/``group_codes`` index the names.

    Each group draws from its own generator seeded by (seed, category, group), so changing one
    group's quota never changes which records another group picks.
    """
    out = []
    for cat in plans:
        ci = cat_names.index(cat.name) if cat.name in cat_names else -1
        for g in cat.groups:
            if g.selected == 0:
                continue
            gi = group_names.index(g.name)
            idx = np.flatnonzero((cat_codes == ci) & (group_codes == gi))
            rng = np.random.default_rng([seed, _stable(cat.name), _stable(g.name)])
            out.append(sample_group(idx, g.selected, rng))
    return np.concatenate(out) if out else np.empty(0, dtype=np.int32)


def split_valid(selection: np.ndarray, fraction: float, max_valid: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``selection`` into (train, valid); valid holds distinct records never seen in train.

    The split is made on unique records so an upsampled copy can never leak into the validation set.
    """
    rng = np.random.default_rng([seed, _stable("split")])
    unique = np.unique(selection)
    n_valid = min(max_valid, int(round(fraction * len(unique)))) if len(unique) > 1 else 0
    if fraction > 0 and n_valid == 0 and len(unique) > 1:
        n_valid = 1
    valid = rng.permutation(unique)[:n_valid]
    del unique
    train = selection[~np.isin(selection, valid)]
    order = rng.permutation(len(train)).astype(np.int32)
    return train[order], valid


def _stable(text: str) -> int:
    """A process-independent 32-bit id for seeding (Python's ``hash`` is salted per process)."""
    import zlib

    return zlib.crc32(text.encode("utf-8"))
