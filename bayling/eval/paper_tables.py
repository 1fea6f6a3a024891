"""``bayling-eval report RUN [RUN...]``: the tables a paper shows, from finished runs' results.json.

Translation runs (FLORES/WMT22) give, per run: the mean BLEU and chrF++ per direction family (x-en, en-x,
x-zh, zh-x), overall and per resource tier, and the best/worst languages per family. Knowledge runs give a
per-language table (rows: languages, columns: benchmarks) with the mean over low-resource languages. The first
run is the base: every other run gets deltas against it.

WHY deltas only over shared directions/languages with the same metric signature: a base run on 100 languages
and a quick run on 3 have different averages for reasons that are not the model; a delta over what both scored,
with one tokenizer, is the figure a reader can trust (the count it was taken over is printed next to it).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from bayling.atomic import atomic_write_text, atomic_write_with
from bayling.errors import DataError, read_json

FAMILY_ORDER = ("x-en", "en-x", "x-zh", "zh-x", "x-x")
TIERS = ("high", "medium", "low")
METRICS = ("chrf", "bleu")
N_EXTREMES = 5


def load_runs(paths: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(label, results) per run folder (or results.json); labels are folder names, made unique."""
    runs = []
    for raw in paths:
        p = Path(raw)
        f = p / "results.json" if p.is_dir() else p
        if not f.is_file():
            raise DataError("no results.json (is this a bayling-eval --out folder?)", path=f)
        doc = read_json(f, "results.json")
        if not isinstance(doc, dict) or not (isinstance(doc.get("directions"), list)
                                             or isinstance(doc.get("tasks"), dict)):
            raise DataError("not a bayling-eval results.json (needs 'directions' or 'tasks')", path=f)
        runs.append(((p if p.is_dir() else p.parent).name or str(p), doc))
    labels = [lb for lb, _ in runs]
    if len(set(labels)) != len(labels):
        runs = [(str(Path(raw)), doc) for raw, (_, doc) in zip(paths, runs)]
    kinds = {"translation" if "directions" in doc else "knowledge" for _, doc in runs}
    if len(kinds) > 1:
        raise DataError("report needs runs of one kind: translation runs (FLORES/WMT22) or knowledge runs")
    return runs


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def translation_cells(doc: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, float]]:
    """(family, tier or 'all', metric) -> {direction: score}; the metric's name/signature must be uniform."""
    cells: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    for rec in doc["directions"]:
        for metric in METRICS:
            sc = rec["scores"].get(metric)
            if not sc:
                continue
            for fam in rec.get("families") or []:
                for tier in ("all", rec.get("tier") or "unknown"):
                    cells[(fam, tier, metric)][rec["direction"]] = sc["score"]
    return cells


def metric_names(doc: dict[str, Any], metric: str) -> list[str]:
    return sorted({rec["scores"][metric]["name"] for rec in doc["directions"] if metric in rec["scores"]})


def translation_report(runs: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[dict[str, Any]]]:
    base_label, base = runs[0]
    base_cells = translation_cells(base)
    rows: list[dict[str, Any]] = []
    md = ["# Translation report", "", f"Base run: `{base_label}`; Δ = run − base over the directions both scored.",
          ""]
    run_cells = [translation_cells(doc) for _, doc in runs]
    for metric in METRICS:
        names = {lb: metric_names(doc, metric) for lb, doc in runs}
        used = "; ".join(lb + ": " + (", ".join(n) or "-") for lb, n in names.items())
        md += [f"## {metric} ({used})", "",
               "| family | tier | " + " | ".join(lb for lb, _ in runs)
               + "".join(f" | Δ {lb}" for lb, _ in runs[1:]) + " |",
               "|---|---|" + "---:|" * (len(runs) * 2 - 1)]
        for fam in FAMILY_ORDER:
            for tier in ("all", *TIERS):
                key = (fam, tier, metric)
                vals = [cells.get(key, {}) for cells in run_cells]
                if not any(vals):
                    continue
                shown = [f"{m:.2f} (n={len(v)})" if (m := _mean(list(v.values()))) is not None else "-" for v in vals]
                deltas = []
                for (label, _), v in zip(runs[1:], vals[1:]):
                    shared = sorted(set(v) & set(base_cells.get(key, {})))
                    comparable = names[label] == names[base_label]
                    d = _mean([v[k] - base_cells[key][k] for k in shared]) if shared and comparable else None
                    deltas.append(f"{d:+.2f} (n={len(shared)})" if d is not None else
                                  "n/a (metric differs)" if not comparable else "n/a")
                    rows.append({"run": label, "kind": "delta", "group": fam, "subgroup": tier, "metric": metric,
                                 "value": d, "n": len(shared)})
                for (label, _), v in zip(runs, vals):
                    rows.append({"run": label, "kind": "mean", "group": fam, "subgroup": tier, "metric": metric,
                                 "value": _mean(list(v.values())), "n": len(v)})
                md.append(f"| {fam} | {tier} | " + " | ".join(shown) + "".join(f" | {d}" for d in deltas) + " |")
        md.append("")
    md += ["## Best and worst languages (chrf)", ""]
    for label, doc in runs:
        for fam in FAMILY_ORDER:
            recs = [r for r in doc["directions"] if fam in (r.get("families") or []) and "chrf" in r["scores"]]
            if len(recs) < 2:
                continue
            recs.sort(key=lambda r: r["scores"]["chrf"]["score"], reverse=True)
            fmt = ", ".join
            best = fmt(f"{r.get('x_name') or r['x_lang']} {r['scores']['chrf']['score']:.1f}" for r in recs[:N_EXTREMES])
            worst = fmt(f"{r.get('x_name') or r['x_lang']} {r['scores']['chrf']['score']:.1f}"
                        for r in recs[-N_EXTREMES:][::-1])
            md.append(f"- `{label}` {fam}: best {best}; worst {worst}")
    return md + [""], rows


def knowledge_table(doc: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """language -> benchmark -> {score, tier}; language is the registry code when known, else as labelled."""
    table: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    tiers = {row.get("language_code") or row.get("language"): row.get("tier") for row in doc["tasks"].values()}
    for bench, b in (doc.get("benchmarks") or {}).items():
        for lang, v in b["languages"].items():
            code = next((row.get("language_code") for row in doc["tasks"].values()
                         if row.get("benchmark") == bench and (row.get("language") or "-") == lang
                         and row.get("language_code")), None) or lang
            table[code][bench] = {"score": v["score"], "tier": tiers.get(code)}
    return table


def knowledge_report(runs: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[dict[str, Any]]]:
    tables = [(label, knowledge_table(doc)) for label, doc in runs]
    benches = sorted({b for _, t in tables for row in t.values() for b in row})
    rows: list[dict[str, Any]] = []
    md = ["# Knowledge report", "", f"Base run: `{runs[0][0]}`; scores are each benchmark's primary metric "
          "(accuracy-like, 0-1); Δ = run − base.", ""]
    for label, table in tables:
        md += [f"## {label}", "", "| language | tier | " + " | ".join(benches) + " | mean |",
               "|---|---|" + "---:|" * (len(benches) + 1)]
        for lang in sorted(table):
            vals = [table[lang].get(b, {}).get("score") for b in benches]
            present = [v for v in vals if v is not None]
            tier = next((c.get("tier") for c in table[lang].values() if c.get("tier")), None)
            md.append(f"| {lang} | {tier or '-'} | " + " | ".join("-" if v is None else f"{v:.4f}" for v in vals)
                      + f" | {_mean(present):.4f} |")
            for b, v in zip(benches, vals):
                if v is not None:
                    rows.append({"run": label, "kind": "score", "group": b, "subgroup": lang, "metric": "primary",
                                 "value": v, "n": 1})
        low = []
        for b in benches:
            xs = [row[b]["score"] for row in table.values() if b in row and row[b].get("tier") == "low"]
            low.append(_mean(xs))
            rows.append({"run": label, "kind": "low_resource_mean", "group": b, "subgroup": "low",
                         "metric": "primary", "value": _mean(xs), "n": len(xs)})
        md.append("| **low-resource mean** | low | " + " | ".join("-" if v is None else f"{v:.4f}" for v in low)
                  + " | |")
        md.append("")
    if len(tables) > 1:
        base = tables[0][1]
        md += ["## Δ against the base (mean over shared languages)", "", "| run | " + " | ".join(benches) + " |",
               "|---|" + "---:|" * len(benches)]
        for label, table in tables[1:]:
            cells = []
            for b in benches:
                shared = [lg for lg in table if b in table[lg] and b in base.get(lg, {})]
                d = _mean([table[lg][b]["score"] - base[lg][b]["score"] for lg in shared])
                cells.append("-" if d is None else f"{d:+.4f} (n={len(shared)})")
                rows.append({"run": label, "kind": "delta", "group": b, "subgroup": "all", "metric": "primary",
                             "value": d, "n": len(shared)})
            md.append(f"| {label} | " + " | ".join(cells) + " |")
        md.append("")
    return md, rows


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["run", "kind", "group", "subgroup", "metric", "value", "n"],
                       lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "value": "" if r["value"] is None else f"{r['value']:.6f}"})
    return buf.getvalue()


def plot(rows: list[dict[str, Any]], path: Path, kind: str) -> None:
    """Grouped bars: one group per family (translation, chrF, all tiers) or benchmark (knowledge, mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wanted = [r for r in rows if r["value"] is not None and (
        (kind == "translation" and r["kind"] == "mean" and r["metric"] == "chrf" and r["subgroup"] == "all")
        or (kind == "knowledge" and r["kind"] == "score"))]
    groups = list(dict.fromkeys(r["group"] for r in wanted))
    runs = list(dict.fromkeys(r["run"] for r in wanted))
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in wanted:
        values[(r["run"], r["group"])].append(r["value"])
    fig, ax = plt.subplots(figsize=(min(24.0, max(6.0, 0.6 * len(groups) * max(1, len(runs)) + 2)), 4.5))
    width = 0.8 / max(1, len(runs))
    for k, run in enumerate(runs):
        ys = [_mean(values.get((run, g), [])) or 0.0 for g in groups]
        ax.bar([i + k * width for i in range(len(groups))], ys, width=width, label=run)
    ax.set_xticks([i + width * (len(runs) - 1) / 2 for i in range(len(groups))])
    ax.set_xticklabels(groups, rotation=45 if len(groups) > 6 else 0, fontsize=8)
    ax.set_ylabel("chrF++ (mean over directions)" if kind == "translation" else "primary metric (mean)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)


def write_report(run_paths: list[str], out: Path) -> dict[str, Path]:
    """report.md, report.csv and report.png in ``out`` (the folder rule applies)."""
    from bayling.eval.checks import prepare_out_dir

    runs = load_runs(run_paths)
    kind = "translation" if "directions" in runs[0][1] else "knowledge"
    md, rows = translation_report(runs) if kind == "translation" else knowledge_report(runs)
    prepare_out_dir(out)
    paths = {"md": out / "report.md", "csv": out / "report.csv", "png": out / "report.png"}
    atomic_write_text(paths["md"], "\n".join(md) + "\n")
    atomic_write_text(paths["csv"], to_csv(rows))
    plot(rows, paths["png"], kind)
    return paths
