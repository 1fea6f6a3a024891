"""Token-cache tokenisation speed: Jinja ``{% generation %}`` templates vs the former Python renderers.

Issue 12 made each chat template's Jinja text (with ``{% generation %}`` markers) the only definition and
derives the labels through transformers' ``apply_chat_template(return_assistant_tokens_mask=True)``. This
measures that path (``bayling.train.tokenize.tokenize_batch``) side by side with the former one — the Python
renderer of ``--baseline-rev`` (loaded from git), one batched tokenizer call with offsets, and the overlap
rule on character spans — on the same conversations, alternating the two in every repeat, and checks that
both give identical ids and labels.

    python benchmarks/cache_build.py --repeats 5 [--conversations 2000] [--baseline-rev 84fa4d6]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bayling.templates import get_template  # noqa: E402
from bayling.tokenizer import load_tokenizer, tokenizer_dir  # noqa: E402
from bayling.train.tokenize import tokenize_batch  # noqa: E402

CHUNK = 512  # what bayling.train.cache tokenises per call


def load_baseline_templates(rev: str):
    """bayling/templates.py as it was at ``rev`` (with its Python renderers), as a separate module."""
    src = subprocess.run(["git", "show", f"{rev}:bayling/templates.py"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_templates.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("baseline_templates", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_templates"] = module
    spec.loader.exec_module(module)
    return module


def baseline_batch(tok, tpl, conversations):
    """The former path: Python render (text + spans), one tokenizer call with offsets, overlap mask."""
    rendered = [tpl.render(m, bos_token=tok.bos_token or "", eos_token=tok.eos_token or "") for m in conversations]
    enc = tok([r.text for r in rendered], return_offsets_mapping=True, add_special_tokens=False,
              return_attention_mask=False)
    out = []
    for ids, offs, r in zip(enc["input_ids"], enc["offset_mapping"], rendered):
        off = np.asarray(offs, dtype=np.int64).reshape(-1, 2)
        starts, ends = off[:, 0], np.maximum(off[:, 1], off[:, 0] + 1)
        mask = np.zeros(len(off), dtype=bool)
        for a, b in r.spans:
            mask |= (starts < b) & (ends > a)
        mask[0] = False
        out.append((np.asarray(ids, dtype=np.int32), mask))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--conversations", type=int, default=2000)
    ap.add_argument("--baseline-rev", default="84fa4d6", help="git revision with the Python renderers")
    ap.add_argument("--template", default="bayling")
    a = ap.parse_args()

    lines = (REPO / "tests/train/data/conversations.jsonl").read_text(encoding="utf-8").splitlines()
    convs = [json.loads(x)["messages"] for x in lines if x.strip()]
    convs = (convs * (a.conversations // len(convs) + 1))[: a.conversations]
    tok_name = "llama3" if a.template == "bayling3" else "llama2"
    tpl = get_template(a.template)
    tok = load_tokenizer(str(tokenizer_dir(tok_name)), tpl)
    old_tpl = load_baseline_templates(a.baseline_rev).get_template(a.template)

    def run_new():
        return [s for i in range(0, len(convs), CHUNK) for s in tokenize_batch(tok, tpl, convs[i:i + CHUNK], 10**6)]

    def run_old():
        return [s for i in range(0, len(convs), CHUNK) for s in baseline_batch(tok, old_tpl, convs[i:i + CHUNK])]

    new, old = run_new(), run_old()  # warm-up, and the equality check
    kept = [(n, o) for n, o in zip(new, old) if not isinstance(n, str)]
    same = all(np.array_equal(n.input_ids, o[0]) and np.array_equal(n.trainable, o[1]) for n, o in kept)
    times = {"python renderer (baseline)": [], "jinja {% generation %} (now)": []}
    for _ in range(a.repeats):
        for name, fn in (("python renderer (baseline)", run_old), ("jinja {% generation %} (now)", run_new)):
            t0 = time.perf_counter()
            fn()
            times[name].append(len(convs) / (time.perf_counter() - t0))
    base = statistics.median(times["python renderer (baseline)"])
    print(f"{len(convs)} conversations, template {a.template}, tokenizer {tok_name}, chunks of {CHUNK}; "
          f"identical ids and labels: {same} ({len(kept)} samples)")
    print("| path | conversations/s per repeat | median | vs baseline |\n|---|---|---:|---:|")
    for name, vals in times.items():
        med = statistics.median(vals)
        print(f"| {name} | {', '.join(f'{v:.0f}' for v in vals)} | {med:.0f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
