"""End-to-end builds on real samples: determinism, the manifest's promises, the ablation, tokens, shortfalls."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from buildkit import DEMO, REPO, SMALL, build, manifest, records, train_records, tree

from bayling.cli.build_data import main


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "data"
    assert build(out) == 0
    return out


def test_same_inputs_and_seed_give_identical_bytes_and_another_seed_does_not(built, tmp_path):
    again = tmp_path / "again"
    assert build(again) == 0
    assert tree(again) == tree(built)
    other = tmp_path / "seed2"
    assert build(other, "--seed", "2") == 0
    assert tree(other)["train/part-00000.jsonl"] != tree(built)["train/part-00000.jsonl"]


def test_layout_and_records_follow_the_documented_format(built):
    names = set(tree(built))
    assert {"manifest.json", "DATA_CARD.md", "languages.png", "valid.jsonl", "train/part-00000.jsonl"} <= names
    assert not any(n.startswith(".") or "/." in n for n in names)  # no temporary leftovers
    assert (built / "languages.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for rec in train_records(built) + records(built / "valid.jsonl"):
        assert list(rec)[:6] == ["id", "messages", "source", "category", "task", "langs"]
        assert rec["category"] in ("zh", "en", "cross_lingual")
        assert rec["messages"] and all(m["role"] in ("system", "user", "assistant") for m in rec["messages"])
        if rec["task"] == "translation":
            src, tgt = rec["direction"].split("-")
            assert rec["langs"] == [src, tgt]


def test_manifest_is_consistent_with_the_files(built):
    m = manifest(built)
    train, valid = train_records(built), records(built / "valid.jsonl")
    assert m["train"]["records"] == len(train) and m["valid"]["records"] == len(valid)
    assert m["train"]["by_category"] == dict(Counter(r["category"] for r in train))
    assert m["train"]["by_source"] == dict(sorted(Counter(r["source"] for r in train).items()))
    assert m["train"]["by_task"] == dict(sorted(Counter(r["task"] for r in train).items()))
    assert m["train"]["by_direction"] == dict(sorted(Counter(r["direction"] for r in train if "direction" in r).items()))
    langs = Counter(lang for r in train for lang in r["langs"])
    assert m["train"]["by_language"] == dict(sorted(langs.items()))
    assert m["train"]["characters"] == sum(len(x["content"]) for r in train for x in r["messages"])
    assert m["train"]["tokens"] is None and m["tokenizer"] is None
    for entry in m["files"]["train"] + m["files"]["valid"]:
        assert hashlib.sha256((built / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    # validation records are distinct and never trained on
    assert len({r["id"] for r in valid}) == len(valid)
    assert not {r["id"] for r in valid} & {r["id"] for r in train}
    # every input is named with its digest; the resolved recipe and versions are recorded
    assert {i["name"] for i in m["inputs"]} == {"alpaca_en", "sharegpt_en", "belle_zh", "flores_demo"}
    assert all(len(i["sha256"]) == 64 for i in m["inputs"])
    assert m["recipe"]["mix"]["target_total"] == 600 and m["seed"] == 1
    assert m["package_versions"]["bayling"] and m["package_versions"]["numpy"]
    p = m["pipeline"]
    assert p["unique_kept"] == sum(c["available"] for c in m["mix"]["categories"])
    assert p["read"]["flores_demo"] == 30 and p["read"]["belle_zh"] == 150
    assert sum(p["dedup"].values()) > 0  # the ShareGPT sample repeats itself: dedup must see it
    # quotas: the paper's proportions of 600, all reached on these samples
    cats = {c["name"]: c for c in m["mix"]["categories"]}
    assert {k: c["quota"] for k, c in cats.items()} == {"zh": 259, "en": 157, "cross_lingual": 184}
    assert m["mix"]["reached_total"] == 600 and m["mix"]["shortfalls"] == []
    card = (built / "DATA_CARD.md").read_text(encoding="utf-8")
    assert "Every category reached its quota" in card and f"{len(train):,}" in card


def test_upsampling_respects_the_cap_and_temperature_favours_small_languages(tmp_path):
    out = tmp_path / "up"
    assert build(out, overrides=["mix.target_total=2000", "mix.upsample_cap=2",
                                 "mix.temperature_alpha=0.0", "mix.valid_fraction=0"]) == 0
    train = train_records(out)
    copies = Counter(r["id"] for r in train)
    assert max(copies.values()) == 2  # zh: 150 records, quota 864 -> capped at 300
    m = manifest(out)
    zh = next(c for c in m["mix"]["categories"] if c["name"] == "zh")
    assert zh["reached"] == 300 and zh["shortfall"] == 864 - 300
    assert any("zh: quota 864" in s for s in m["mix"]["shortfalls"])
    groups = next(c for c in m["mix"]["categories"] if c["name"] == "cross_lingual")["groups"]
    selected = [g["selected"] for g in groups if g["name"] != "eng_Latn-zho_Hans"]
    assert max(selected) - min(selected) <= 1  # alpha=0: uniform over languages


def test_not_enough_data_is_said_and_the_build_goes_on(tmp_path, capsys):
    out = tmp_path / "short"
    assert build(out, overrides=["mix.target_total=100000"]) == 0
    said = capsys.readouterr().out
    assert "not enough data: zh: quota 43,200" in said
    m = manifest(out)
    assert len(m["mix"]["shortfalls"]) == 3
    assert m["mix"]["reached_total"] == sum(c["reached"] for c in m["mix"]["categories"]) < 100000
    assert "**Not enough data.**" in (out / "DATA_CARD.md").read_text(encoding="utf-8")


def test_no_cross_lingual_drops_the_arm_only(built, tmp_path):
    out = tmp_path / "ablation"
    assert build(out, "--no-cross-lingual") == 0
    m = manifest(out)
    assert m["cross_lingual"] is False and "flores_demo" not in m["pipeline"]["read"]
    assert {r["category"] for r in train_records(out)} == {"zh", "en"}
    full = {c["name"]: c["reached"] for c in manifest(built)["mix"]["categories"]}
    cut = {c["name"]: c["reached"] for c in m["mix"]["categories"]}
    assert cut == {"zh": full["zh"], "en": full["en"]}  # the others keep their quotas


def test_tokenizer_counts_the_tokens_of_the_written_records(tmp_path, llama2_tokenizer_dir):
    from bayling.tokenizer import load_tokenizer

    out = tmp_path / "tok"
    assert build(out, "--tokenizer", str(llama2_tokenizer_dir)) == 0
    m = manifest(out)
    tok = load_tokenizer(str(llama2_tokenizer_dir))
    expected = sum(len(tok(x["content"], add_special_tokens=False)["input_ids"])
                   for r in train_records(out) for x in r["messages"])
    assert m["train"]["tokens"] == expected > m["train"]["records"]
    assert m["tokenizer"] == str(llama2_tokenizer_dir)


def test_decontamination_removes_every_held_out_sentence(tmp_path):
    held = tmp_path / "heldout"
    held.mkdir()
    lines = {}
    for code in ("eng", "zho_simpl", "deu"):
        text = (REPO / "data/samples/flores_demo" / f"{code}.devtest").read_text(encoding="utf-8").splitlines()[:10]
        (held / f"{code}.devtest").write_text("\n".join(text) + "\n", encoding="utf-8")
        lines[code] = text
    out = tmp_path / "clean"
    assert build(out, "--decontaminate", str(held), overrides=["mix.target_total=3000"]) == 0
    m = manifest(out)
    assert m["pipeline"]["decontaminated"][str(held)] > 0
    assert any(i["kind"] == "decontaminate" for i in m["inputs"])
    blob = "\n".join(x["content"] for r in train_records(out) + records(out / "valid.jsonl") for x in r["messages"])
    assert not [s for text in lines.values() for s in text if s in blob]


def test_no_arguments_means_the_demo_recipe_into_runs_data_demo(tmp_path, monkeypatch, capsys):
    """The no-argument path, on a shrunken copy of the demo recipe (the full demo is the slow test below)."""
    import yaml

    import bayling.cli.build_data as cli
    from bayling.config import deep_merge, parse_overrides

    data = deep_merge(yaml.safe_load(DEMO.read_text(encoding="utf-8")), parse_overrides(SMALL))
    for section in ("instructions", "parallel"):
        for src in data[section].values():
            src["path"] = str((DEMO.parent / src["path"]).resolve())
    small = tmp_path / "demo.yaml"
    small.write_text(yaml.safe_dump(data), encoding="utf-8")
    monkeypatch.setattr(cli, "DEMO_RECIPE", small)
    monkeypatch.chdir(tmp_path)
    assert main(["--no-progress"]) == 0
    assert manifest(tmp_path / "runs/data/demo")["recipe"]["name"] == "demo"
    assert "runs/data/demo" in capsys.readouterr().out


@pytest.mark.slow
def test_full_demo_build_with_no_arguments(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--no-progress"]) == 0
    m = manifest(tmp_path / "runs/data/demo")
    assert m["recipe"]["name"] == "demo" and m["train"]["records"] > 1000 and not m["mix"]["shortfalls"]
    assert len(m["train"]["by_language"]) == 12


def test_pivot_join_makes_x_zh_records_from_x_en_and_en_zh_bitexts(tmp_path):
    flores = REPO / "data/samples/flores_demo"
    read = {c: (flores / f"{c}.devtest").read_text(encoding="utf-8").splitlines() for c in ("deu", "eng", "zho_simpl")}
    (tmp_path / "de-en.tsv").write_text("".join(f"{read['deu'][i]}\t{read['eng'][i]}\n" for i in range(0, 20)),
                                        encoding="utf-8")
    (tmp_path / "en-zh.tsv").write_text("".join(f"{read['eng'][i]}\t{read['zho_simpl'][i]}\n" for i in range(10, 30)),
                                        encoding="utf-8")
    recipe = tmp_path / "pivot.yaml"
    recipe.write_text(
        "name: pivot\nparallel:\n"
        "  enzh: {path: en-zh.tsv, format: tsv, langs: [en, zh]}\n"
        "  deen: {path: de-en.tsv, format: tsv, langs: [de, en], pivot_with: enzh}\n"
        "mix: {proportions: {cross_lingual: 1.0}, target_total: 10000, upsample_cap: 1.0, valid_fraction: 0}\n",
        encoding="utf-8")
    out = tmp_path / "out"
    assert main(["--no-progress", "--recipe", str(recipe), "--out", str(out)]) == 0
    train = train_records(out)
    dz = [r for r in train if r.get("direction") == "deu_Latn-zho_Hans"]
    assert len(dz) == 10  # rows 10..19 share their English sentence
    zh_of = dict(zip(read["deu"], read["zho_simpl"]))
    for r in dz:
        assert r["messages"][1]["content"] == zh_of[next(s for s in read["deu"] if s in r["messages"][0]["content"])]
    assert manifest(out)["pipeline"]["read"]["deen"] == 30  # 20 own rows + 10 joined rows
