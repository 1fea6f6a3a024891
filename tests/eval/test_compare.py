"""`bayling-eval compare`: per-direction deltas (markdown + csv) and a plot, never mixing metrics."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from bayling.cli.evaluate import main

SAMPLE = str(Path(__file__).resolve().parents[2] / "eval" / "flores_sample")


@pytest.fixture(scope="module")
def two_runs(tiny_llama2, tmp_path_factory):
    base = tmp_path_factory.mktemp("cmp")
    runs = []
    for name, tokens in (("short", "3"), ("long", "8")):
        out = base / name
        assert main(["--suite", "flores", "--model", str(tiny_llama2), "--flores-dir", SAMPLE, "--langs", "deu,fra",
                     "--directions", "x-en,en-x", "--limit", "4", "--beams", "1", "--max-new-tokens", tokens,
                     "--no-progress", "--out", str(out)]) == 0
        runs.append(out)
    return runs


def _chrf(run: Path) -> dict[str, float]:
    res = json.loads((run / "results.json").read_text(encoding="utf-8"))
    return {d["direction"]: d["scores"]["chrf"]["score"] for d in res["directions"]}


def test_compare_writes_deltas_table_csv_and_plot(two_runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(two_runs[0]), str(two_runs[1]), "--out", str(out)]) == 0
    a, b = _chrf(two_runs[0]), _chrf(two_runs[1])
    rows = {r["direction"]: r for r in csv.DictReader(open(out / "compare.csv", encoding="utf-8"))}
    assert set(rows) == set(a) and len(rows) == 4
    for name, row in rows.items():
        assert float(row["delta:long"]) == pytest.approx(round(b[name] - a[name], 2))
    md = (out / "compare.md").read_text(encoding="utf-8")
    assert "| direction | short | long | Δ long |" in md and "mean Δ" in md
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert "deu_Latn-eng_Latn" in capsys.readouterr().out


def test_compare_refuses_to_subtract_different_metrics(two_runs, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    res = json.loads((two_runs[1] / "results.json").read_text(encoding="utf-8"))
    res["directions"][0]["scores"]["bleu"]["name"] = "spbleu_flores101"
    res["directions"][0]["scores"]["bleu"]["signature"] = "nrefs:1|tok:flores101"
    (other / "results.json").write_text(json.dumps(res), encoding="utf-8")
    out = tmp_path / "cmp"
    assert main(["compare", str(two_runs[0]), str(other), "--out", str(out), "--metric", "bleu"]) == 0
    first = res["directions"][0]["direction"]
    rows = {r["direction"]: r for r in csv.DictReader(open(out / "compare.csv", encoding="utf-8"))}
    assert rows[first]["delta:other"] == "" and "metric differs" in rows[first]["why:other"]
    assert all(rows[n]["delta:other"] != "" for n in rows if n != first)


def test_compare_needs_results(tmp_path, capsys):
    assert main(["compare", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no results.json" in err and "Traceback" not in err
