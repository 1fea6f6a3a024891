"""``bayling-eval compare RUN_A RUN_B [...]``: per-direction deltas against the first run, table + plot.

A delta is only computed between scores with the same metric name and sacrebleu signature; otherwise the
cell says why it is missing (e.g. one run had spBLEU, the other fell back to 13a), never a silent mix.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from bayling.atomic import atomic_write_text, atomic_write_with
from bayling.errors import DataError, read_json


def load_run(path: str) -> tuple[str, dict[str, Any]]:
    """A run directory (or its results.json) -> (label, results)."""
    p = Path(path)
    f = p / "results.json" if p.is_dir() else p
    if not f.is_file():
        raise DataError("no results.json (is this a bayling-eval --out directory?)", path=f)
    data = read_json(f, "results.json")
    if not isinstance(data, dict) or not isinstance(data.get("directions"), list):
        raise DataError("results.json has no 'directions' list (not a bayling-eval translation run)", path=f,
                        field="directions")
    for i, d in enumerate(data["directions"]):
        scores = d.get("scores") if isinstance(d, dict) else None
        ok = isinstance(scores, dict) and isinstance(d.get("direction"), str) and all(
            isinstance(m, dict) and isinstance(m.get("score"), (int, float)) and "name" in m and "signature" in m
            for m in scores.values())
        if not ok:
            raise DataError(f"direction #{i + 1} is not a bayling-eval record (needs direction and scores with "
                            "name, score, signature)", path=f, field="directions")
    label = (p if p.is_dir() else p.parent).name or str(p)
    return label, data


def compare_rows(runs: list[tuple[str, dict[str, Any]]], metric: str) -> list[dict[str, Any]]:
    """One row per direction present in any run: each run's score and its delta to the first run."""
    by_run = [{d["direction"]: d for d in data["directions"]} for _, data in runs]
    names = list(dict.fromkeys(n for run in by_run for n in run))
    rows = []
    for name in names:
        base = by_run[0].get(name)
        row: dict[str, Any] = {"direction": name}
        for (label, _), recs in zip(runs, by_run):
            rec = recs.get(name)
            sc = rec["scores"].get(metric) if rec else None
            row[label] = sc["score"] if sc else None
            row[f"{label}:metric"] = sc["name"] if sc else None
            bsc = base["scores"].get(metric) if base else None
            if label == runs[0][0]:
                continue
            if sc is None or bsc is None:
                row[f"delta:{label}"] = None
                row[f"why:{label}"] = "missing in one run"
            elif (sc["name"], sc["signature"]) != (bsc["name"], bsc["signature"]):
                row[f"delta:{label}"] = None
                row[f"why:{label}"] = f"metric differs ({bsc['name']} vs {sc['name']})"
            else:
                row[f"delta:{label}"] = round(sc["score"] - bsc["score"], 2)
        rows.append(row)
    return rows


def to_markdown(runs: list[tuple[str, dict[str, Any]]], rows: list[dict[str, Any]], metric: str) -> str:
    labels = [lb for lb, _ in runs]
    head = ["direction"] + labels + [f"Δ {lb}" for lb in labels[1:]]
    lines = [f"# Comparison ({metric}; Δ = run − {labels[0]})", "",
             "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    deltas: dict[str, list[float]] = {lb: [] for lb in labels[1:]}
    for r in rows:
        cells = [r["direction"]] + ["" if r[lb] is None else f"{r[lb]:.2f}" for lb in labels]
        for lb in labels[1:]:
            d = r.get(f"delta:{lb}")
            cells.append(f"{d:+.2f}" if d is not None else f"n/a ({r.get(f'why:{lb}')})")
            if d is not None:
                deltas[lb].append(d)
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""]
    for lb, ds in deltas.items():
        if ds:
            wins = sum(d > 0 for d in ds)
            lines.append(f"- {lb}: mean Δ {sum(ds) / len(ds):+.2f} over {len(ds)} directions, better on {wins}")
    return "\n".join(lines) + "\n"


def to_csv(runs: list[tuple[str, dict[str, Any]]], rows: list[dict[str, Any]]) -> str:
    labels = [lb for lb, _ in runs]
    fields = ["direction"] + labels + [f"{lb}:metric" for lb in labels]
    fields += [f"delta:{lb}" for lb in labels[1:]] + [f"why:{lb}" for lb in labels[1:]]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
    return buf.getvalue()


def plot(runs: list[tuple[str, dict[str, Any]]], rows: list[dict[str, Any]], path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [lb for lb, _ in runs]
    names = [r["direction"] for r in rows]
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(names) * len(labels) + 2), 4.5))
    for k, lb in enumerate(labels):
        xs = [i + k * width for i, r in enumerate(rows) if r[lb] is not None]
        ax.bar(xs, [r[lb] for r in rows if r[lb] is not None], width=width, label=lb)
    ax.set_xticks([i + width * (len(labels) - 1) / 2 for i in range(len(names))])
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per direction")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)


def compare(run_paths: list[str], out: Path, metric: str = "chrf") -> dict[str, Path]:
    """Write compare.md, compare.csv and compare.png into ``out``; returns their paths."""
    if len(run_paths) < 2:
        raise DataError("compare needs at least two runs")
    runs = [load_run(p) for p in run_paths]
    labels = [lb for lb, _ in runs]
    if len(set(labels)) != len(labels):  # two runs in folders of the same name: use full paths
        runs = [(str(Path(p)), data) for p, (_, data) in zip(run_paths, runs)]
    rows = compare_rows(runs, metric)
    from bayling.eval.checks import prepare_out_dir

    prepare_out_dir(out)
    paths = {"md": out / "compare.md", "csv": out / "compare.csv", "png": out / "compare.png"}
    atomic_write_text(paths["md"], to_markdown(runs, rows, metric))
    atomic_write_text(paths["csv"], to_csv(runs, rows))
    plot(runs, rows, paths["png"], metric)
    return paths
