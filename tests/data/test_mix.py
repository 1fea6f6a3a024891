"""Mixing math a user relies on: quotas of the target, temperature shares, the upsampling cap, shortfalls."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayling.data.mix import (
    allocate,
    largest_remainder,
    plan_mix,
    sample_group,
    select,
    split_valid,
    temperature_shares,
)

PAPER = {"zh": 0.432, "en": 0.262, "cross_lingual": 0.306}


def test_paper_quotas_of_3_2m():
    plans = plan_mix({"zh": {"zh": 10**7}, "en": {"en": 10**7}, "cross_lingual": {"deu_Latn": 10**7}},
                     PAPER, 3_200_000, alpha=0.3, cap=1.0)
    quotas = {p.name: p.quota for p in plans}
    assert quotas == {"zh": 1_382_400, "en": 838_400, "cross_lingual": 979_200}
    assert all(p.reached == p.quota and p.shortfall == 0 for p in plans)


def test_temperature_shares_follow_n_to_the_alpha():
    counts = [10_000, 100, 0]
    shares = temperature_shares(counts, 0.5)
    assert shares[2] == 0.0
    assert shares[0] / shares[1] == pytest.approx((10_000 / 100) ** 0.5)
    assert temperature_shares(counts, 0.0)[:2] == [0.5, 0.5]
    assert temperature_shares(counts, 1.0)[0] == pytest.approx(10_000 / 10_100)


def test_cap_limits_copies_and_surplus_flows_to_other_languages():
    # uniform shares (alpha=0): each of 3 languages wants 400; 'small' can give at most 2 x 50.
    plans = plan_mix({"cross_lingual": {"big": 5000, "mid": 1000, "small": 50}}, {"cross_lingual": 1.0},
                     1200, alpha=0.0, cap=2.0)
    groups = {g.name: g for g in plans[0].groups}
    assert groups["small"].selected == 100 and groups["small"].upsample_factor == 2.0
    assert groups["big"].selected + groups["mid"].selected == 1100
    assert plans[0].reached == 1200 and plans[0].shortfall == 0


def test_not_enough_data_is_a_shortfall_not_an_overshoot():
    plans = plan_mix({"zh": {"zh": 100}, "en": {"en": 10_000}, "cross_lingual": {"fra_Latn": 10}},
                     PAPER, 10_000, alpha=0.3, cap=3.0)
    by = {p.name: p for p in plans}
    assert by["zh"].quota == 4320 and by["zh"].reached == 300 and by["zh"].shortfall == 4020
    assert by["cross_lingual"].reached == 30
    assert by["en"].reached == by["en"].quota == 2620


def test_dropped_arm_does_not_inflate_the_others():
    plans = plan_mix({"zh": {"zh": 10**6}, "en": {"en": 10**6}}, PAPER, 1000, alpha=0.3, cap=1.0,
                     drop=("cross_lingual",))
    assert {p.name: p.reached for p in plans} == {"zh": 432, "en": 262}


@settings(max_examples=200, deadline=None)
@given(total=st.integers(0, 10**7), weights=st.lists(st.floats(0.0, 1e6), min_size=1, max_size=30))
def test_largest_remainder_sums_exactly(total, weights):
    parts = largest_remainder(total, weights)
    if sum(weights) > 0:
        assert sum(parts) == total
        assert all(p >= 0 for p in parts)
        assert all(abs(p - total * w / sum(weights)) < 1 + 1e-6 for p, w in zip(parts, weights))


@settings(max_examples=200, deadline=None)
@given(quota=st.integers(0, 100_000), counts=st.lists(st.integers(0, 5000), min_size=1, max_size=20),
       cap=st.floats(1.0, 5.0), alpha=st.floats(0.0, 1.0))
def test_allocate_never_exceeds_cap_or_quota(quota, counts, cap, alpha):
    alloc = allocate(quota, counts, temperature_shares(counts, alpha), cap)
    assert sum(alloc) <= quota
    assert all(a <= int(cap * n + 1e-9) for a, n in zip(alloc, counts))
    capacity = sum(int(cap * n + 1e-9) for n in counts)
    assert sum(alloc) == min(quota, capacity)


def test_sample_group_copies_are_balanced_and_reproducible():
    idx = np.arange(100, 110)
    draw = sample_group(idx, 25, np.random.default_rng(7))
    values, counts = np.unique(draw, return_counts=True)
    assert set(values) == set(idx) and set(counts) <= {2, 3} and counts.sum() == 25
    assert np.array_equal(draw, sample_group(idx, 25, np.random.default_rng(7)))
    assert len(set(sample_group(idx, 6, np.random.default_rng(1)))) == 6  # no repeats below n


def test_select_and_split_are_seeded_and_valid_never_leaks():
    cats = np.array([0] * 50 + [1] * 30)
    groups = np.array([0] * 50 + [1] * 10 + [2] * 20)
    plans = plan_mix({"zh": {"zh": 50}, "cross_lingual": {"deu_Latn": 10, "fra_Latn": 20}},
                     {"zh": 0.5, "cross_lingual": 0.5}, 100, alpha=0.0, cap=3.0)
    sel = select(plans, cats, groups, ["zh", "cross_lingual"], ["zh", "deu_Latn", "fra_Latn"], seed=3)
    assert len(sel) == 100
    assert np.array_equal(sel, select(plans, cats, groups, ["zh", "cross_lingual"],
                                      ["zh", "deu_Latn", "fra_Latn"], seed=3))
    assert not np.array_equal(sel, select(plans, cats, groups, ["zh", "cross_lingual"],
                                          ["zh", "deu_Latn", "fra_Latn"], seed=4))
    train, valid = split_valid(sel, 0.1, 1000, seed=3)
    assert len(valid) == len(set(valid.tolist())) > 0
    assert not set(valid.tolist()) & set(train.tolist())
    assert len(train) + sum(int((sel == v).sum()) for v in valid) == len(sel)
