"""Hostile-but-realistic input to ``bayling-train``: one ``bayling-train: error:`` line, exit 2, no traceback,
and every file the user had left byte for byte as it was (tests/hostile.py).

Most cases go through ``--check`` or the plain command: both stop before any process group exists, and
most before torch is imported, so each case costs well under a second of CPU. Cases that load the tokenizer
or DeepSpeed (~10 s each) or need torchrun (N workers, kill -9 of the launcher, a second live trainer) are
marked slow.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import train_harness as th
from hostile import REPO, assert_one_line_error, assert_untouched, cli_env, run_cli, snapshot

from bayling.hashing import sha256_file
from bayling.train import resume_guard as guard
from bayling.train import rundir

PROG = "bayling-train"
CONFIG = str(REPO / "data" / "recipes" / "train" / "tiny_cpu.yaml")


@pytest.fixture(scope="module")
def model(tiny_llama2, tmp_path_factory) -> Path:
    """A private copy of the tiny model (cases damage copies of it)."""
    dst = tmp_path_factory.mktemp("hostile_model") / "model"
    shutil.copytree(tiny_llama2, dst)
    return dst


@pytest.fixture
def work(tmp_path, model):
    """(base args pointing at a valid pretrained setup, tmp folder). Every case changes one thing."""
    base = ["--config", CONFIG, f"out={tmp_path / 'run'}", f"model.path={model}", "model.init=pretrained",
            f"data.dir={th.FIXTURE_DATA}", f"data.cache_dir={tmp_path / 'cache'}"]
    return base, tmp_path


def user_files(tmp_path: Path) -> Path:
    """A folder of things the user owns, to prove a failed command leaves them alone."""
    mine = tmp_path / "mine"
    (mine / "earlier_run" / "checkpoints").mkdir(parents=True)
    (mine / "earlier_run" / "checkpoints" / "weights.bin").write_bytes(os.urandom(256))
    (mine / "notes.txt").write_text("do not delete\n")
    return mine


# --- config file and key=value overrides: each error names the file or the command line ---------------

OVERRIDE_CASES = {
    "unknown-key": (["optim.lrr=1e-5"], ["command line", "optim.lrr", "did you mean optim.lr"]),
    "not-key-value": (["micro_batch"], ["command line", "key=value"]),
    "int-type": (["micro_batch=abc"], ["command line", "micro_batch", "integer"]),
    "beta-above-1": (["optim.betas=[0.9,1.5]"], ["command line", "optim.betas[1]", "[0, 1)"]),
    "beta-negative": (["optim.betas=[-0.1,0.99]"], ["optim.betas[0]", "[0, 1)"]),
    "beta-equal-1": (["optim.betas=[1.0,0.999]"], ["optim.betas[0]"]),
    "one-beta": (["optim.betas=[0.9]"], ["optim.betas", "two numbers"]),
    "lr-zero": (["optim.lr=0"], ["optim.lr", "> 0"]),
    "lr-negative": (["optim.lr=-1e-5"], ["optim.lr"]),
    "eps-zero": (["optim.eps=0"], ["optim.eps"]),
    "warmup-ratio": (["optim.warmup_ratio=1.5"], ["optim.warmup_ratio"]),
    "weight-decay": (["optim.weight_decay=-0.1"], ["optim.weight_decay"]),
    "min-lr-ratio": (["optim.min_lr_ratio=2"], ["optim.min_lr_ratio"]),
    "grad-clip": (["optim.grad_clip=-1"], ["optim.grad_clip"]),
    "micro-batch-zero": (["micro_batch=0"], ["micro_batch", ">= 1"]),
    "epochs-zero": (["epochs=0"], ["epochs"]),
    "max-steps-negative": (["max_steps=-3"], ["max_steps"]),
    "ga-and-global": (["grad_accum=2", "global_batch=8"], ["global_batch", "not both"]),
    "zero-stage": (["zero=4"], ["zero", "4"]),
    "dtype": (["dtype=fp64"], ["dtype", "fp64"]),
    "template": (["data.template=chatml"], ["data.template", "chatml", "bayling3"]),
    "max-length-zero": (["data.max_length=0"], ["data.max_length"]),
    "overlong": (["data.overlong=cut"], ["data.overlong"]),
    "tiny-no-tokenizer": (["model.init=tiny", "model.tokenizer=null"], ["model.tokenizer"]),
    "tiny-hidden": (["model.init=tiny", "model.tokenizer=llama2", "model.tiny_hidden_size=30"],
                    ["model.tiny_hidden_size"]),
    "attention": (["model.attn_implementation=flash"], ["model.attn_implementation"]),
    "timeout": (["dist_timeout_minutes=0"], ["dist_timeout_minutes"]),
    "section-scalar": (["optim=3"], ["optim", "section"]),
}


# Cases also run as a real `python -m bayling.cli.train` process (tests/hostile.py: the rest run in-process).
FRESH = {"unknown-key", "beta-above-1", "not-utf8"}


@pytest.mark.parametrize("case", sorted(OVERRIDE_CASES))
def test_bad_override_is_one_line_naming_the_command_line(case, work):
    base, tmp = work
    extra, needles = OVERRIDE_CASES[case]
    before = snapshot(th.FIXTURE_DATA, Path(CONFIG))
    proc = run_cli(PROG, [*base, *extra], fresh_process=case in FRESH)
    line = assert_one_line_error(proc, PROG, *needles)
    assert "tiny_cpu.yaml" not in line, line  # the value came from the command line, not the file
    assert_untouched(before, th.FIXTURE_DATA, Path(CONFIG))
    assert not (tmp / "run").exists()


YAML_CASES = {
    "missing-file": (None, ["not found"]),
    "bad-syntax": ("model: [unclosed\n", ["invalid YAML", ":"]),
    "top-level-list": ("- a\n- b\n", ["mapping"]),
    "unknown-key": ("modle:\n  path: x\n", ["modle", "did you mean model"]),
    "wrong-type": ("micro_batch: two\n", ["micro_batch", "integer"]),
    "not-utf8": (b"model:\n  path: \xff\xfe\n", ["UTF-8"]),
}


@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_bad_config_file_names_the_file(case, tmp_path):
    text, needles = YAML_CASES[case]
    cfg = tmp_path / "train.yaml"
    if isinstance(text, bytes):
        cfg.write_bytes(text)
    elif text is not None:
        cfg.write_text(text)
    proc = run_cli(PROG, ["--config", str(cfg), f"out={tmp_path / 'run'}"], fresh_process=case in FRESH)
    line = assert_one_line_error(proc, PROG, *needles)
    assert "train.yaml" in line


# --- the run folder: never someone else's, never a file, never shared with a live trainer ---------------

def test_out_under_a_regular_file(work):
    base, tmp = work
    (tmp / "afile").write_text("x")
    before = snapshot(tmp / "afile")
    assert_one_line_error(run_cli(PROG, [*base, f"out={tmp / 'afile' / 'run'}", "--check"]), PROG,
                          "under a regular file", "field 'out'")
    assert_untouched(before, tmp / "afile")


def test_out_is_a_regular_file(work):
    base, tmp = work
    (tmp / "afile").write_text("x")
    assert_one_line_error(run_cli(PROG, [*base, f"out={tmp / 'afile'}"]), PROG, "regular file")
    assert (tmp / "afile").read_text() == "x"


def test_out_dot_is_refused_and_the_folder_untouched(work):
    base, tmp = work
    mine = user_files(tmp)
    before = snapshot(mine)
    proc = run_cli(PROG, [*base, "out=."], cwd=mine)
    assert_one_line_error(proc, PROG, "current folder")
    assert_untouched(before, mine)


def test_out_is_someone_elses_folder(work):
    base, tmp = work
    mine = user_files(tmp)
    before = snapshot(mine)
    assert_one_line_error(run_cli(PROG, [*base, f"out={mine}"]), PROG, "not a bayling-train run", str(mine))
    assert_untouched(before, mine)


@pytest.mark.slow  # loads the tokenizer / DeepSpeed (~10 s)
def test_second_trainer_on_a_locked_run_folder_is_refused(work):
    base, tmp = work
    out = tmp / "run"
    rundir.claim(out)
    lock = rundir.RunLock(out)
    lock.acquire()  # this test process plays the live trainer
    proc = run_cli(PROG, [*base, "--check"])
    assert_one_line_error(proc, PROG, "another bayling-train", f"pid {os.getpid()}")
    lock.fh.close()  # released: the same command now passes the lock check
    assert "checks passed" in run_cli(PROG, [*base, "--check"]).stdout


# --- data and model: checked before anything is tokenised -------------------------------------------------

def test_missing_data_dir(work):
    base, tmp = work
    assert_one_line_error(run_cli(PROG, [*base, f"data.dir={tmp / 'nope'}"], fresh_process=True), PROG,
                          "does not exist")


def test_data_dir_without_train_files(work):
    base, tmp = work
    (tmp / "data" / "train").mkdir(parents=True)
    assert_one_line_error(run_cli(PROG, [*base, f"data.dir={tmp / 'data'}"]), PROG, "no training data")


def test_missing_local_model(work):
    base, tmp = work
    assert_one_line_error(run_cli(PROG, [*base, f"model.path={tmp / 'nope'}"]), PROG, "does not exist")


def test_hub_id_offline_is_one_line(work):
    base, _ = work
    assert_one_line_error(run_cli(PROG, [*base, "model.path=meta-llama/Llama-2-7b-chat-hf"]), PROG,
                          "offline", "hf download")


def _model_copy(model: Path, tmp: Path) -> Path:
    dst = tmp / "model_copy"
    shutil.copytree(model, dst)
    return dst


def test_model_dir_without_config(work, model):
    base, tmp = work
    m = _model_copy(model, tmp)
    (m / "config.json").unlink()
    assert_one_line_error(run_cli(PROG, [*base, f"model.path={m}"]), PROG, "no config.json")


def test_model_dir_without_weights(work, model):
    base, tmp = work
    m = _model_copy(model, tmp)
    (m / "model.safetensors").unlink()
    before = snapshot(m)
    assert_one_line_error(run_cli(PROG, [*base, f"model.path={m}"]), PROG, "no weights")
    assert_untouched(before, m)
    assert not (tmp / "cache").exists(), "checked before tokenising"


def test_truncated_safetensors(work, model):
    base, tmp = work
    m = _model_copy(model, tmp)
    data = (m / "model.safetensors").read_bytes()
    (m / "model.safetensors").write_bytes(data[: len(data) // 2])
    proc = run_cli(PROG, [*base, f"model.path={m}"])
    assert_one_line_error(proc, PROG, "truncated", "model.safetensors")
    assert not (tmp / "cache").exists(), "checked before tokenising"


def test_safetensors_with_garbage_header(work, model):
    base, tmp = work
    m = _model_copy(model, tmp)
    (m / "model.safetensors").write_bytes(struct.pack("<Q", 12) + b"not json at all")
    assert_one_line_error(run_cli(PROG, [*base, f"model.path={m}"]), PROG, "safetensors")


def test_index_naming_a_missing_shard(work, model):
    base, tmp = work
    m = _model_copy(model, tmp)
    index = {"metadata": {}, "weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}
    (m / "model.safetensors.index.json").write_text(json.dumps(index))
    assert_one_line_error(run_cli(PROG, [*base, f"model.path={m}"]), PROG, "missing", "00002")


def test_tiny_init_never_replaces_a_folder_it_did_not_create(work):
    """Issue 9: model.init=tiny used to rmtree any folder without config.json (a parent of earlier runs)."""
    base, tmp = work
    mine = user_files(tmp)
    before = snapshot(mine)
    proc = run_cli(PROG, [*base, "model.init=tiny", "model.tokenizer=llama2", f"model.path={mine}"])
    assert_one_line_error(proc, PROG, "model.init=tiny", "nothing in it is removed")
    assert_untouched(before, mine)


def test_tiny_init_model_path_is_a_file(work):
    base, tmp = work
    (tmp / "afile").write_text("x")
    proc = run_cli(PROG, [*base, "model.init=tiny", "model.tokenizer=llama2", f"model.path={tmp / 'afile'}"])
    assert_one_line_error(proc, PROG, "is a file")
    assert (tmp / "afile").read_text() == "x"


def test_deepspeed_config_missing(work):
    base, tmp = work
    assert_one_line_error(run_cli(PROG, [*base, f"deepspeed_config={tmp / 'ds.json'}"]), PROG,
                          "DeepSpeed config file not found")


def test_deepspeed_config_not_json(work):
    base, tmp = work
    (tmp / "ds.json").write_text("{not json")
    assert_one_line_error(run_cli(PROG, [*base, f"deepspeed_config={tmp / 'ds.json'}"]), PROG, "not valid JSON")


def test_world_size_not_dividing_the_global_batch(work):
    base, _ = work
    proc = run_cli(PROG, [*base, "--check", "--world-size", "3", "grad_accum=null", "global_batch=8",
                          "micro_batch=1"])
    assert_one_line_error(proc, PROG, "global_batch 8", "world size = 3")


def test_world_size_zero(work):
    base, _ = work
    assert_one_line_error(run_cli(PROG, [*base, "--check", "--world-size", "0"]), PROG, "--world-size")


def test_world_size_without_check(work):
    base, _ = work
    assert_one_line_error(run_cli(PROG, [*base, "--world-size", "2"]), PROG, "--world-size", "--check")


def test_nproc_per_node_zero(work):
    base, _ = work
    assert_one_line_error(run_cli(PROG, [*base, "--nproc-per-node", "0"]), PROG, "--nproc-per-node")


@pytest.mark.slow  # loads the tokenizer / DeepSpeed (~10 s)
def test_fp16_without_a_gpu(work):
    """The config's equivalent of ``--device cuda`` on a machine without CUDA."""
    base, _ = work
    assert_one_line_error(run_cli(PROG, [*base, "dtype=fp16", "--check"]), PROG, "fp16", "CPU")


@pytest.mark.slow  # loads the tokenizer / DeepSpeed (~10 s)
def test_flash_attention_without_a_gpu(work):
    base, _ = work
    assert_one_line_error(run_cli(PROG, [*base, "model.attn_implementation=flash_attention_2", "--check"]),
                          PROG, "flash_attention_2")


@pytest.mark.slow  # loads the tokenizer / DeepSpeed (~10 s)
def test_tokenizer_larger_than_the_embedding(work):
    base, _ = work
    assert_one_line_error(run_cli(PROG, [*base, "model.tokenizer=llama3", "--check"]), PROG,
                          "model.tokenizer", "128256")


# --- resume: never unpickle foreign files, never silently change the run ---------------------------------

def _fake_checkpoint(out: Path, *, settings: dict | None, manifest: bool = True) -> Path:
    """A COMPLETE checkpoint folder as this trainer lays it out (files are stand-ins, never loaded)."""
    rundir.claim(out)
    ckpt = out / "checkpoints" / "step-000004"
    ckpt.mkdir(parents=True)
    (ckpt / "mp_rank_00_model_states.pt").write_bytes(b"pickle stand-in")
    if manifest:
        guard.write_manifest(ckpt, {"mp_rank_00_model_states.pt": sha256_file(ckpt / "mp_rank_00_model_states.pt")})
    state = {"step": 4, "world_size": 1, "micro_batch": 2, "grad_accum": 2, "seed": 42, "packing": True,
             "max_length": 256, "settings": settings}
    (ckpt / "train_state.json").write_text(json.dumps(state))
    (ckpt / "COMPLETED").write_text("step-000004\n")
    (out / "checkpoints" / "latest").write_text("step-000004")
    return ckpt


def _settings(model: Path, **optim) -> dict:
    from bayling.config import load_config
    from bayling.train.cache import data_files, data_sha256
    from bayling.train.config import TrainConfig

    cfg = load_config(TrainConfig, CONFIG, [f"model.path={model}", "model.init=pretrained"])
    for k, v in optim.items():
        setattr(cfg.optim, k, v)
    return guard.settings(cfg, data_sha256(data_files(th.FIXTURE_DATA)))


def test_resume_with_changed_lr_is_refused_naming_it(work, model):
    base, tmp = work
    _fake_checkpoint(tmp / "run", settings=_settings(model, lr=5e-4))
    before = snapshot(tmp / "run")
    assert_one_line_error(run_cli(PROG, [*base, "--check"]), PROG, "optim.lr", "0.0005 -> 0.001",
                          "--allow-config-change")
    assert_untouched(before, tmp / "run")


@pytest.mark.slow  # loads the tokenizer / DeepSpeed (~10 s)
def test_resume_with_changed_lr_allowed_by_the_flag(work, model):
    base, tmp = work
    _fake_checkpoint(tmp / "run", settings=_settings(model, lr=5e-4))
    proc = run_cli(PROG, [*base, "--check", "--allow-config-change"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1 allowed change" in proc.stdout


def test_resume_with_changed_data_is_refused(work, model):
    base, tmp = work
    _fake_checkpoint(tmp / "run", settings=_settings(model))
    data = tmp / "data"
    shutil.copytree(th.FIXTURE_DATA, data)
    with open(next((data / "train").glob("*.jsonl")), "a") as fh:
        fh.write(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                          {"role": "assistant", "content": "hello"}]}) + "\n")
    assert_one_line_error(run_cli(PROG, [*base, f"data.dir={data}", "--check"]), PROG, "data_sha256")


def test_resume_with_another_model_is_refused(work, model):
    base, tmp = work
    _fake_checkpoint(tmp / "run", settings=_settings(model))
    other = _model_copy(model, tmp)
    assert_one_line_error(run_cli(PROG, [*base, f"model.path={other}", "--check"]), PROG, "model_path")


@pytest.mark.slow  # loads the tokenizer / DeepSpeed (~10 s)
def test_checkpoint_without_manifest_is_not_unpickled(work, model):
    base, tmp = work
    _fake_checkpoint(tmp / "run", settings=_settings(model), manifest=False)
    assert_one_line_error(run_cli(PROG, [*base, "--check"]), PROG, "MANIFEST.json", "--trust-checkpoint")
    proc = run_cli(PROG, [*base, "--check", "--trust-checkpoint"])
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_checkpoint_with_a_foreign_file_is_not_unpickled(work, model):
    base, tmp = work
    ckpt = _fake_checkpoint(tmp / "run", settings=_settings(model))
    (ckpt / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"planted pickle")
    assert_one_line_error(run_cli(PROG, [*base, "--check"]), PROG, "not in the manifest", "optim_states")


def test_checkpoint_with_a_resized_file_is_not_unpickled(work, model):
    base, tmp = work
    ckpt = _fake_checkpoint(tmp / "run", settings=_settings(model))
    (ckpt / "mp_rank_00_model_states.pt").write_bytes(b"a different, longer pickle")
    assert_one_line_error(run_cli(PROG, [*base, "--check"]), PROG, "size differs")


def test_resume_path_missing(work):
    base, tmp = work
    assert_one_line_error(run_cli(PROG, [*base, "--check", "--resume", str(tmp / "nope")]), PROG, "not found")


def test_resume_path_incomplete(work):
    base, tmp = work
    (tmp / "ck" / "step-000001").mkdir(parents=True)
    assert_one_line_error(run_cli(PROG, [*base, "--check", "--resume", str(tmp / "ck" / "step-000001")]),
                          PROG, "incomplete")


def test_resume_state_not_json(work, model):
    base, tmp = work
    ckpt = _fake_checkpoint(tmp / "run", settings=_settings(model))
    (ckpt / "train_state.json").write_text("{cut")
    assert_one_line_error(run_cli(PROG, [*base, "--check"]), PROG, "train_state.json", "not valid JSON")


@pytest.mark.slow  # loads the tokenizer / DeepSpeed (~10 s)
def test_check_passes_and_writes_nothing(work):
    base, tmp = work
    proc = run_cli(PROG, [*base, "--check", "--world-size", "2"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [x for x in proc.stdout.splitlines() if x.startswith(PROG)]
    assert len(lines) == 1 and "checks passed" in lines[0] and "world size 2" in lines[0]
    assert not (tmp / "run").exists() and not (tmp / "cache").exists()


# --- N workers: still one line; a killed launcher leaves nothing running ---------------------------------

@pytest.mark.slow
def test_error_inside_two_workers_is_one_line_with_the_workers_exit_code(work, tmp_path):
    """Every answer truncated away: found only while tokenising (inside the workers), still one line."""
    base, _ = work
    proc = run_cli(PROG, [*base, "--nproc-per-node", "2", "data.max_length=16", "max_steps=2"], timeout=300,
                   fresh_process=True)  # torchrun workers: only a real launcher process can start them
    assert_one_line_error(proc, PROG, "no usable training sample")
    assert "ChildFailedError" not in proc.stderr


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return [p for p in pids if p != os.getpid()]


@pytest.mark.slow
def test_kill_9_of_the_launcher_leaves_no_workers_and_a_rerun_resumes(work, model):
    base, tmp = work
    out = tmp / "run"
    args = [*base, "--nproc-per-node", "2", "data.max_length=128", "micro_batch=1", "grad_accum=2",
            "max_steps=30", "save_every=1000", "eval_every=0", "log_every=1"]
    launcher = subprocess.Popen([sys.executable, "-m", "bayling.cli.train", *args], cwd=REPO, env=cli_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while not (out / "metrics.jsonl").is_file() and time.time() < deadline and launcher.poll() is None:
        time.sleep(0.2)
    assert launcher.poll() is None, "the run ended before it could be killed"
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    deadline = time.time() + 120
    while _processes_mentioning(f"out={out}") and time.time() < deadline:
        time.sleep(0.5)
    left = _processes_mentioning(f"out={out}")
    for pid in left:  # clean up before failing
        os.kill(pid, signal.SIGKILL)
    assert not left, "torchrun or workers outlived the killed launcher"
    assert rundir.owner(out) is None
    # the workers stopped on SIGTERM by checkpointing: a rerun resumes from there and finishes
    proc = run_cli(PROG, args, timeout=600, fresh_process=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from" in proc.stdout and (out / "final" / "bayling.json").is_file()


@pytest.mark.slow
def test_second_live_trainer_is_refused_with_the_owner_pid(work):
    base, tmp = work
    out = tmp / "run"
    args = [*base, "data.max_length=128", "max_steps=400", "save_every=1000", "eval_every=0"]
    first = subprocess.Popen([sys.executable, "-m", "bayling.cli.train", *args], cwd=REPO, env=cli_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        while rundir.owner(out) is None and time.time() < deadline and first.poll() is None:
            time.sleep(0.2)
        proc = run_cli(PROG, args)
        assert_one_line_error(proc, PROG, "another bayling-train", f"pid {first.pid}")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
