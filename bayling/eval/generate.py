"""Batched translation generation: chat-template prompts, length-sorted left-padded batches, stop tokens.

Why this shape: one prompt at a time wastes the hardware (see benchmarks/generation_speed.py); sorting by
length keeps padding small; left padding keeps every sequence's last prompt token adjacent to its first new
token, so batched greedy output equals one-at-a-time greedy output (tested). The model's own chat template
(``tokenizer.apply_chat_template``) is used, so evaluation sees exactly the format training used. The HF
backend is the default; vLLM is used when asked for (``--backend vllm``, GPU, vLLM installed).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bayling.errors import ConfigError
from bayling.hub import resolve_model
from bayling.templates import TEMPLATES, generation_stop_ids, get_template

TEMPLATE_HINT = "--template " + "|".join(TEMPLATES)


@dataclass
class GenStats:
    sentences: int = 0
    new_tokens: int = 0
    seconds: float = 0.0


def checkpoint_template(model_dir: str, explicit: str | None):
    """The conversation template to render prompts with: ``--template``, else the trainer's
    ``bayling.json`` "template" (the checkpoint says what it was trained with), else None (the tokenizer's own
    chat_template is used as is)."""
    if explicit:
        return get_template(explicit)
    meta = Path(model_dir) / "bayling.json"
    if meta.is_file():
        from bayling.errors import read_json

        doc = read_json(meta, "bayling.json", ConfigError)
        name = doc.get("template") if isinstance(doc, dict) else None
        if isinstance(name, str) and name:
            return get_template(name)
    return None


def clean_output(text: str) -> str:
    """One line per hypothesis: newlines (and other line separators) become spaces."""
    return " ".join(text.replace("\r", "\n").replace("\u2028", "\n").split("\n")).strip()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def vllm_installed() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


class HFGenerator:
    """A causal LM + tokenizer from a local dir or hub id, generating with transformers."""

    def __init__(self, model: str, *, template: str | None = None, device: str | None = None,
                 dtype: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        from bayling.tokenizer import load_tokenizer

        self.path = resolve_model(model)
        if not (Path(self.path) / "config.json").is_file():
            raise ConfigError("not a model directory (no config.json)", path=self.path)
        tpl = checkpoint_template(self.path, template)
        self.tokenizer = load_tokenizer(self.path, tpl)
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(f"the model's tokenizer has no chat template; choose one with {TEMPLATE_HINT}",
                              path=self.path)
        self.tokenizer.padding_side = "left"
        self.device = device or ("cuda" if _cuda_available() else "cpu")
        if dtype is None:
            dtype = "bfloat16" if self.device.startswith("cuda") else "float32"
        self.dtype = dtype
        if self.device == "cpu":
            from bayling.threads import configure_torch

            configure_torch()  # this process's CPUs, not every core of a shared node (bayling/threads.py)
        self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=getattr(torch, dtype))
        self.model.to(self.device).eval()
        self.stop_ids = generation_stop_ids(self.model.generation_config.eos_token_id, self.tokenizer, tpl)
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None or self.pad_id >= self.model.get_input_embeddings().num_embeddings:
            # A pad token added to the tokenizer has no embedding row; at inference padding is masked and
            # outputs are cut at the first stop token, so padding with a stop token is harmless.
            self.pad_id = self.stop_ids[0]

    def _left_pad(self, rows: list[list[int]]) -> dict:
        return _left_pad_impl(rows, self.pad_id, self.device)

    def render(self, user_text: str) -> str:
        """One user turn inside the model's chat template, ready for the assistant's answer."""
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True
        )

    def generate(self, prompts: Sequence[str], *, beams: int = 5, batch_size: int = 16,
                 max_new_tokens: int = 1024, desc: str = "generate", stats: GenStats | None = None,
                 progress: bool = True, repetition_penalty: float = 1.0) -> list[str]:
        """Translate rendered prompts; returns outputs in the input order, one line each.

        ``repetition_penalty`` (HF's, CTRL-style) applies to the tokens generated so far only: the prompt is
        exempt, so names and numbers can still be copied from the source, and left padding never counts
        (batched output stays equal to one-at-a-time output)."""
        import time

        import torch
        from tqdm import tqdm
        from transformers import GenerationConfig, LogitsProcessorList, RepetitionPenaltyLogitsProcessor

        tok = self.tokenizer
        ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        cfg = GenerationConfig(
            max_new_tokens=max_new_tokens, num_beams=beams, do_sample=False, eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id, bos_token_id=tok.bos_token_id,
        )
        outputs: list[str] = [""] * len(ids)
        start = time.perf_counter()
        batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
        bar = tqdm(batches, desc=desc, unit="batch", disable=not progress, file=sys.stderr, leave=False)
        for batch in bar:
            enc = self._left_pad([ids[i] for i in batch])
            processors = LogitsProcessorList()
            if repetition_penalty != 1.0:
                processors.append(RepetitionPenaltyLogitsProcessor(
                    float(repetition_penalty), prompt_ignore_length=enc["input_ids"].shape[1]))
            with torch.inference_mode():
                out = self.model.generate(**enc, generation_config=cfg, logits_processor=processors)
            new = out[:, enc["input_ids"].shape[1]:]
            for row, i in zip(new.tolist(), batch):
                end = _stop_index(row, self.stop_ids)
                if stats is not None:
                    stats.new_tokens += min(end + 1, len(row))  # the stop token was generated too
                outputs[i] = clean_output(tok.decode(row[:end], skip_special_tokens=True))
        if stats is not None:
            stats.sentences += len(ids)
            stats.seconds += time.perf_counter() - start
        return outputs


def _left_pad_impl(rows: list[list[int]], pad_id: int, device: str) -> dict:
    """Left-pad token id lists into input_ids + attention_mask tensors."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, r in enumerate(rows):
        if r:
            ids[k, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[k, width - len(r):] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def _stop_index(tokens: list[int], stops: list[int]) -> int:
    """Position of the first stop token (text after it is padding), or the length if none."""
    for n, t in enumerate(tokens):
        if t in stops:
            return n
    return len(tokens)


class VLLMGenerator(HFGenerator):
    """vLLM engine for GPU throughput; prompts are rendered with the same HF chat template.

    Decoding matches the HF backend's: greedy (temperature 0) or beam search with the same width and new-token
    budget, stopping at the same ids (generation_config's eos plus the template's end-of-turn tokens), and the
    output is cut at the first stop id and decoded by the same tokenizer. vLLM schedules its own batches, so
    ``batch_size`` does not apply. The argument mapping is tested without a GPU (tests/eval/test_vllm_backend.py).
    """

    def __init__(self, model: str, *, template: str | None = None, device: str | None = None,
                 dtype: str | None = None) -> None:
        from vllm import LLM

        from bayling.tokenizer import load_tokenizer

        self.path = resolve_model(model)
        tpl = checkpoint_template(self.path, template)
        self.tokenizer = load_tokenizer(self.path, tpl)
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(f"the model's tokenizer has no chat template; choose one with {TEMPLATE_HINT}",
                              path=self.path)
        self.device, self.dtype = "cuda", dtype or "bfloat16"
        self.stop_ids = vllm_stop_ids(self.path, self.tokenizer, tpl)
        self.llm = LLM(**vllm_engine_args(self.path, self.dtype))

    def generate(self, prompts: Sequence[str], *, beams: int = 5, batch_size: int = 16,
                 max_new_tokens: int = 1024, desc: str = "generate", stats: GenStats | None = None,
                 progress: bool = True, repetition_penalty: float = 1.0) -> list[str]:
        import time

        if repetition_penalty != 1.0:  # vLLM's penalty also counts the prompt: not the same decoding
            raise ConfigError("--repetition-penalty needs the hf backend (vLLM also penalises prompt tokens)",
                              field="repetition_penalty")

        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        start = time.perf_counter()
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        toks = [TokensPrompt(prompt_token_ids=row) for row in ids]
        if beams > 1:
            from vllm.sampling_params import BeamSearchParams

            res = self.llm.beam_search(toks, BeamSearchParams(beam_width=beams, max_tokens=max_new_tokens))
            new = [list(r.sequences[0].tokens[len(row):]) for r, row in zip(res, ids)]
        else:
            sp = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop_token_ids=self.stop_ids)
            res = self.llm.generate(toks, sp, use_tqdm=progress)
            new = [list(r.outputs[0].token_ids) for r in res]
        texts = [self.tokenizer.decode(row[:_stop_index(row, self.stop_ids)], skip_special_tokens=True)
                 for row in new]
        if stats is not None:
            stats.sentences += len(prompts)
            stats.new_tokens += sum(min(_stop_index(row, self.stop_ids) + 1, len(row)) for row in new)
            stats.seconds += time.perf_counter() - start
        return [clean_output(t) for t in texts]


def vllm_engine_args(model_dir: str, dtype: str) -> dict:
    """Arguments of ``vllm.LLM``: the same folder for weights and tokenizer, fixed seed, the chosen dtype."""
    return {"model": model_dir, "tokenizer": model_dir, "dtype": dtype, "seed": 0}


def vllm_stop_ids(model_dir: str, tokenizer, tpl) -> list[int]:
    """generation_config.json's eos (int or list; the tokenizer's eos when absent) + the template's stop tokens:
    the same set the HF backend stops at."""
    gen_file = Path(model_dir) / "generation_config.json"
    gen = json.loads(gen_file.read_text(encoding="utf-8")) if gen_file.is_file() else {}
    return generation_stop_ids(gen.get("eos_token_id", tokenizer.eos_token_id), tokenizer, tpl)


def check_vllm() -> None:
    """``--backend vllm`` needs the package and a GPU: one line before any work, not an import traceback."""
    if not vllm_installed() or not _cuda_available():
        raise ConfigError("--backend vllm needs vLLM installed (pip install vllm) and a GPU", field="backend")


def load_generator(model: str, *, backend: str = "auto", template: str | None = None,
                   device: str | None = None, dtype: str | None = None) -> HFGenerator:
    """``hf`` (and ``auto``): transformers. ``vllm``: the vLLM engine (opt-in: it has not been run on a GPU
    in this project's CI, so it is not picked automatically)."""
    if backend == "vllm":
        check_vllm()
        return VLLMGenerator(model, template=template, device=device, dtype=dtype)
    return HFGenerator(model, template=template, device=device, dtype=dtype)
