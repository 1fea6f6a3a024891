"""The human side of a data directory: DATA_CARD.md and languages.png, both made from manifest.json.

They are derived from the manifest only, so they can never disagree with it, and they hold no
timestamps, so a rebuild with the same inputs and seed reproduces them byte for byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _fmt(n: int | float) -> str:
    return f"{n:,}" if isinstance(n, int) else f"{n:.3g}"


def _language_names(codes: list[str]) -> dict[str, str]:
    """English names from the registry when it knows the code; the code itself otherwise."""
    try:
        from bayling.languages import get_language
    except ImportError:  # the registry is part of the package; stay usable without it
        return {c: c for c in codes}
    names = {}
    for c in codes:
        try:  # a language, or a pair label such as eng_Latn-zho_Hans
            names[c] = " <-> ".join(get_language(part).name_en for part in c.split("-"))
        except Exception:
            names[c] = c
    return names


def data_card(manifest: dict[str, Any]) -> str:
    """Markdown summary of what was built, what was dropped and why, and what fell short."""
    m = manifest
    train, valid, mix = m["train"], m["valid"], m["mix"]
    out = [f"# Data card: {m['recipe']['name']}", ""]
    out += [
        f"Built by `bayling-build-data` (bayling {m['package_versions'].get('bayling', '?')}) with seed "
        f"{m['seed']}; cross-lingual arm {'on' if m['cross_lingual'] else 'OFF (ablation)'}. "
        f"Machine-readable details: manifest.json. The same inputs and seed rebuild this directory byte for byte.",
        "",
        f"- Training records: **{_fmt(train['records'])}** in {len(m['files']['train'])} shard(s); "
        f"validation records: **{_fmt(valid['records'])}** (distinct records never seen in training).",
        f"- Characters (train): {_fmt(train['characters'])}"
        + (f"; tokens (train, {m['tokenizer']}): {_fmt(train['tokens'])}" if train.get("tokens") is not None else ""),
        "",
        "## Mix: quota against what the sources gave",
        "",
    ]
    rows = []
    for cat in mix["categories"]:
        rows.append([cat["name"], f"{cat['proportion']:.3f}", _fmt(cat["quota"]), _fmt(cat["available"]),
                     _fmt(cat["reached"]), _fmt(cat["shortfall"])])
    out += _table(["category", "proportion", "quota", "unique available", "reached", "shortfall"], rows)
    out.append("")
    if mix["shortfalls"]:
        out += ["**Not enough data.** " + " ".join(mix["shortfalls"]), ""]
    else:
        out += ["Every category reached its quota.", ""]
    out += [f"Target total {_fmt(mix['target_total'])}, reached {_fmt(mix['reached_total'])}; "
            f"cross-lingual temperature alpha={mix['temperature_alpha']}, upsampling cap {mix['upsample_cap']}x.", ""]
    out += _cross_lingual_section(mix)
    out += ["## Counts (train)", ""]
    for key in ("by_category", "by_source", "by_task", "by_direction"):
        counts = train[key]
        if counts:
            out += [f"**{key[3:]}**: " + ", ".join(f"{k} {_fmt(v)}" for k, v in counts.items()), ""]
    out += _pipeline_section(m)
    out += _language_section(m)
    out += _groups_section(m)
    out += ["## Inputs", ""]
    out += _table(["source", "kind", "path", "sha256"],
                  [[i["name"], i["kind"], f"`{i['path']}`", (i["sha256"] or "hub")[:16]] for i in m["inputs"]])
    out += ["", "Languages per example (log scale): languages.png; per-language accounting: accounting.png.", ""]
    return "\n".join(out)


def _cross_lingual_section(mix: dict[str, Any]) -> list[str]:
    cl = [c for c in mix["categories"] if c["name"] == "cross_lingual"]
    if not cl or not cl[0]["groups"]:
        return []
    groups = cl[0]["groups"]
    names = _language_names([g["name"] for g in groups])
    rows = [[g["name"], names[g["name"]], _fmt(g["available"]), f"{g['share']:.4f}", _fmt(g["selected"]),
             f"{g['upsample_factor']:.2f}"] for g in groups]
    out = ["## Cross-lingual arm per language (temperature sampling)", ""]
    out += _table(["group", "language", "unique available", "share", "selected", "selected / available"], rows)
    return out + [""]


def _pipeline_section(m: dict[str, Any]) -> list[str]:
    p = m["pipeline"]
    out = ["## What was dropped, and why", ""]
    rows = [["read (records or rows)", _fmt(sum(p["read"].values()))],
            ["bad input records (rejects.jsonl)", _fmt(sum(p["bad_records"].values()))],
            ["synthesised translation records", _fmt(p["synthesised"])]]
    rows += [[f"filter: {k}", _fmt(v)] for k, v in p["filtered"].items()]
    rows += [[f"dedup: {k}", _fmt(v)] for k, v in p["dedup"].items()]
    rows += [[f"decontamination: {k}", _fmt(v)] for k, v in p["decontaminated"].items()]
    rows += [["unique records kept", _fmt(p["unique_kept"])]]
    out += _table(["stage", "records"], rows)
    return out + [""]


def _language_section(m: dict[str, Any]) -> list[str]:
    """Per-language accounting: where every row and record of each language went (nothing uncounted)."""
    langs = m.get("languages") or {}
    if not langs:
        return []
    names = _language_names(list(langs))
    rows = []
    for code, c in langs.items():
        filt = sum(c["filtered"].values())
        top = max(c["filtered"].items(), key=lambda kv: kv[1])[0] if filt else ""
        rows.append([code, names[code], _fmt(c["rows_read"]), _fmt(sum(c["synthesis_dropped"].values())),
                     _fmt(c["records"]), _fmt(filt) + (f" ({top})" if top else ""), _fmt(c["decontaminated"]),
                     _fmt(sum(c["dedup"].values())), _fmt(c["unique_kept"]), _fmt(c["not_selected"]),
                     _fmt(c["train"]), _fmt(c["valid"])])
    out = ["## Per language: read, dropped, kept", "",
           "Group = zh/en for instruction records, else the record's non-pivot language (en<->zh pairs: "
           "eng_Latn-zho_Hans). records = filtered + decontaminated + dedup + unique kept; unique kept = distinct "
           "in train + valid + not selected. Every drop by reason is in manifest.json `languages`.", ""]
    out += _table(["group", "language", "rows read", "synthesis dropped", "records", "filtered (top reason)",
                   "decontaminated", "dedup", "unique kept", "not selected", "train (with repeats)", "valid"], rows)
    return out + [""]


def _groups_section(m: dict[str, Any]) -> list[str]:
    """The recipe's corpus choices ("these languages, from this corpus"); the reasons are the recipe's comments."""
    groups = m["recipe"].get("parallel_groups") or {}
    if not groups:
        return []
    rows = [[name, f"`{g['path']}`", ", ".join(g["langs"]), ", ".join(g["exclude"]) or "-",
             f"{g['code']} / `{g['config']}`", _fmt(g["limit"]) if g["limit"] else "all", g["pivot_with"] or "-",
             "on" if g["enabled"] else "off"]
            for name, g in groups.items()]
    out = ["## Corpus choices (recipe `parallel_groups`)", "",
           "Each group links its languages to the pivot through one corpus; a language outside `corpus_langs` is "
           "left to the next group. Why each corpus was chosen (and what is assumed) is written in the recipe.", ""]
    out += _table(["group", "corpus", "languages", "excluded", "code / config", "rows per language",
                   "X<->zh via pivot join with", "enabled"], rows)
    return out + [""]


def accounting_plot(languages: dict[str, dict[str, Any]], path: Path) -> None:
    """Per language: records made vs each kind of drop vs written to train (log scale), one bar group each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    items = sorted(languages.items(), key=lambda kv: (-kv[1]["records"], kv[0]))
    series = {"records": [c["records"] for _, c in items],
              "filtered": [sum(c["filtered"].values()) for _, c in items],
              "dedup + decontaminated": [sum(c["dedup"].values()) + c["decontaminated"] for _, c in items],
              "train (distinct)": [c["train_distinct"] for _, c in items]}
    width = max(6.0, 0.3 * len(items) + 2)
    fig, ax = plt.subplots(figsize=(width, 4.5), dpi=100)
    x = np.arange(len(items))
    w = 0.2
    for k, (label, values) in enumerate(series.items()):
        ax.bar(x + (k - 1.5) * w, [max(v, 0.5) for v in values], w, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels([k for k, _ in items], rotation=90, fontsize=8 if len(items) <= 30 else 6)
    ax.set_yscale("log")
    ax.set_ylabel("records (log scale)")
    ax.set_title("Per-language accounting: made, dropped, kept", fontsize=11)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def languages_plot(by_language: dict[str, int], path: Path) -> None:
    """Bar chart of training examples per language, log scale (Agg backend: works headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(by_language.items(), key=lambda kv: (-kv[1], kv[0]))
    width = max(6.0, 0.18 * len(items) + 2)
    fig, ax = plt.subplots(figsize=(width, 4), dpi=100)
    if items:
        ax.bar(range(len(items)), [v for _, v in items], color="#3b6ea8")
        ax.set_xticks(range(len(items)))
        ax.set_xticklabels([k for k, _ in items], rotation=90, fontsize=8 if len(items) <= 30 else 6)
        ax.set_yscale("log")
    ax.set_ylabel("training examples (log scale)")
    ax.set_title("Training examples per language", fontsize=11)
    ax.set_xlabel("a record counts once for each language it contains", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
