"""Reports of a translation run: results.json (machine), results.csv, summary.md (people), scores.png.

Averages are only taken over scores that carry the same metric name: if some directions fell back from
spBLEU to 13a BLEU, the summary shows the two groups separately instead of mixing them.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bayling.atomic import atomic_write_text, atomic_write_with

SCHEMA_VERSION = 1


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("sacrebleu", "transformers", "torch", "bayling"):
        try:
            out[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            pass
    return out


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 2) if xs else None


def averages(records: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """Mean score per group (direction family or tier) and metric name, with the count averaged."""
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        names = rec.get("families", []) if key == "family" else [rec.get("tier") or "unknown"]
        for g in names:
            for m in rec["scores"].values():
                groups[g][m["name"]].append(m["score"])
    return {g: {name: {"mean": _mean(v), "n": len(v)} for name, v in sorted(ms.items())}
            for g, ms in sorted(groups.items())}


def build_results(suite: str, records: list[dict[str, Any]], config: dict[str, Any],
                  model_path: str | None) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "suite": suite,
        "model": model_path,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config,
        "versions": _versions(),
        "directions": records,
        "averages": {"by_family": averages(records, "family"), "by_tier": averages(records, "tier")},
    }


CSV_FIELDS = ["direction", "src", "tgt", "families", "tier", "n", "bleu_metric", "bleu", "chrf_metric", "chrf",
              "comet", "bleu_note", "bleu_signature", "chrf_signature"]


def to_csv(records: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in records:
        s = r["scores"]
        w.writerow({
            "direction": r["direction"], "src": r["src"], "tgt": r["tgt"], "families": "+".join(r["families"]),
            "tier": r.get("tier"), "n": r["n"], "bleu_metric": s["bleu"]["name"], "bleu": s["bleu"]["score"],
            "chrf_metric": s["chrf"]["name"], "chrf": s["chrf"]["score"],
            "comet": s.get("comet", {}).get("score", ""), "bleu_note": s["bleu"].get("note", ""),
            "bleu_signature": s["bleu"]["signature"], "chrf_signature": s["chrf"]["signature"],
        })
    return buf.getvalue()


def _avg_table(title: str, avg: dict[str, dict[str, Any]]) -> list[str]:
    metrics = sorted({m for g in avg.values() for m in g})
    lines = [f"## Averages by {title}", "", "| " + title + " | " + " | ".join(metrics) + " |",
             "|---" * (len(metrics) + 1) + "|"]
    for g, ms in avg.items():
        cells = [f"{ms[m]['mean']:.2f} (n={ms[m]['n']})" if m in ms else "" for m in metrics]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return lines + [""]


def summary_md(results: dict[str, Any]) -> str:
    recs = results["directions"]
    cfg = results["config"]
    lines = [f"# bayling-eval: {results['suite']}", "",
             f"- model: `{results['model']}`", f"- created: {results['created']}",
             f"- beams {cfg.get('beams')}, max new tokens {cfg.get('max_new_tokens')}, "
             f"repetition penalty {cfg.get('repetition_penalty', 1.0)}, "
             f"limit {cfg.get('limit') or 'none'}, {len(recs)} directions", ""]
    lines += _avg_table("family", results["averages"]["by_family"])
    if results["suite"] == "flores":
        lines += _avg_table("tier", results["averages"]["by_tier"])
    notes = sorted({r["scores"]["bleu"]["note"] for r in recs if r["scores"]["bleu"].get("note")})
    if notes:
        lines += ["## Metric notes (fallbacks, recorded per direction in results.json)", ""]
        lines += [f"- {n}" for n in notes] + [""]
    sigs = sorted({(m["name"], m["signature"]) for r in recs for m in r["scores"].values()})
    lines += ["## Signatures", ""] + [f"- {n}: `{s}`" for n, s in sigs] + [""]
    lines += ["## Per direction", "", "| direction | families | tier | n | BLEU metric | BLEU | chrF |",
              "|---|---|---|---|---|---|---|"]
    for r in recs:
        s = r["scores"]
        lines.append(f"| {r['direction']} | {'+'.join(r['families'])} | {r.get('tier')} | {r['n']} | "
                     f"{s['bleu']['name']} | {s['bleu']['score']:.2f} | {s['chrf']['score']:.2f} |")
    return "\n".join(lines) + "\n"


def plot_scores(records: list[dict[str, Any]], path: Path, metric: str = "chrf") -> None:
    """Per-language scores: one panel per direction family, languages on the x axis (readable at 100+)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = sorted({f for r in records for f in r["families"]})
    langs = sorted({r["x_lang"] for r in records})
    name = records[0]["scores"][metric]["name"]
    width = max(6.0, min(30.0, 0.2 * len(langs) + 2))
    fig, axes = plt.subplots(len(fams), 1, figsize=(width, 2.4 * len(fams) + 0.8), squeeze=False, sharex=True)
    for ax, fam in zip(axes[:, 0], fams):
        vals = {r["x_lang"]: r["scores"][metric]["score"] for r in records if fam in r["families"]}
        ax.bar(range(len(langs)), [vals.get(lg, float("nan")) for lg in langs], color="tab:blue")
        mean = sum(vals.values()) / len(vals)
        ax.axhline(mean, color="tab:red", lw=0.8, ls="--")
        ax.set_ylabel(f"{fam}\n{name}", fontsize=8)
        ax.set_title(f"{fam}: mean {mean:.2f} over {len(vals)} languages", fontsize=9)
    axes[-1, 0].set_xticks(range(len(langs)))
    axes[-1, 0].set_xticklabels(langs, rotation=90, fontsize=6 if len(langs) > 40 else 8)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)


def write_reports(out: Path, results: dict[str, Any]) -> None:
    """results.json, results.csv, summary.md and scores.png, each written atomically."""
    atomic_write_text(out / "results.json", json.dumps(results, ensure_ascii=False, indent=1))
    atomic_write_text(out / "results.csv", to_csv(results["directions"]))
    atomic_write_text(out / "summary.md", summary_md(results))
    if results["directions"]:
        plot_scores(results["directions"], out / "scores.png")
