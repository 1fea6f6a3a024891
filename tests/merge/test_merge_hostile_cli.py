"""Bad input to bayling-merge: one ``bayling-merge: error:`` line naming what is wrong, exit 2, no traceback,
nothing the user owns touched, and no output folder left behind.

Cases run ``bayling.cli.merge.main`` in-process (the same code path as the console script, minus the
interpreter start-up, to keep the suite fast); two cases go through a real ``python -m bayling.cli.merge``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from bayling.cli.merge import main
from tests.hostile import assert_one_line_error, assert_untouched, snapshot
from tests.merge.helpers import merge_cmd, run_merge_cli

PROG = "bayling-merge"


@pytest.fixture()
def world(merge_models, flores_split, tmp_path):
    """Private copies of the models and the FLORES splits, so every case may break its own."""
    root = tmp_path / "world"
    models = {k: Path(shutil.copytree(v, root / k)) for k, v in merge_models.items()}
    splits = {k: Path(shutil.copytree(v, root / k)) for k, v in flores_split.items()}
    return SimpleNamespace(root=root, models=models, dev=splits["dev"], test=splits["test"], out=tmp_path / "out")


def run_inprocess(capsys, args: list[str]) -> SimpleNamespace:
    code = main(args)
    err = capsys.readouterr().err
    return SimpleNamespace(returncode=code, stderr=err)


def set_config(model: Path, **changes) -> None:
    cfg = json.loads((model / "config.json").read_text())
    cfg.update(changes)
    (model / "config.json").write_text(json.dumps(cfg))


def drop_tensor(model: Path, name: str) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(model / "model.safetensors"))
    del state[name]
    save_file(state, str(model / "model.safetensors"))


def reshape_tensor(model: Path, name: str) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(model / "model.safetensors"))
    state[name] = torch.zeros(3, 3)
    save_file(state, str(model / "model.safetensors"))


def write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")


NORM = "model.norm.weight"

# (id, how to break the world, extra CLI args or a function of the world returning the full args, needles)
CASES = [
    ("base-missing", lambda w: shutil.rmtree(w.models["base"]), [], ["base model folder does not exist"]),
    ("base-no-config", lambda w: (w.models["base"] / "config.json").unlink(), [], ["no config.json"]),
    ("expert-missing", lambda w: shutil.rmtree(w.models["e2"]), [], ["expert 2", "does not exist"]),
    ("expert-bin-only", lambda w: (w.models["e1"] / "model.safetensors").rename(w.models["e1"] / "pytorch_model.bin"),
     [], ["only pytorch .bin"]),
    ("expert-truncated", lambda w: write(w.models["e1"] / "model.safetensors",
                                         (w.models["e1"] / "model.safetensors").read_bytes()[:5000]),
     [], ["cannot read the weights", "model.safetensors"]),
    ("expert-garbage", lambda w: write(w.models["e2"] / "model.safetensors", b"not a safetensors file at all"),
     [], ["cannot read the weights"]),
    ("expert-config-not-json", lambda w: write(w.models["e1"] / "config.json", "{oops"), [],
     ["config.json", "not valid json"]),
    ("expert-other-architecture", lambda w: set_config(w.models["e2"], hidden_size=64), [],
     ["hidden_size", "fine-tuned from the base"]),
    ("expert-other-vocab", lambda w: set_config(w.models["e1"], vocab_size=1000), [], ["vocab_size"]),
    ("expert-missing-tensor", lambda w: drop_tensor(w.models["e1"], NORM), [], ["lacks tensor", NORM]),
    ("expert-shape", lambda w: reshape_tensor(w.models["e2"], NORM), [], [NORM, "shape"]),
    ("base-is-expert", None, lambda w: ["--base", str(w.models["base"]), "--experts", str(w.models["base"]),
                                         "--fitness", f"flores:{w.dev}", "--out", str(w.out)], ["distinct"]),
    ("fitness-kind", None, lambda w: merge_cmd(w.models, w.dev, w.out)[:5] + ["--fitness", "lm:xcopa_it",
                                                                          "--out", str(w.out)], ["flores:dir"]),
    ("fitness-dir-missing", lambda w: shutil.rmtree(w.dev), [], ["dev folder does not exist"]),
    ("fitness-devtest-only", lambda w: [f.rename(f.with_suffix(".devtest")) for f in list(w.dev.glob("*.dev"))], [],
     ["no flores dev file", "test split"]),
    ("fitness-lang-missing", lambda w: (w.dev / "deu.dev").unlink(), [], ["deu.dev", "german"]),
    ("dev-misaligned", lambda w: write(w.dev / "deu.dev", "only one line\n"), [], ["line-aligned"]),
    ("dev-bad-utf8", lambda w: write(w.dev / "deu.dev", b"ok\n\xff\xfe bad\nthird\n"), [], ["deu.dev"]),
    ("dev-overlaps-test", lambda w: shutil.copy(w.test / "eng.devtest", w.dev / "eng.dev"),
     lambda w: merge_cmd(w.models, w.dev, w.out, "--test-flores-dir", str(w.test)), ["also in the test split"]),
    ("test-dir-missing", None, lambda w: merge_cmd(w.models, w.dev, w.out, "--test-flores-dir", str(w.root / "nope")),
     ["nope"]),
    ("unknown-method", None, ["--methods", "pso,slerp"], ["unknown method 'slerp'"]),
    ("final-not-run", None, ["--methods", "linear", "--final", "pso"], ["--final pso"]),
    ("density-zero", None, ["--density", "0"], ["density", "(0, 1]"]),
    ("dare-density-big", None, ["--dare-density", "1.5"], ["dare_density"]),
    ("coefficients-per-element", None, ["--formulation", "coefficients", "--random-factors", "element"],
     ["per-element"]),
    ("random-factors-choice", None, ["--random-factors", "global"], ["invalid choice"]),
    ("velocity-clamp-zero", None, ["--velocity-clamp", "0"], ["velocity_clamp"]),
    ("iterations-negative", None, ["--iterations", "-1"], ["--iterations"]),
    ("beams-zero", None, ["--beams", "0"], ["--beams"]),
    ("dev-limit-zero", None, ["--dev-limit", "0"], ["--dev-limit"]),
    ("weight-format", None, ["--fitness-weight", "x-en"], ["name=w"]),
    ("weight-negative", None, ["--fitness-weight", "x-en=-1"], ["name=w"]),
    ("weight-unknown", None, ["--fitness-weight", "fra_Latn-eng_Latn=2"], ["matches no fitness direction"]),
    ("weight-lm-eval-unused", None, ["--fitness-weight", "lm-eval=2"], ["matches no fitness direction"]),
    ("lm-eval-no-tasks", None, ["--fitness", "lm-eval:"], ["lm-eval:TASK"]),
    ("lm-eval-task-dir-alone", None, ["--lm-eval-task-dir", "."], ["--lm-eval-task-dir needs"]),
    ("num-fewshot-negative", None, ["--num-fewshot", "-1"], ["--num-fewshot"]),
    ("weights-all-zero", None, ["--fitness-weight", "x-en=0", "--fitness-weight", "en-x=0"], ["weight 0"]),
    ("unknown-language", None, lambda w: merge_cmd(w.models, w.dev, w.out) + ["--langs", "klingon"],
     ["klingon"]),
    ("unknown-flag", None, ["--temperature", "0.7"], ["unrecognized arguments"]),
    ("no-experts", None, lambda w: ["--base", str(w.models["base"]), "--experts", "--fitness", f"flores:{w.dev}",
                                    "--out", str(w.out)], ["--experts"]),
    ("no-out", None, lambda w: ["--base", str(w.models["base"]), "--experts", str(w.models["e1"]),
                                "--fitness", f"flores:{w.dev}"], ["--out"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_touches_nothing(case, world, capsys):
    _, breaker, args, needles = case
    if breaker is not None:
        breaker(world)
    argv = args(world) if callable(args) else merge_cmd(world.models, world.dev, world.out, *args)
    before = snapshot(world.root)
    proc = run_inprocess(capsys, argv)
    assert_one_line_error(proc, PROG, *needles)
    assert_untouched(before, world.root)
    assert not world.out.exists()


def test_foreign_out_folder_is_refused_and_untouched(world, capsys):
    write(world.out / "notes.txt", "mine")
    before = snapshot(world.root, world.out)
    assert_one_line_error(run_inprocess(capsys, merge_cmd(world.models, world.dev, world.out)), PROG,
                          "did not create", ".bayling-merge")
    assert_untouched(before, world.root, world.out)


def test_out_that_is_a_file_is_refused_and_untouched(world, capsys):
    write(world.out, "a file")
    before = snapshot(world.root, world.out)
    assert_one_line_error(run_inprocess(capsys, merge_cmd(world.models, world.dev, world.out)), PROG, "not a folder")
    assert_untouched(before, world.root, world.out)


def test_saved_swarm_of_another_search_is_refused(world, capsys):
    write(world.out / ".bayling-merge", "")
    write(world.out / "swarm" / "swarm.json", json.dumps({"format": 1, "settings": {"pso": {"seed": 99}}}))
    before = snapshot(world.root, world.out)
    assert_one_line_error(run_inprocess(capsys, merge_cmd(world.models, world.dev, world.out)), PROG,
                          "different settings", "another --out")
    assert_untouched(before, world.root, world.out)


def test_corrupt_saved_swarm_is_named(world, capsys):
    write(world.out / ".bayling-merge", "")
    write(world.out / "swarm" / "swarm.json", '{"format": 1, "settings": ')
    before = snapshot(world.root, world.out)
    assert_one_line_error(run_inprocess(capsys, merge_cmd(world.models, world.dev, world.out)), PROG,
                          "swarm.json", "not valid json")
    assert_untouched(before, world.root, world.out)


@pytest.mark.slow
def test_through_the_real_command(world):
    shutil.rmtree(world.models["e1"])
    proc = run_merge_cli(merge_cmd(world.models, world.dev, world.out))
    assert_one_line_error(proc, PROG, "expert 1", "does not exist")
    help_proc = run_merge_cli(["--help"])
    assert help_proc.returncode == 0
    for method in ("pso", "linear", "task_arithmetic", "ties", "dare_linear", "dare_ties"):
        assert method in help_proc.stdout  # the method registry is the help


def test_fitness_cache_of_other_models_is_refused(world, capsys):
    write(world.out / ".bayling-merge", "")
    write(world.out / "fitness_cache.json", json.dumps({"identity": {"inputs": []}, "entries": {"c-x": {}}}))
    before = snapshot(world.root, world.out)
    assert_one_line_error(run_inprocess(capsys, merge_cmd(world.models, world.dev, world.out)), PROG,
                          "fitness cache belongs to other models", "another --out")
    assert_untouched(before, world.root, world.out)
