"""The training config: recipes, CLI behaviour without a launch, DeepSpeed "auto" filling, the schedule."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import yaml
from hostile import run_cli

from bayling.config import load_config
from bayling.errors import ConfigError
from bayling.paths import REPO_ROOT
from bayling.train.config import TrainConfig
from bayling.train.engine import auto_values, fill_auto, lr_schedule

RECIPES = sorted((REPO_ROOT / "data" / "recipes" / "train").glob("*.yaml"))


def cli(*args: str) -> subprocess.CompletedProcess:
    """bayling-train's ``main(argv)`` in this process, output captured (tests/hostile.py)."""
    return run_cli("bayling-train", list(args), cwd=REPO_ROOT)


def test_the_four_recipes_exist_and_load():
    names = {p.stem for p in RECIPES}
    assert {"llama2_7b", "llama3_8b", "llama2_13b", "tiny_cpu"} <= names
    for path in RECIPES:
        cfg = load_config(TrainConfig, path)
        assert cfg.model.path and cfg.data.dir


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_value_says_paper_or_assumed(path):
    """Each leaf value carries a comment; the paper/assumed provenance is part of the recipe (issue 3.1)."""
    for n, line in enumerate(path.read_text().splitlines(), 1):
        body = line.split("#", 1)[0]
        if ":" in body and body.split(":", 1)[1].strip():
            assert "#" in line, f"{path.name}:{n} has no comment: {line}"
            comment = line.split("#", 1)[1]
            if path.stem != "tiny_cpu":
                assert "paper" in comment or "assumed" in comment, f"{path.name}:{n}: {line}"


def test_bayling2_recipes_use_the_published_bases_and_templates():
    by = {p.stem: load_config(TrainConfig, p) for p in RECIPES}
    assert "Llama-2-7b-chat" in by["llama2_7b"].model.path and by["llama2_7b"].data.template == "bayling"
    assert "Llama-2-13b-chat" in by["llama2_13b"].model.path and by["llama2_13b"].zero == "3"
    assert "Llama-3-8B-Instruct" in by["llama3_8b"].model.path and by["llama3_8b"].data.template == "bayling3"


def test_print_config_applies_overrides_and_round_trips():
    proc = cli("--config", str(REPO_ROOT / "data/recipes/train/llama2_13b.yaml"), "--print-config",
               "optim.lr=0.0001", "data.max_length=4096", "zero=3-offload")
    assert proc.returncode == 0, proc.stderr
    printed = yaml.safe_load(proc.stdout)
    assert printed["optim"]["lr"] == 0.0001 and printed["data"]["max_length"] == 4096
    assert printed["zero"] == "3-offload"
    assert load_config(TrainConfig, None, []).__class__ is TrainConfig
    from bayling.config import from_dict

    assert from_dict(TrainConfig, printed).optim.lr == 0.0001


def test_unknown_key_is_one_line_error_with_suggestion():
    proc = cli("--config", str(REPO_ROOT / "data/recipes/train/tiny_cpu.yaml"), "optim.lrr=0.1")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "optim.lrr" in lines[0] and "did you mean optim.lr" in lines[0]


def test_estimate_memory_prints_the_table():
    proc = cli("--estimate-memory", "--model", "llama2-13b", "--zero", "3", "--gpus", "8")
    assert proc.returncode == 0, proc.stderr
    assert "llama2-13b" in proc.stdout and "ZeRO-3" in proc.stdout and "TOTAL per GPU" in proc.stdout


@pytest.mark.parametrize("bad, field", [("zero=4", "zero"), ("micro_batch=0", "micro_batch"),
                                        ("optim.warmup_ratio=1.5", "optim.warmup_ratio"),
                                        ("dtype=fp8", "dtype")])
def test_invalid_values_name_the_field(bad, field):
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, None, [bad])
    assert err.value.field == field


def test_global_batch_sets_grad_accum():
    cfg = load_config(TrainConfig, None, ["micro_batch=4", "global_batch=128"])
    assert cfg.resolved_grad_accum(8) == 4
    with pytest.raises(ConfigError, match="multiple"):
        cfg.resolved_grad_accum(3)


@pytest.mark.parametrize("name", ["zero0.json", "zero2.json", "zero3.json", "zero3_offload.json"])
def test_deepspeed_auto_values_are_all_filled_from_the_config(name):
    template = json.loads((REPO_ROOT / "deepspeed_configs" / name).read_text())
    assert "auto" in json.dumps(template)
    cfg = load_config(TrainConfig, None, ["micro_batch=2", "grad_accum=8", "dtype=bf16", "optim.lr=0.0003"])
    ds = fill_auto(template, auto_values(cfg, world_size=4, hidden_size=4096))
    assert "auto" not in json.dumps(ds)
    assert ds["train_batch_size"] == 2 * 8 * 4 and ds["gradient_accumulation_steps"] == 8
    assert ds["bf16"]["enabled"] is True and ds["fp16"]["enabled"] is False
    assert ds["optimizer"]["params"]["lr"] == 0.0003 and ds["optimizer"]["params"]["torch_adam"] is True


def test_an_auto_without_a_value_is_an_error():
    with pytest.raises(ConfigError) as err:
        fill_auto({"zero_optimization": {"mystery": "auto"}}, {})
    assert err.value.field == "zero_optimization.mystery"


def test_cosine_schedule_with_linear_warmup():
    """transformers' schedule: 0 -> peak over 10 warm-up steps, then cosine to min_lr_ratio x peak."""
    import torch

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = lr_schedule(opt, total_steps=100, warmup_ratio=0.1, min_lr_ratio=0.1)
    f = sched.lr_lambdas[0]
    warm = [f(s) for s in range(10)]
    assert warm == sorted(warm) and warm[0] == 0.0 and warm[5] == pytest.approx(0.5) and f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(100) == pytest.approx(0.1)


def test_prepare_only_builds_the_token_cache_and_exits(tmp_path, tiny_llama2):
    fixture = REPO_ROOT / "tests" / "train" / "fixtures" / "instruct"
    proc = cli("--config", str(REPO_ROOT / "data/recipes/train/tiny_cpu.yaml"), "--prepare-only",
               "model.init=pretrained", f"model.path={tiny_llama2}", f"data.dir={fixture}",
               f"data.cache_dir={tmp_path / 'cache'}", f"out={tmp_path / 'out'}")
    assert proc.returncode == 0, proc.stderr
    caches = list((tmp_path / "cache").iterdir())
    assert len(caches) == 1 and (caches[0] / "COMPLETE").is_file()
    assert "token cache ready" in proc.stdout and not (tmp_path / "out").exists()


def test_prepare_only_is_offline_with_a_hub_model_and_a_local_tokenizer(tmp_path):
    """Pre-tokenising on a login node without internet: model.path is a hub id, model.tokenizer is local."""
    fixture = REPO_ROOT / "tests" / "train" / "fixtures" / "instruct"
    proc = subprocess.run(
        [sys.executable, "-m", "bayling.cli.train", "--config", str(REPO_ROOT / "data/recipes/train/llama2_7b.yaml"),
         "--prepare-only", "model.tokenizer=llama2", f"data.dir={fixture}", "data.max_length=256",
         f"data.cache_dir={tmp_path / 'cache'}", f"out={tmp_path / 'out'}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "token cache ready" in proc.stdout and len(list((tmp_path / "cache").iterdir())) == 1


def _yaml_part(stdout: str) -> str:
    return "".join(line + "\n" for line in stdout.splitlines() if not line.startswith("#"))


def test_print_config_without_a_token_cache_says_what_the_config_fixes_and_stays_loadable(tmp_path, tiny_llama2):
    """Issue 13: without the cache the comment says to run --prepare-only (nothing is tokenised); the YAML part
    of the output is a config that --config accepts and that prints the same YAML again."""
    fixture = REPO_ROOT / "tests" / "train" / "fixtures" / "instruct"
    args = ["--config", str(REPO_ROOT / "data/recipes/train/tiny_cpu.yaml"), "--print-config", "model.init=pretrained",
            f"model.path={tiny_llama2}", f"data.dir={fixture}", f"data.cache_dir={tmp_path / 'cache'}",
            f"out={tmp_path / 'out'}"]
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    comment = [line for line in proc.stdout.splitlines() if line.startswith("#")]
    assert "--prepare-only" in comment[0]
    assert comment[1] == "# per step: 4 packed rows of up to 256 tokens (micro_batch 2 x grad_accum 2 x world size 1)"
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()
    printed = tmp_path / "printed.yaml"
    printed.write_text(proc.stdout, encoding="utf-8")  # comments included: still a loadable config
    again = cli("--config", str(printed), "--print-config")
    assert again.returncode == 0, again.stderr
    assert _yaml_part(again.stdout) == _yaml_part(proc.stdout)
    per_step = cli(*args, "instructions_per_step=16", "grad_accum=null").stdout.splitlines()[-1]
    assert per_step == "# per step: 16 instructions (instructions_per_step)"


def test_print_config_after_prepare_only_shows_the_runs_step_figures(tmp_path, tiny_llama2):
    """Issue 13: with the token cache built, --print-config gives instructions, tokens and packed rows per step
    and the number of steps, from the plan the run itself follows (golden values for the fixture)."""
    from bayling.train.cache import CacheSpec, find_cache, open_cache
    from bayling.train.recipe import step_plan

    fixture = REPO_ROOT / "tests" / "train" / "fixtures" / "instruct"
    args = ["--config", str(REPO_ROOT / "data/recipes/train/tiny_cpu.yaml"), "model.init=pretrained",
            f"model.path={tiny_llama2}", f"data.dir={fixture}", f"data.cache_dir={tmp_path / 'cache'}",
            f"out={tmp_path / 'out'}"]
    assert cli(*args, "--prepare-only").returncode == 0

    def figures(*extra: str) -> str:
        proc = cli(*args, "--print-config", *extra)
        assert proc.returncode == 0, proc.stderr
        return [line for line in proc.stdout.splitlines() if line.startswith("#")][0]

    assert figures() == ("# per step: ~5.2 instructions, ~961 tokens (mean), ~4.0 packed rows of 256; "
                         "52 steps for 1 epoch of 270 records")
    assert figures("instructions_per_step=16", "grad_accum=null") == (
        "# per step: 16 instructions, ~2972 tokens (mean), ~13.1 packed rows of 256; 16 steps for 1 epoch of 270 records")
    assert figures("--world-size", "2").startswith("# per step: ~10.4 instructions, ~1921 tokens")
    cfg = load_config(TrainConfig, args[1], args[2:])  # the same numbers as the run's own plan
    plan, _ = step_plan(cfg, open_cache(find_cache(CacheSpec.for_run(cfg, tiny_llama2))), 1)
    assert plan.steps_per_epoch == 52 and len(plan.cache) == 270
