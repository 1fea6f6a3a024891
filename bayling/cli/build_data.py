"""``bayling-build-data``: recipe -> data directory (train shards, valid, manifest, data card, plot).

    bayling-build-data                                   # demo recipe -> runs/data/demo
    bayling-build-data --recipe R.yaml --out DIR [--seed N] [--no-cross-lingual]
                       [--decontaminate PATH ...] [--tokenizer PATH] [--skip-bad-records]
                       [--snapshots ROOT] [--workers N] [--shard I/N] [key=value ...]
    bayling-build-data --recipe R.yaml --dry-run [--json] [--snapshots ROOT]   # the plan, no data read
    bayling-build-data merge --out DIR SHARD_DIR [SHARD_DIR ...]

With ``--shard I/N`` the command does the per-record work for one slice and writes an intermediate
folder to ``--out``; ``merge`` does global dedup, mixing and writing. A plain build runs both phases in
one process, so a merged build equals a single-machine build byte for byte.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bayling.cli import run_cli
from bayling.errors import ConfigError
from bayling.paths import DATA_DIR

PROG = "bayling-build-data"
DEMO_RECIPE = DATA_DIR / "recipes" / "demo.yaml"
DEMO_OUT = Path("runs/data/demo")


def _shard(value: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N (e.g. 0/8), got {value!r}") from None
    if n < 1 or not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"need 0 <= I < N, got {value!r}")
    return i, n


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors through the one-line error path (exit 2, no traceback)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    from bayling.data.records import FORMATS

    formats = "; ".join(f"{k} ({v.section}): {v.help}" for k, v in FORMATS.items())
    p = _Parser(prog=PROG, description="Build the BayLing instruction mix from a recipe.",
                epilog=f"Recipe source formats -- {formats}. Details: docs/data-builder.md.")
    p.add_argument("--recipe", type=Path, help="recipe YAML (default: the demo recipe, data/recipes/demo.yaml)")
    p.add_argument("--out", type=Path, help=f"output directory (default with the demo recipe: {DEMO_OUT})")
    p.add_argument("--seed", type=int, help="overrides the recipe's seed")
    p.add_argument("--no-cross-lingual", action="store_true", help="drop the cross-lingual arm (ablation)")
    p.add_argument("--decontaminate", nargs="+", default=[], metavar="PATH",
                   help="evaluation sets to hold out (FLORES dirs, WMT files, text files)")
    p.add_argument("--tokenizer", help="count tokens with this tokenizer (local dir or hub id)")
    p.add_argument("--skip-bad-records", action="store_true",
                   help="write bad input records to rejects.jsonl and go on instead of stopping")
    p.add_argument("--shard", type=_shard, metavar="I/N", help="process slice I of N (then run `merge`)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="parallel worker processes for the per-record work (output identical to 1 worker)")
    p.add_argument("--snapshots", metavar="ROOT",
                   help="folder of local dataset snapshots: a hub id ORG/NAME is read from ROOT/ORG/NAME "
                        "(`hf download ORG/NAME --repo-type dataset --local-dir ROOT/ORG/NAME`)")
    p.add_argument("--dry-run", action="store_true",
                   help="read no data; print the plan: sources and whether each is reachable (all missing ones "
                        "with the command that fetches them), languages per direction, target records")
    p.add_argument("--json", action="store_true", help="with --dry-run: the plan as JSON (keys in docs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. mix.target_total=1000")
    return p


def merge_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"{PROG} merge", description="Merge shard folders written with --shard I/N.")
    p.add_argument("--out", type=Path, required=True, help="output data directory")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("shards", nargs="+", type=Path, metavar="SHARD_DIR")
    return p


def _main(argv: list[str] | None) -> int:
    from bayling.data.pipeline import BuildOptions, build, merge, process_shard
    from bayling.data.plan import check_sources, make_plan, plan_text, require_sources
    from bayling.data.recipe import load_recipe

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "merge":
        args = merge_parser().parse_args(argv[1:])
        manifest = merge(args.shards, args.out, progress=not args.no_progress)
        _summary(args.out, manifest)
        return 0
    args = build_parser().parse_args(argv)
    # `--decontaminate A B key=value` : argparse gives the overrides to --decontaminate; hand them back.
    moved = [p for p in args.decontaminate if "=" in p and not Path(p).exists()]
    args.decontaminate = [p for p in args.decontaminate if p not in moved]
    args.overrides = moved + list(args.overrides)
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise ConfigError(f"unexpected argument {bad[0]!r} (overrides are key=value)")
    recipe_path = args.recipe if args.recipe is not None else DEMO_RECIPE
    out = args.out
    if out is None and not args.dry_run:
        if args.recipe is not None:
            raise ConfigError("--out is required with --recipe")
        out = DEMO_OUT
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.no_cross_lingual:
        overrides.append("cross_lingual=false")
    recipe = load_recipe(recipe_path, overrides)
    if args.decontaminate:
        recipe.decontaminate.paths += [str(Path(p).resolve()) for p in args.decontaminate]
    if args.json and not args.dry_run:
        raise ConfigError("--json goes with --dry-run")
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    if args.snapshots is not None and not Path(args.snapshots).is_dir():
        raise ConfigError("--snapshots folder not found", path=args.snapshots)
    if args.dry_run:
        plan = make_plan(recipe, args.snapshots)
        print(json.dumps(plan, indent=2, ensure_ascii=False) if args.json else plan_text(plan, PROG))
        return 0
    require_sources(check_sources(recipe, args.snapshots))
    opts = BuildOptions(skip_bad_records=args.skip_bad_records, tokenizer=args.tokenizer,
                        progress=not args.no_progress, workers=args.workers)
    if args.shard is not None:
        opts.shard = args.shard
        state = process_shard(recipe, opts, out)
        print(f"{PROG}: shard {args.shard[0]}/{args.shard[1]}: {state['kept']:,} records kept -> {out} "
              f"(combine all shards with `{PROG} merge --out DIR SHARD_DIR...`)")
        return 0
    manifest = build(recipe, opts, out)
    _summary(out, manifest)
    return 0


def _summary(out: Path, manifest: dict) -> None:
    """A few lines for the terminal; the full story is in DATA_CARD.md and manifest.json."""
    t, v, mix = manifest["train"], manifest["valid"], manifest["mix"]
    cats = ", ".join(f"{k} {n:,}" for k, n in t["by_category"].items())
    print(f"{PROG}: {t['records']:,} train ({cats}) + {v['records']:,} valid -> {out}")
    for line in mix["shortfalls"]:
        print(f"{PROG}: not enough data: {line}")
    print(f"{PROG}: see {out / 'DATA_CARD.md'}")


def main(argv: list[str] | None = None) -> int:
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
