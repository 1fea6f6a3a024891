"""What one optimizer step will hold, shown by ``bayling-train --print-config`` before anything runs (issue 13).

Why: a reader of the paper counts a step in instructions (BayLing 2: a fixed number of instructions per
step), a practitioner in tokens and packed rows; both want the number of steps the data gives before a
cluster allocation is spent. The figures come from :func:`bayling.train.recipe.step_plan`, the same plan the
run follows, over the run's token cache when it already exists (``--prepare-only`` builds it). Looking the
cache up hashes the data and loads the tokenizer but never tokenises; without the cache only what the
config alone fixes is shown. Every line is a YAML comment, so the printed config stays loadable.
"""

from __future__ import annotations

from bayling.errors import BaylingError
from bayling.train.config import TrainConfig


def cache_for(cfg: TrainConfig):
    """The run's complete token cache, or None (not built yet, or the tokenizer is not local yet)."""
    from bayling.train.cache import CacheSpec, find_cache
    from bayling.train.tokenize import tokenizer_source

    if not (cfg.model.tokenizer or cfg.model.init == "tiny"):
        from pathlib import Path

        if not Path(cfg.model.path).expanduser().is_dir():
            return None  # a hub id: never download for a preview
    return find_cache(CacheSpec.for_run(cfg, tokenizer_source(cfg, cfg.model.path)))


def config_only_line(cfg: TrainConfig, world: int) -> str:
    """What the config alone fixes per step (no data needed)."""
    if cfg.instructions_per_step is not None:
        return f"# per step: {cfg.instructions_per_step} instructions (instructions_per_step)"
    ga = cfg.resolved_grad_accum(world)
    unit = f"packed rows of up to {cfg.data.max_length} tokens" if cfg.data.packing else "sequences"
    return (f"# per step: {cfg.micro_batch * ga * world} {unit} (micro_batch {cfg.micro_batch} x grad_accum {ga} "
            f"x world size {world})")


def step_comment(cfg: TrainConfig, world: int = 1) -> list[str]:
    """Comment lines for ``--print-config``: the per-step figures, or why they need ``--prepare-only``."""
    try:
        cache_path = cache_for(cfg)
    except BaylingError as err:
        cache_path, why = None, f" ({err})"
    else:
        why = ""
    if cache_path is None:
        return [f"# per-step figures need the token cache: run `bayling-train --config FILE --prepare-only` "
                f"first{why}", config_only_line(cfg, world)]
    from bayling.train.cache import open_cache
    from bayling.train.recipe import step_plan, total_steps

    cache = open_cache(cache_path)
    plan, _ = step_plan(cfg, cache, world)
    counts = plan.step_counts()
    mean = lambda xs: sum(xs) / max(len(xs), 1)  # noqa: E731
    rows = (f"~{mean(counts['rows']):.1f} packed rows of {cfg.data.max_length}" if cfg.data.packing
            else f"{mean(counts['rows']):.1f} sequences")
    span = (f"(max_steps) over {len(cache)} records" if cfg.max_steps
            else f"for {cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''} of {len(cache)} records")
    inst = counts["instructions"]
    shown = f"{inst[0]}" if min(inst) == max(inst) else f"~{mean(inst):.1f}"
    return [f"# per step: {shown} instructions, ~{round(mean(counts['tokens']))} tokens "
            f"(mean), {rows}; {total_steps(cfg, plan)} steps {span}",
            f"# (world size {world}, grad_accum {plan.grad_accum}; token cache {cache_path})"]
