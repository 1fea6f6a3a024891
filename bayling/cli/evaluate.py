"""``bayling-eval``: translation suites (FLORES, WMT22), knowledge suites (lm-eval), ``score`` and ``compare``.

    bayling-eval --suite flores --model DIR --out DIR [--langs ...] [--directions ...] [--flores-dir DIR]
    bayling-eval --suite wmt22 --model DIR --wmt-dir DIR --out DIR
    bayling-eval --suite knowledge|english --model DIR --out DIR [--tasks ...] [--task-dir DIR]
    bayling-eval score --hyp FILE --ref FILE [--ref FILE2] --tgt-lang L
    bayling-eval compare RUN_A RUN_B [...] --out DIR
    bayling-eval report RUN [RUN...] --out DIR

Settings come from defaults < ``--config FILE.yaml`` < ``key=value`` < flags; bad input is one line on
stderr and exit code 2 (see bayling.cli.run_cli).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from bayling.cli import run_cli
from bayling.config import deep_merge, dump_yaml, from_dict, load_yaml, parse_overrides, to_dict
from bayling.errors import ConfigError
from bayling.eval.config import SUITES, EvalConfig

PROG = "bayling-eval"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as a ConfigError (one line, exit 2) instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{message} (see {self.prog} --help)")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def run_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Evaluate a model: translation (FLORES, WMT22) or knowledge suites. "
                "Subcommands: `score` (score existing outputs), `compare` (compare runs).")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. beams=1")
    p.add_argument("--config", help="YAML file with EvalConfig keys")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--suite", choices=list(SUITES),
                   help="; ".join(f"{name}: {suite.help}" for name, suite in SUITES.items()))
    p.add_argument("--model", help="model directory or hub id")
    p.add_argument("--out", help="output directory (results.json, summary.md, hyp/, ...)")
    p.add_argument("--langs", help="all | high | medium | low | comma list of codes (FLORES)")
    p.add_argument("--directions", type=_csv, help="comma list of en-x,x-en,zh-x,x-zh (default: all four)")
    p.add_argument("--flores-dir", dest="flores_dir", help="local FLORES devtest folder")
    p.add_argument("--flores", type=int, choices=[101, 200], help="FLORES release (default 101)")
    p.add_argument("--wmt-dir", dest="wmt_dir", help="local WMT22 folder (sources/, references/)")
    p.add_argument("--pairs", type=_csv, help="WMT22 pairs, e.g. en-zh,zh-en (default: all 14)")
    p.add_argument("--wmt-refs", dest="wmt_refs", choices=["first", "all"], help="reference A only, or all")
    p.add_argument("--limit", type=int, help="first N segments per direction / examples per task")
    p.add_argument("--beams", type=int, help="beam size (default 5, as in the paper)")
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, help="default 1024, as in the paper")
    p.add_argument("--repetition-penalty", dest="repetition_penalty", type=float,
                   help="penalise tokens already generated (>1; default 1.0 = none, as in the paper)")
    p.add_argument("--template", help="chat template when the model has none: bayling | bayling3 | llama2-chat")
    p.add_argument("--backend", choices=["auto", "hf", "vllm"])
    p.add_argument("--device")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--prompt-lang", dest="prompt_lang", choices=["auto", "en", "zh"])
    p.add_argument("--comet-model", dest="comet_model", help="local COMET checkpoint (needs unbabel-comet)")
    p.add_argument("--tasks", type=_csv, help="knowledge/english: lm-eval task names")
    p.add_argument("--task-dir", dest="task_dir",
                   help="knowledge: folder of local lm-eval YAML tasks. WARNING: lm-eval imports the folder's "
                   "Python files (`!function module.name` in a YAML runs that code): use only task folders "
                   "you trust")
    p.add_argument("--data-dir", dest="data_dir",
                   help="knowledge: folder of `hf download --repo-type dataset ID --local-dir DIR/ID` snapshots; "
                   "built-in tasks read them with their own prompts, few-shot splits and filters")
    p.add_argument("--num-fewshot", dest="num_fewshot", type=int)
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    return p


def resolve_config(args: argparse.Namespace) -> EvalConfig:
    """Defaults < --config YAML < key=value < explicit flags.

    The YAML is checked on its own first, so an error in it names the file; an error that only appears once
    the command line is merged in names the command line, never the YAML file."""
    data: dict[str, Any] = load_yaml(args.config) if args.config else {}
    if args.config:
        from_dict(EvalConfig, data, source=args.config)
    skip = {"overrides", "config", "print_config"}
    flags = {k: v for k, v in vars(args).items() if k not in skip and v is not None}
    cli = deep_merge(parse_overrides(args.overrides), flags)
    if not cli:
        return from_dict(EvalConfig, data, source=args.config)
    return from_dict(EvalConfig, deep_merge(data, cli), source="command line")


def cmd_run(argv: list[str]) -> int:
    args = run_parser().parse_intermixed_args(argv)
    cfg = resolve_config(args)
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    cfg.require("model", "out")
    from bayling.eval.checks import check_device, check_model_dir, prepare_out_dir

    out = prepare_out_dir(cfg.out, create=False)
    check_device(cfg.device)
    if cfg.template:
        from bayling.templates import get_template

        get_template(cfg.template)
    suite = SUITES[cfg.suite]
    cfg.require(*suite.required)
    if cfg.backend == "vllm" and suite.kind == "translation":
        from bayling.eval.generate import check_vllm

        check_vllm()
    from bayling.hub import resolve_model

    check_model_dir(resolve_model(cfg.model))  # a hub id is fetched (or refused offline) before any data work
    if suite.kind == "knowledge":
        return _run_knowledge(cfg, out)
    return _run_translation(cfg, out)


def _run_translation(cfg: EvalConfig, out: Path) -> int:
    from bayling.eval.generate import load_generator
    from bayling.eval.report import build_results, write_reports
    from bayling.eval.translate import RunLog, run_tasks

    suite_mod = importlib.import_module(SUITES[cfg.suite].module)
    from bayling.eval.checks import model_fingerprint, prepare_out_dir
    from bayling.hub import resolve_model

    tasks = suite_mod.build_tasks(cfg)  # every data file is checked before the model is loaded
    prepare_out_dir(out)
    log = RunLog(out, quiet=not cfg.progress)
    log(f"start suite={cfg.suite} model={cfg.model} directions={len(tasks)}")
    model_path = str(Path(cfg.model).resolve()) if Path(cfg.model).exists() else cfg.model
    # Resume keys on what the model IS (weights, config, tokenizer, chat template, generation config), not
    # on its path: a model retrained into the same folder must not reuse the old hypotheses.
    gen_settings = {"model_sha256": model_fingerprint(resolve_model(cfg.model), out), "template": cfg.template,
                    "beams": cfg.beams, "max_new_tokens": cfg.max_new_tokens}
    if cfg.repetition_penalty != 1.0:  # only when set, so runs made without it keep their fingerprints
        gen_settings["repetition_penalty"] = cfg.repetition_penalty
    records = run_tasks(
        tasks, out,
        make_generator=lambda: load_generator(cfg.model, backend=cfg.backend, template=cfg.template,
                                              device=cfg.device, dtype=cfg.dtype),
        gen_settings=gen_settings, batch_size=cfg.batch_size,
        score_settings=suite_mod.score_settings(cfg), log=log, progress=cfg.progress,
    )
    results = build_results(cfg.suite, records, to_dict(cfg), model_path)
    write_reports(out, results)
    log(f"done: {out / 'summary.md'}")
    for fam, ms in results["averages"]["by_family"].items():
        print(f"{fam}: " + ", ".join(f"{m} {v['mean']:.2f}" for m, v in ms.items()))
    print(f"results: {out / 'results.json'}  summary: {out / 'summary.md'}")
    return 0


def _run_knowledge(cfg: EvalConfig, out: Path) -> int:
    try:
        from bayling.eval.knowledge import run_knowledge_suite
    except ImportError as err:
        raise ConfigError(f"--suite {cfg.suite} is not available: {err}") from None
    result = run_knowledge_suite(cfg.model, cfg.suite, out, tasks=cfg.tasks, task_dir=cfg.task_dir,
                                 limit=cfg.limit, batch_size=cfg.batch_size, num_fewshot=cfg.num_fewshot,
                                 device=cfg.device, dtype=cfg.dtype, data_dir=cfg.data_dir)
    print(f"results: {out / 'results.json'}  summary: {out / 'summary.md'}")
    return 0 if result is not None else 1


def cmd_score(argv: list[str]) -> int:
    from bayling.atomic import atomic_write_text
    from bayling.eval.checks import check_output_file
    from bayling.eval.metrics import (
        bleu,
        check_lines,
        check_tokenizer,
        choose_bleu_tokenizer,
        chrf,
        read_lines,
        target_language,
    )

    p = _Parser(prog=f"{PROG} score", description="Score a hypothesis file against references "
                "(WMT22 convention: BLEU tokenize zh for Chinese, char for Japanese, 13a otherwise; chrF "
                "defaults). A target outside the language registry needs an explicit --tokenize.")
    p.add_argument("--hyp", required=True)
    p.add_argument("--ref", required=True, action="append", help="reference file (repeat for several)")
    p.add_argument("--tgt-lang", dest="tgt_lang", required=True, help="target language code (zh, deu_Latn, ...)")
    p.add_argument("--tokenize", help="override the BLEU tokenizer (13a, zh, intl, char, flores101, ...)")
    p.add_argument("--chrf-word-order", dest="word_order", type=int, default=0, choices=[0, 1, 2],
                   help="0 = chrF (WMT22), 2 = chrF++")
    p.add_argument("--json", dest="json_out", help="also write the scores as JSON to this file")
    args = p.parse_args(argv)
    if args.tokenize:
        check_tokenizer(args.tokenize)
    lang_code, lang = target_language(args.tgt_lang, explicit_tokenizer=args.tokenize)
    json_out = check_output_file(args.json_out, [args.hyp, *args.ref], "--json") if args.json_out else None
    hyps = read_lines(args.hyp, "hypothesis file")
    refs = [read_lines(r, "reference file") for r in args.ref]
    check_lines(hyps, refs, hyp_path=args.hyp, ref_paths=args.ref)
    tokenize, note = (args.tokenize, None) if args.tokenize else choose_bleu_tokenizer(lang, "wmt22")
    scores = {"bleu": bleu(hyps, refs, tokenize, note).to_dict(), "chrf": chrf(hyps, refs, args.word_order).to_dict()}
    for s in scores.values():
        print(f"{s['name']:>10} = {s['score']:6.2f}  {s['signature']}")
        if s.get("note"):
            print(f"{PROG} score: note: {s['note']}", file=sys.stderr)
    if json_out is not None:
        doc = {"hyp": args.hyp, "refs": args.ref, "tgt_lang": lang_code, "in_registry": lang is not None,
               "n": len(hyps), "scores": scores}
        atomic_write_text(json_out, json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
    return 0


def cmd_compare(argv: list[str]) -> int:
    from bayling.eval.compare import compare

    p = _Parser(prog=f"{PROG} compare", description="Per-direction score deltas of runs against the first.")
    p.add_argument("runs", nargs="+", help="bayling-eval --out directories (or their results.json)")
    p.add_argument("--out", required=True)
    p.add_argument("--metric", default="chrf", choices=["chrf", "bleu", "comet"])
    args = p.parse_args(argv)
    from bayling.eval.checks import prepare_out_dir

    prepare_out_dir(args.out, create=False)
    paths = compare(args.runs, Path(args.out), args.metric)
    print(paths["md"].read_text(encoding="utf-8"))
    print(f"written: {paths['md']}, {paths['csv']}, {paths['png']}")
    return 0


def cmd_report(argv: list[str]) -> int:
    from bayling.eval.checks import prepare_out_dir
    from bayling.eval.paper_tables import write_report

    p = _Parser(prog=f"{PROG} report", description="Paper-style tables from finished runs (the first is the "
                "base): translation runs -> mean BLEU/chrF++ per direction family, overall and per resource tier, "
                "best/worst languages, deltas; knowledge runs -> per-language table with the low-resource mean.")
    p.add_argument("runs", nargs="+", help="bayling-eval --out folders (or their results.json)")
    p.add_argument("--out", required=True, help="folder for report.md, report.csv, report.png")
    args = p.parse_args(argv)
    prepare_out_dir(args.out, create=False)
    paths = write_report(args.runs, Path(args.out))
    print(paths["md"].read_text(encoding="utf-8"))
    print(f"written: {paths['md']}, {paths['csv']}, {paths['png']}")
    return 0


SUBCOMMANDS = {"score": cmd_score, "compare": cmd_compare, "report": cmd_report}


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    return cmd_run(argv)


def main(argv: list[str] | None = None) -> int:
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
