"""Reports of a knowledge run: per-benchmark summary, results.csv, summary.md (with lm-eval's group scores) and
scores.png. Kept apart from running lm-eval (bayling.eval.knowledge) so each module stays readable."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from bayling.atomic import atomic_write_text, atomic_write_with
from bayling.eval import lm_tasks

PRIMARY = {"okapi_arc": "acc_norm", "okapi_hellaswag": "acc_norm", "arc_challenge": "acc_norm",
           "arc_easy": "acc_norm", "hellaswag": "acc_norm", "mgsm": "exact_match"}
#: How each lm-eval output type is scored, for the summary's one-line protocol description.
SCORING = {"multiple_choice": "log-likelihood scoring (multiple choice)",
           "loglikelihood": "log-likelihood scoring", "generate_until": "greedy generation + answer filters",
           "loglikelihood_rolling": "rolling log-likelihood (perplexity)"}
#: Above this many benchmarks the plot shows one bar per benchmark instead of one panel each.
MAX_PANELS = 8


def primary_metric(bench: str, metrics: dict[str, float]) -> str | None:
    want = PRIMARY.get(bench, "acc")
    if want in metrics:
        return want
    names = [k for k in metrics if not k.endswith("_stderr")]
    return names[0] if names else None


def summarize(task_rows: dict[str, Any]) -> dict[str, Any]:
    """Per benchmark: its primary metric per language and the unweighted mean over languages.

    English MMLU's 57 subjects collapse into one 'en' entry weighted by size, like lm-eval's group score.
    """
    benches: dict[str, dict[str, Any]] = {}
    for row in task_rows.values():
        metric = primary_metric(row["benchmark"], row["metrics"])
        if metric is None:
            continue
        b = benches.setdefault(row["benchmark"], {"metric": metric, "languages": {}})
        lang = b["languages"].setdefault(row["language"] or "-", {"sum": 0.0, "n": 0, "tasks": 0})
        lang["sum"] += row["metrics"].get(metric, 0.0) * max(row["n"], 1)
        lang["n"] += max(row["n"], 1)
        lang["tasks"] += 1
    for b in benches.values():
        b["languages"] = {k: {"score": v["sum"] / v["n"], "n": v["n"], "tasks": v["tasks"]}
                          for k, v in sorted(b["languages"].items())}
        scores = [v["score"] for v in b["languages"].values()]
        b["mean"] = sum(scores) / len(scores)
    return dict(sorted(benches.items()))


def write_reports(doc: dict[str, Any], out_dir: Path) -> None:
    """results.json, results.csv, summary.md and scores.png, each written whole then renamed."""
    from bayling.eval.checks import prepare_out_dir

    prepare_out_dir(out_dir)  # the folder rule: absent, empty, or written by bayling-eval before
    atomic_write_text(out_dir / "results.json", json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(out_dir / "results.csv", _csv(doc))
    atomic_write_text(out_dir / "summary.md", _markdown(doc))
    plot_languages(doc, out_dir / "scores.png")


def _csv(doc: dict[str, Any]) -> str:
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["task", "benchmark", "language", "metric", "value", "stderr", "n", "num_fewshot"])
    for name, row in doc["tasks"].items():
        for metric, value in row["metrics"].items():
            if metric.endswith("_stderr"):
                continue
            stderr = row["metrics"].get(f"{metric}_stderr")
            w.writerow([name, row["benchmark"], row["language"], metric, f"{value:.6f}",
                        "" if stderr is None else f"{stderr:.6f}", row["n"], row["num_fewshot"]])
    return buf.getvalue()


def _markdown(doc: dict[str, Any]) -> str:
    s = doc["settings"]
    kinds = sorted({row.get("output_type") or "?" for row in doc["tasks"].values()})
    scoring = ", ".join(SCORING.get(k, k) for k in kinds) or "no tasks"
    lines = [f"# Knowledge evaluation ({doc['suite']})", "",
             f"- model: `{doc['model']}` on {doc['model_info']['device']} ({doc['model_info']['dtype']})",
             f"- lm-eval {doc['lm_eval_version']}, {scoring}, no chat template, "
             f"limit {s['limit'] or 'none'}, few-shot override {s['num_fewshot_override']}",
             f"- created {doc['created']}", ""]
    if doc["benchmarks"]:
        lines += ["## Benchmarks (mean over languages)", "", "| benchmark | metric | languages | mean |",
                  "|---|---|---:|---:|"]
        for name, b in doc["benchmarks"].items():
            lines.append(f"| {name} | {b['metric']} | {len(b['languages'])} | {b['mean']:.4f} |")
        lines.append("")
    if doc.get("groups"):
        lines += ["## Groups (lm-eval's own aggregate)", "", "| group | metric | score | ± stderr |",
                  "|---|---|---:|---:|"]
        for name, g in doc["groups"].items():
            for metric, value in g["metrics"].items():
                if metric.endswith("_stderr"):
                    continue
                err = g["metrics"].get(f"{metric}_stderr")
                err_s = f"{err:.4f}" if isinstance(err, (int, float)) else "-"
                lines.append(f"| {name} | {metric} | {value:.4f} | {err_s} |")
        lines.append("")
    lines += ["## Tasks", "", "| task | language | metric | score | ± stderr | n | shots |",
              "|---|---|---|---:|---:|---:|---:|"]
    for name, row in doc["tasks"].items():
        metric = primary_metric(row["benchmark"], row["metrics"])
        if metric is None:
            continue
        err = row["metrics"].get(f"{metric}_stderr")
        err_s = f"{err:.4f}" if err is not None else "-"
        lines.append(f"| {name} | {row['language'] or '-'} | {metric} | {row['metrics'][metric]:.4f} | "
                     f"{err_s} | {row['n']} | {row['num_fewshot']} |")
    if doc["skipped"]:
        lines += ["", "## Skipped: data not reachable", ""]
        by_dataset: dict[str, list[str]] = {}
        for name, info in doc["skipped"].items():
            by_dataset.setdefault(info["dataset"] or "", []).append(name)
        for dataset, names in by_dataset.items():
            if dataset:
                lines.append(f"- `{dataset}` ({len(names)} tasks: {', '.join(names)}): {lm_tasks.supply_hint(dataset)}")
            else:
                lines += [f"- `{n}`: {doc['skipped'][n]['reason']}" for n in names]
    return "\n".join(lines) + "\n"


def plot_languages(doc: dict[str, Any], path: Path) -> None:
    """Readable at any size: one bar panel per benchmark (languages on x) for a few benchmarks; with many
    benchmarks (e.g. a user's 60-subject task folder without labels), one horizontal bar per benchmark mean.
    The figure is capped at 30 x 24 inches, so no run produces an image thousands of pixels tall."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = doc["benchmarks"] or {"(no results)": {"metric": "", "languages": {}, "mean": 0.0}}
    if len(benches) > MAX_PANELS:
        names = list(benches)
        fig, ax = plt.subplots(figsize=(9.0, min(24.0, 0.25 * len(names) + 1.5)))
        ax.barh(range(len(names)), [benches[n]["mean"] for n in names], color="tab:blue")
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names, fontsize=6 if len(names) > 40 else 8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("mean of the primary metric over languages")
    else:
        most = max(len(b["languages"]) for b in benches.values())
        fig, axes = plt.subplots(len(benches), 1, figsize=(min(30.0, max(6.0, 0.3 * most + 2)),
                                                           min(24.0, 2.8 * len(benches))), squeeze=False)
        for ax, (name, b) in zip(axes[:, 0], benches.items()):
            langs = list(b["languages"])
            ax.bar(range(len(langs)), [b["languages"][x]["score"] for x in langs], color="tab:blue")
            ax.axhline(b["mean"], color="tab:red", linestyle="--", linewidth=1, label=f"mean {b['mean']:.3f}")
            ax.set_ylim(0, 1)
            ax.set_ylabel(b["metric"])
            ax.set_title(name)
            ax.set_xticks(range(len(langs)))
            ax.set_xticklabels(langs, rotation=90 if len(langs) > 30 else 60, fontsize=6 if len(langs) > 40 else 8)
            if langs:
                ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"{doc['suite']}: {Path(str(doc['model'])).name}")
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
