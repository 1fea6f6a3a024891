"""``report.json`` (machine-readable), ``report.md`` (the tables a person reads), ``fitness.png`` (PSO's
fitness per iteration): the human-readable summary next to the machine-readable one."""

from __future__ import annotations

import json
from pathlib import Path

from bayling.atomic import atomic_write_text


def mean(xs) -> float | None:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else None


def own_directions(doc: dict, split: str) -> dict[str, list[str]]:
    """Each expert's "own" directions: those where it beats every other expert and the base."""
    scores = doc[f"{split}_chrf"]
    experts = [n for n in scores if n.startswith("expert")]
    own: dict[str, list[str]] = {e: [] for e in experts}
    for d in scores.get("base", {}):
        best = max(experts, key=lambda e: scores[e][d])
        if scores[best][d] > scores["base"][d]:
            own[best].append(d)
    return own


def gain_kept(doc: dict, split: str, method: str) -> dict[str, float | None]:
    """Share of each expert's gain over the base (summed over its own directions) the method keeps."""
    scores = doc[f"{split}_chrf"]
    out = {}
    for e, dirs in own_directions(doc, split).items():
        gain = sum(scores[e][d] - scores["base"][d] for d in dirs)
        out[e] = (sum(scores[method][d] - scores["base"][d] for d in dirs) / gain) if gain > 0 else None
    return out


def family_means(scores: dict[str, float]) -> dict[str, float]:
    """Mean per direction family, from the language codes (X->en = target eng_Latn, en->X = source eng_Latn)."""
    fams: dict[str, list[float]] = {}
    for d, v in scores.items():
        src, tgt = d.split("-", 1)
        fam = "x-en" if tgt == "eng_Latn" else "en-x" if src == "eng_Latn" else \
            "x-zh" if tgt == "zho_Hans" else "zh-x" if src == "zho_Hans" else "other"
        fams.setdefault(fam, []).append(v)
    return {f: sum(v) / len(v) for f, v in sorted(fams.items())}


def fitness_words(doc: dict) -> str:
    """The fitness in words: its components, how many items each averages, and whether it is weighted."""
    weighted = "weighted" if doc["settings"]["fitness_weights"] else "unweighted"
    parts = []
    n_dirs = len(next(iter(doc["dev_chrf"].values()), {}))
    if n_dirs:
        parts.append(f"mean FLORES dev chrF++ over {n_dirs} directions")
    if doc.get("dev_lm_eval"):
        n_tasks = len(next(iter(doc["dev_lm_eval"].values())))
        parts.append(f"mean lm-eval validation score (percent) over {n_tasks} tasks")
    if len(parts) > 1:
        return f"{weighted} mean of two components, " + " and ".join(parts)
    return f"{parts[0] if parts else 'none'} ({weighted})"


def markdown(doc: dict) -> str:
    s = doc["settings"]
    lines = ["# bayling-merge report", "",
             f"Base: `{doc['base']}`; experts: " + ", ".join(f"`{e}`" for e in doc["experts"]) + ".",
             f"Merged model written to this folder: **{doc['final']}**. Fitness: {fitness_words(doc)}; "
             f"{doc['fitness_evaluations']} evaluations this run (the rest from the cache).", ""]
    if "pso" in doc:
        p = s["pso"]
        lines += [f"PSO: {len(doc['starting_models'])} particles ({', '.join(doc['starting_models'])}), "
                  f"{p['iterations']} iterations, w={p['inertia']}, c1={p['c1']}, c2={p['c2']}, random factors per "
                  f"{p['random_factors']}, formulation `{doc['formulation']}`, DARE density {s['dare_density']}, "
                  f"seed {p['seed']}.", ""]
        if doc["pso"]["gbest"] is not None:
            coef = ", ".join(f"{n} {c:+.3f}" for n, c in zip(doc["starting_models"], doc["pso"]["gbest"]))
            lines += [f"Global best = {coef}.", ""]
    has_test = any(doc["test_chrf"].values())
    fams = sorted({f for sc in doc["test_chrf"].values() for f in family_means(sc)}) if has_test else []
    head = "| model | dev fitness |" + ("".join(f" test {f} |" for f in fams) + " test mean |" if has_test else "")
    lines += ["## Methods (chrF++)", "", head, "|---|---:|" + "---:|" * ((len(fams) + 1) if has_test else 0)]
    for name, fit in doc["dev_fitness"].items():
        row = f"| {name} | {fit:.2f} |"
        if has_test:
            fm = family_means(doc["test_chrf"][name])
            row += "".join(f" {fm.get(f, float('nan')):.2f} |" for f in fams)
            row += f" {mean(doc['test_chrf'][name].values()):.2f} |"
        lines.append(row)
    if has_test:
        lines += ["", "## Share of each expert's test gain over the base kept (on the expert's own directions)", "",
                  "| model | " + " | ".join(own_directions(doc, "test")) + " |",
                  "|---|" + "---:|" * len(own_directions(doc, "test"))]
        for name in doc["test_chrf"]:
            if name.startswith("expert") or name == "base":
                continue
            kept = gain_kept(doc, "test", name)
            lines.append(f"| {name} | " + " | ".join("n/a" if v is None else f"{100 * v:.0f} %" for v in kept.values())
                         + " |")
        dirs = sorted(doc["test_chrf"]["base"])
        lines += ["", "## Test chrF++ per direction", "", "| direction | " + " | ".join(doc["test_chrf"]) + " |",
                  "|---|" + "---:|" * len(doc["test_chrf"])]
        for d in dirs:
            lines.append(f"| {d} | " + " | ".join(f"{sc[d]:.1f}" for sc in doc["test_chrf"].values()) + " |")
    if doc.get("dev_lm_eval"):
        tasks = sorted(next(iter(doc["dev_lm_eval"].values())))
        lines += ["", "## lm-eval on the validation split (fitness component, percent)", "",
                  "| model | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
        for name, sc in doc["dev_lm_eval"].items():
            lines.append(f"| {name} | " + " | ".join(f"{sc[t]:.1f}" for t in tasks) + " |")
    if "pso" in doc:
        lines += ["", "## PSO fitness per iteration", "", "| iteration | global best | particles |", "|---:|---:|---|"]
        for h in doc["pso"]["history"]:
            lines.append(f"| {h['iteration']} | {h['gbest_fitness']:.2f} | "
                         + ", ".join(f"{f:.2f}" for f in h["fitness"]) + " |")
        lines += ["", "Plot: `fitness.png`."]
    return "\n".join(lines) + "\n"


def plot_fitness(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = doc["pso"]["history"]
    its = [h["iteration"] for h in hist]
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, label in enumerate(doc["starting_models"]):
        ax.plot(its, [h["fitness"][i] for h in hist], marker=".", alpha=0.5, label=f"particle from {label}")
    ax.plot(its, [h["gbest_fitness"] for h in hist], color="black", linewidth=2.5, label="global best")
    for name, fit in doc["dev_fitness"].items():
        if name not in ("pso",) and not name.startswith(("base", "expert")):
            ax.axhline(fit, linestyle="--", linewidth=0.8, color="grey")
            ax.annotate(name, (its[-1], fit), fontsize=7, color="grey")
    ax.set_xlabel("PSO iteration")
    ax.set_ylabel("dev fitness")
    ax.set_title("PSO-Merging fitness (dashed: baselines)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out: Path, doc: dict) -> None:
    atomic_write_text(out / "report.json", json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(out / "report.md", markdown(doc))
    if "pso" in doc:
        plot_fitness(doc, out / "fitness.png")
