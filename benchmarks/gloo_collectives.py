"""What each collective costs over gloo on one CPU host: the operations DDP, DeepSpeed stage 0 and ZeRO-2 run
per step, on one fp32 buffer of a model's size (default 111M parameters = the body regime of
benchmarks/train_throughput.py).

    python benchmarks/gloo_collectives.py [--numel 111000000] [--repeats 3] [--nproc 2]   # starts torchrun itself

- all_reduce of the whole buffer (DeepSpeed stage 0: one all-reduce after the backward pass), and in 25 MB
  buckets (DDP) or 200 MB buckets (ZeRO-2's reduce_bucket_size here);
- all_gather_into_tensor of each rank's half (ZeRO-1/2 after every update: the new parameters), list
  all_gather, and the same all-gather done as an all-reduce of a zero-filled buffer;
- reduce_scatter_tensor.
One intra-op thread per rank; the operations alternate within each repeat; rank 0 prints the seconds per
operation (min, median, max over repeats) and the load average. Writes nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--numel", type=int, default=111_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nproc", type=int, default=2, help="ranks (processes on this host)")
    a = ap.parse_args()
    if "RANK" not in os.environ:  # started plainly: become torchrun's launcher for --nproc ranks of this script
        import subprocess
        import sys

        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={a.nproc}",
               __file__, *sys.argv[1:]]
        raise SystemExit(subprocess.call(cmd))
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    n = a.numel - a.numel % world
    grads, out = torch.randn(n), torch.empty(n)
    mine = grads.chunk(world)[rank].clone()

    def buckets(size: int):
        def run():
            for part in grads.split(size):
                dist.all_reduce(part)
        return run

    def gather_as_reduce():
        out.zero_()
        out.chunk(world)[rank].copy_(mine)
        dist.all_reduce(out)

    ops = {
        "all_reduce, whole buffer": lambda: dist.all_reduce(grads),
        "all_reduce, 25 MB buckets": buckets(25_000_000 // 4),
        "all_reduce, 200 MB buckets": buckets(200_000_000 // 4),
        "all_gather_into_tensor": lambda: dist.all_gather_into_tensor(out, mine),
        "all_gather (list)": lambda: dist.all_gather(list(out.chunk(world)), mine),
        "all-gather as all_reduce": gather_as_reduce,
        "reduce_scatter_tensor": lambda: dist.reduce_scatter_tensor(torch.empty(n // world), grads),
    }
    times: dict[str, list[float]] = {k: [] for k in ops}
    loads = []
    for _ in range(a.repeats):
        for name, op in ops.items():
            dist.barrier()
            t0 = time.perf_counter()
            op()
            dist.barrier()
            times[name].append(time.perf_counter() - t0)
        loads.append(os.getloadavg()[0])
    if rank == 0:
        print(f"{world} ranks, gloo, {n * 4 / 1e6:,.0f} MB fp32; load average {min(loads):.1f}-{max(loads):.1f}")
        print("| operation | seconds, median (min-max) |\n|---|---|")
        for name, ts in times.items():
            print(f"| {name} | {statistics.median(ts):.2f} ({min(ts):.2f}-{max(ts):.2f}) |")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
