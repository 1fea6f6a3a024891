"""The plan of a build, made without reading any data: ``bayling-build-data --dry-run [--json]``.

Why: a paper-scale recipe has 100+ sources; a user must see *before* hours of work which are reachable
(local file, snapshot folder, hub), which are missing -- all of them at once, each with the command that
fetches it -- which languages each direction family covers, and how many records each category and
language is aiming for. The same source check runs before a real build, so a build never stops at the
first of 31 missing sources.

JSON keys (``--dry-run --json``; also documented in docs/data-builder.md):
``recipe`` (name), ``sources`` (list of {name, section, path, format, config, status, local, fetch}) where
status is ``local`` | ``snapshot`` | ``hub`` (will download) | ``missing``; ``missing`` (the names);
``fetch_commands`` (one per missing source); ``directions`` ({family: [language codes]});
``flores101`` ({languages, with_both_pivots, lacking: {code: [families]}}); ``targets`` ({total, categories:
{category: quota}, cross_lingual_languages: {code: estimated records}, estimate}).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bayling.data.recipe import Recipe
from bayling.data.sources import enabled_sources
from bayling.errors import ConfigError
from bayling.hub import is_offline, looks_like_hub_id

EN, ZH = "eng_Latn", "zho_Hans"


def fetch_command(hub_id: str, config: str, root: str | None, fetch: str = "") -> str:
    """The command that puts a source where ``--snapshots ROOT`` finds it."""
    target = f"{root or 'ROOT'}/{hub_id}"
    if fetch:
        return fetch.format(id=hub_id, config=config, dir=target)
    include = f' --include "{config}/*"' if config else ""
    return f"hf download {hub_id} --repo-type dataset{include} --local-dir {target}"


def check_sources(recipe: Recipe, snapshots: str | None = None) -> list[dict[str, Any]]:
    """Status of every enabled source; a snapshot found under ``snapshots`` replaces the hub id in the recipe
    (the original id is kept in ``hub_id`` for the manifest)."""
    from bayling.data.snapshot import data_files, snapshot_dir

    out = []
    for name, section, spec in enabled_sources(recipe):
        entry: dict[str, Any] = {"name": name, "section": section, "path": spec.path, "format": spec.format,
                                 "config": spec.config, "status": "missing", "local": None, "fetch": None}
        local = Path(spec.path).expanduser()
        hub = looks_like_hub_id(spec.path) and not local.exists()
        if not hub:
            if local.exists():
                entry.update(status="local", local=str(local))
            out.append(entry)
            continue
        entry["fetch"] = fetch_command(spec.path, spec.config, snapshots, getattr(spec, "fetch", ""))
        snap = snapshot_dir(spec.path, snapshots) if snapshots else None
        if snap is not None:
            try:
                data_files(snap, spec.config, spec.split, spec.files)
                entry.update(status="snapshot", local=str(snap))
                spec.hub_id = spec.path
                spec.path = str(snap)
            except Exception:  # the folder is there but this config/split is not: still missing
                entry["status"] = "missing"
        elif not is_offline() and not getattr(spec, "fetch", ""):  # a custom fetch: not loadable by `datasets`
            entry["status"] = "hub"
        out.append(entry)
    return out


def require_sources(statuses: list[dict[str, Any]]) -> None:
    """One error naming every missing source at once (a build must not stop at the first of 31)."""
    missing = [s for s in statuses if s["status"] == "missing"]
    if not missing:
        return
    local = [s for s in missing if not s["fetch"]]
    hub = [s for s in missing if s["fetch"]]
    parts = []
    if local:
        parts.append("input not found (neither a local path nor a hub dataset id): "
                     + ", ".join(f"{s['path']} ({s['section']}.{s['name']}.path)" for s in local))
    if hub:
        names = ", ".join(f"{s['name']} ({s['path']}{' ' + s['config'] if s['config'] else ''})" for s in hub)
        parts.append(f"{len(hub)} hub source(s) not reachable offline and not under --snapshots: {names}; "
                     f"`--dry-run` prints the command that fetches each (put them under one folder ROOT and "
                     f"pass --snapshots ROOT), or point one at a local copy: "
                     f"{hub[0]['section']}.{hub[0]['name']}.path=DIR")
    raise ConfigError("; ".join(parts))


def _source_langs(section: str, spec: Any) -> list[str]:
    from bayling.languages import get_language

    if section != "parallel":
        return []
    codes = list(spec.langs)
    if not codes and spec.format == "flores" and Path(spec.path).is_dir():
        from bayling.data.readers import flores_files

        try:
            codes = list(flores_files(spec.path, spec.split or "devtest"))
        except Exception:
            codes = []
    out = []
    for c in codes:
        try:
            out.append(get_language(c).code)
        except Exception as err:
            raise ConfigError(str(err), field=f"parallel.{spec.path}.langs") from None
    return out


def direction_coverage(recipe: Recipe) -> dict[str, list[str]]:
    """Languages per direction family that the recipe's parallel sources can make."""
    fams: dict[str, set[str]] = {d: set() for d in recipe.synth.directions}
    for _, section, spec in enabled_sources(recipe):
        langs = set(_source_langs(section, spec))
        if not langs:
            continue
        xs = langs - {EN, ZH}
        has_zh = ZH in langs or bool(getattr(spec, "pivot_with", ""))
        for fam in fams:
            a, b = fam.split("-")
            if {a, b} == {"en", "zh"}:
                if EN in langs and ZH in langs:
                    fams[fam].add(f"{EN}-{ZH}")
                continue
            pivot_ok = (EN in langs) if "en" in (a, b) else has_zh
            if pivot_ok:
                fams[fam] |= xs
    return {k: sorted(v) for k, v in fams.items()}


def targets(recipe: Recipe, coverage: dict[str, list[str]]) -> dict[str, Any]:
    """Quota per category, and an estimate per cross-lingual language (temperature shares of the row limits;
    languages whose sources have no limit count as the largest limit)."""
    from bayling.data.mix import allocate, largest_remainder, temperature_shares

    mix = recipe.mix
    cats = [c for c in mix.proportions if mix.proportions[c] > 0]
    quotas = dict(zip(cats, largest_remainder(mix.target_total, [mix.proportions[c] for c in cats])))
    if not recipe.cross_lingual:
        quotas.pop("cross_lingual", None)
    rows: dict[str, int] = {}
    for _, section, spec in enabled_sources(recipe):
        for lang in set(_source_langs(section, spec)) - {EN, ZH}:
            rows[lang] = rows.get(lang, 0) + (spec.limit or 0)
    biggest = max(rows.values(), default=0) or 1
    langs = sorted(rows)
    n = [rows[lg] or biggest for lg in langs]
    per_dir = max(1, sum(1 for fam in coverage if "x" in fam.split("-")))
    avail = [v * per_dir for v in n]
    alloc = allocate(quotas.get("cross_lingual", 0), avail, temperature_shares(avail, mix.temperature_alpha),
                     mix.upsample_cap)
    return {"total": mix.target_total, "categories": quotas,
            "cross_lingual_languages": dict(zip(langs, alloc)),
            "estimate": "rows per language = the sources' limits (no limit = the largest limit) x directions; "
                        "the real split follows the records that survive filtering and dedup"}


def make_plan(recipe: Recipe, snapshots: str | None = None) -> dict[str, Any]:
    from bayling.languages import flores101_languages

    statuses = check_sources(recipe, snapshots)
    coverage = direction_coverage(recipe)
    x_fams = [f for f in coverage if "x" in f.split("-")]
    lacking = {}
    for lg in flores101_languages():
        if lg.code in (EN, ZH):
            continue
        miss = [f for f in x_fams if lg.code not in coverage[f]]
        if miss:
            lacking[lg.code] = miss
    n101 = len(flores101_languages()) - 2
    return {
        "recipe": recipe.name,
        "sources": statuses,
        "missing": [s["name"] for s in statuses if s["status"] == "missing"],
        "fetch_commands": [s["fetch"] for s in statuses if s["status"] == "missing" and s["fetch"]],
        "directions": coverage,
        "flores101": {"languages": n101, "with_all_directions": n101 - len(lacking), "lacking": lacking},
        "targets": targets(recipe, coverage),
    }


def plan_text(plan: dict[str, Any], prog: str) -> str:
    """The human-readable plan (the JSON's content, in lines)."""
    st = plan["sources"]
    counts: dict[str, int] = {}
    for s in st:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    lines = [f"{prog}: plan for recipe '{plan['recipe']}' (dry run: no data read)",
             f"sources: {len(st)} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})"]
    for s in st:
        cfg = f" [{s['config']}]" if s["config"] else ""
        lines.append(f"  {s['status']:<8} {s['name']}: {s['local'] or s['path']}{cfg}")
    if plan["missing"]:
        lines.append(f"missing: {len(plan['missing'])} source(s); fetch them with:")
        lines += [f"  {c}" for c in plan["fetch_commands"]]
        lines += [f"  (local path not found: {s['name']} -> {s['path']})" for s in st
                  if s["status"] == "missing" and not s["fetch"]]
    lines.append("languages per direction family:")
    for fam, langs in plan["directions"].items():
        lines.append(f"  {fam}: {len(langs)}" + (f" ({', '.join(langs[:12])}{' ...' if len(langs) > 12 else ''})"
                                                  if langs else ""))
    f = plan["flores101"]
    lacking = ", ".join(k + " (" + "/".join(v) + ")" for k, v in f["lacking"].items())
    lines.append(f"FLORES-101: {f['with_all_directions']} of {f['languages']} languages have every X direction"
                 + (f"; lacking: {lacking}" if lacking else ""))
    t = plan["targets"]
    lines.append(f"target records: {t['total']:,} = " + ", ".join(f"{k} {v:,}" for k, v in t["categories"].items()))
    per = t["cross_lingual_languages"]
    if per:
        vals = sorted(per.values())
        lines.append(f"  cross-lingual per language (estimate): {len(per)} languages, median {vals[len(vals) // 2]:,},"
                     f" min {vals[0]:,}, max {vals[-1]:,}")
    return "\n".join(lines)
