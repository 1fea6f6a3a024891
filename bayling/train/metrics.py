"""Rank-0 logging: metrics.jsonl (machine), TensorBoard (curves), tqdm (now), train_summary.md (people).

metrics.jsonl has one JSON object per logged step (and ``"event": "eval"`` lines for validation). On resume
the file is cut back to the resumed step first, so an interrupted-and-resumed run leaves the same curve
as an uninterrupted one.

MFU = 6 * parameters * (real tokens/s per device) / peak FLOP/s per device. 6N FLOPs per token is the
usual dense-transformer estimate (forward 2N + backward 4N); it ignores attention's O(L^2) term and the
recompute of gradient checkpointing, so it is a conservative figure that compares across runs.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def peak_memory_gb() -> float:
    """Peak accelerator memory of this process if on GPU, else peak resident host memory."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def mfu(n_params: int, tokens_per_s_per_device: float, peak_tflops: float | None) -> float | None:
    if not peak_tflops:
        return None
    return 6.0 * n_params * tokens_per_s_per_device / (peak_tflops * 1e12)


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop records past ``last_step`` (logged after the checkpoint we resume from)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= last_step:
                keep.append(line)
        except json.JSONDecodeError:
            break  # a line cut by a crash ends the usable part
    path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")


class MetricsLogger:
    """Everything is a no-op on ranks other than 0, so the loop can call it unconditionally."""

    def __init__(self, out: Path, *, rank: int, start_step: int, total_steps: int, n_params: int,
                 world_size: int, peak_tflops: float | None, use_tensorboard: bool = True) -> None:
        self.active = rank == 0
        self.out = out
        self.n_params = n_params
        self.world_size = world_size
        self.peak_tflops = peak_tflops
        self.path = out / "metrics.jsonl"
        self.history: list[dict[str, Any]] = []
        self.evals: list[dict[str, Any]] = []
        self.started = time.time()
        self.tokens_total = 0
        self.tb = None
        self.bar = None
        if not self.active:
            return
        truncate_jsonl(self.path, start_step)
        if use_tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"), purge_step=start_step + 1)
        from tqdm import tqdm

        self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)

    def step_record(self, step: int, *, loss: float, lr: float, grad_norm: float | None, real_tokens: int,
                    slot_tokens: int, target_tokens: int, seconds: float, epoch: int) -> dict[str, Any]:
        """Build the metrics of one optimizer step (token counts are summed over all ranks)."""
        tps = real_tokens / max(seconds, 1e-9)
        return {
            "step": step,
            "epoch": epoch,
            "loss": loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "target_tokens": target_tokens,
            "real_tokens": real_tokens,
            "tokens_per_s": tps,
            "packing_efficiency": real_tokens / max(slot_tokens, 1),
            "mfu": mfu(self.n_params, tps / self.world_size, self.peak_tflops),
            "peak_memory_gb": peak_memory_gb(),
            "step_seconds": seconds,
        }

    def log(self, record: dict[str, Any], write: bool) -> None:
        """Advance the bar every step; write jsonl/TensorBoard when ``write`` (every ``log_every``)."""
        if not self.active:
            return
        self.tokens_total += record.get("real_tokens", 0)
        self.history.append(record)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
        if write:
            self._write(record)

    def message(self, text: str) -> None:
        """A line on stderr that does not collide with the progress bar (rank 0 only)."""
        if not self.active:
            return
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)
        sys.stderr.flush()

    def log_eval(self, step: int, val_loss: float, val_tokens: int) -> None:
        if not self.active:
            return
        record = {"step": step, "event": "eval", "val_loss": val_loss, "val_tokens": val_tokens}
        self.evals.append(record)
        self.bar.write(f"step {step}: val_loss {val_loss:.4f}")
        self._write(record)

    def _write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, int | float) and key not in ("step", "epoch"):
                    self.tb.add_scalar(f"train/{key}" if key != "val_loss" else "eval/val_loss", value,
                                       record["step"])

    def close(self, summary: dict[str, Any]) -> None:
        """Flush TensorBoard and write train_summary.md."""
        if not self.active:
            return
        self.bar.close()
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
        (self.out / "train_summary.md").write_text(self._summary_md(summary), encoding="utf-8")

    def _summary_md(self, summary: dict[str, Any]) -> str:
        h = self.history
        lines = ["# Training summary", ""]
        lines += [f"- {k}: {v}" for k, v in summary.items()]
        if h:
            tps = [r["tokens_per_s"] for r in h]
            eff = [r["packing_efficiency"] for r in h]
            lines += [
                f"- steps this invocation: {len(h)} (up to step {h[-1]['step']})",
                f"- loss: first {h[0]['loss']:.4f}, last {h[-1]['loss']:.4f}",
                f"- real tokens this invocation: {self.tokens_total}",
                f"- tokens/s (median): {sorted(tps)[len(tps) // 2]:.1f}",
                f"- packing efficiency (mean): {sum(eff) / len(eff):.3f}",
                f"- peak memory (rank 0): {h[-1]['peak_memory_gb']:.2f} GB",
            ]
            if h[-1].get("mfu") is not None:
                lines.append(f"- MFU (last step): {h[-1]['mfu']:.3f}")
        if self.evals:
            lines += ["", "| step | val_loss |", "|---:|---:|"]
            lines += [f"| {e['step']} | {e['val_loss']:.4f} |" for e in self.evals]
        lines += ["", "Machine-readable: metrics.jsonl; curves: `tensorboard --logdir tb`.", ""]
        return "\n".join(lines)
