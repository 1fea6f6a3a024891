"""The dense block-diagonal SDPA mask: the former pairwise build vs ``block_causal_mask`` (one causal block per
sample run), alternating in one process, one thread, at the collate_cost.py shapes (4 x 2048, 2 x 4096).

    python benchmarks/mask_build.py [--repeats 7]

Rows are synthetic packings: samples of 20-600 tokens (seeded), 50 padding tokens at the end of each row.
Prints median (min-max) ms per mask for each build and checks that both masks are equal. Writes nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    import torch

    from bayling.train.packing import block_causal_mask

    torch.set_num_threads(1)

    def pairwise(seq: torch.Tensor) -> torch.Tensor:  # the build before 2026-12-03
        L = seq.shape[1]
        return ((seq[:, :, None] == seq[:, None, :]) & torch.ones(L, L, dtype=torch.bool).tril()[None])[:, None]

    g = torch.Generator().manual_seed(0)
    print("| rows x length | pairwise ms | block_causal_mask ms | load |\n|---|---|---|---|")
    for B, L in ((4, 2048), (2, 4096)):
        seq, sid = torch.full((B, L), -1, dtype=torch.long), 0
        for r in range(B):
            pos = 0
            while pos < L - 50:
                n = min(int(torch.randint(20, 600, (1,), generator=g)), L - 50 - pos)
                seq[r, pos:pos + n], sid, pos = sid, sid + 1, pos + n
        times: dict = {"pairwise": [], "blocks": []}
        for _ in range(a.repeats):
            for name, fn in (("pairwise", pairwise), ("blocks", block_causal_mask)):
                t0 = time.perf_counter()
                fn(seq)
                times[name].append((time.perf_counter() - t0) * 1e3)
        if not torch.equal(pairwise(seq), block_causal_mask(seq)):
            raise SystemExit("mask_build.py: error: the two masks differ")
        cell = lambda v: f"{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})"  # noqa: E731
        print(f"| {B} x {L} | {cell(times['pairwise'])} | {cell(times['blocks'])} | {os.getloadavg()[0]:.1f} |")


if __name__ == "__main__":
    main()
