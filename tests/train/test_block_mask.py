"""block_causal_mask builds one causal block per sample run instead of comparing every id pair: it must equal
the pairwise definition (same sample and k <= q; padding sees only padding) on every layout collate_packed
makes: several samples, padding or none, one sample filling the row, one-token samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayling.train.packing import block_causal_mask


def pairwise(seq_ids: torch.Tensor) -> torch.Tensor:
    L = seq_ids.shape[1]
    return (seq_ids[:, :, None] == seq_ids[:, None, :]) & torch.ones(L, L, dtype=torch.bool).tril()[None]


def rows(lengths_per_row: list[list[int]], L: int) -> torch.Tensor:
    out, seq = torch.full((len(lengths_per_row), L), -1, dtype=torch.long), 0
    for r, lengths in enumerate(lengths_per_row):
        pos = 0
        for n in lengths:
            out[r, pos:pos + n] = seq
            pos, seq = pos + n, seq + 1
    return out


@pytest.mark.parametrize("layout", [
    [[3, 1, 4], [16]],            # padded row, full row (no padding)
    [[1, 1, 1, 1], [2, 13]],      # one-token samples; padding of one token
    [[16], [16]],
    [[5], [0]],                   # an all-padding row
])
def test_block_mask_equals_the_pairwise_definition(layout):
    seq = rows(layout, 16)
    want = pairwise(seq)
    got = block_causal_mask(seq, "sdpa")
    assert got.shape == (2, 1, 16, 16) and got.dtype == torch.bool
    assert torch.equal(got[:, 0], want)
    eager = block_causal_mask(seq, "eager", torch.bfloat16)
    assert eager.dtype == torch.bfloat16
    assert torch.equal(eager[:, 0] == 0, want) and (eager[:, 0][~want] == torch.finfo(torch.bfloat16).min).all()


def test_block_mask_on_random_packings():
    rng = np.random.default_rng(0)
    for _ in range(20):
        L = int(rng.integers(8, 64))
        layout = []
        for _ in range(3):
            lengths, left = [], int(rng.integers(0, L + 1))
            while left > 0:
                lengths.append(int(rng.integers(1, left + 1)))
                left -= lengths[-1]
            layout.append(lengths)
        seq = rows(layout, L)
        assert torch.equal(block_causal_mask(seq)[:, 0], pairwise(seq))
