"""A checkpoint ready for conversation: its own chat template, every end-of-turn token, its context length.

Why one class for the terminal and the server: both must render exactly the format training used
(``bayling.json``'s template, else the tokenizer's ``chat_template``), stop on the template's end-of-turn
tokens (``</s>`` for Llama-2 formats; ``<|eot_id|>`` and ``<|end_of_text|>`` for Llama-3) and keep prompts
inside the context. Answers stream through transformers' ``TextIteratorStreamer`` from a worker thread;
one lock serialises generation (one model, one CPU), and a cancel event stops a generation between two
tokens, so a closed connection or Ctrl-C frees the model at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bayling.errors import BaylingError, ConfigError, read_json
from bayling.hub import resolve_model
from bayling.templates import TEMPLATES, Template, generation_stop_ids, get_template

Message = dict[str, str]
META_FILE = "bayling.json"
TEMPLATE_HINT = "--template " + "|".join(TEMPLATES)
# transformers' "no limit" value for tokenizer.model_max_length is 1e30; anything this large means unset.
_UNSET_LENGTH = 10**9


class ContextTooLong(BaylingError):
    """The newest message alone (plus the room asked for the answer) does not fit the model's context."""


@dataclass
class Sampling:
    """Decoding settings; ``temperature == 0`` means greedy (deterministic) decoding."""

    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 0
    max_new_tokens: int = 512
    repetition_penalty: float = 1.0
    seed: int | None = None

    def check(self) -> Sampling:
        if not 0 <= self.temperature <= 2:
            raise ConfigError(f"temperature must be in [0, 2], got {self.temperature}", field="temperature")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}", field="top_p")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0 (0 = off), got {self.top_k}", field="top_k")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}", field="max_new_tokens")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"repetition_penalty must be > 0, got {self.repetition_penalty}",
                              field="repetition_penalty")
        return self


def read_meta(path: Path) -> dict:
    """``final/bayling.json`` written by bayling-train at export ({} for other checkpoints)."""
    file = path / META_FILE
    if not file.is_file():
        return {}
    meta = read_json(file, what=META_FILE, error=ConfigError)
    if not isinstance(meta, dict):
        raise ConfigError("expected a JSON object", path=file)
    return meta


def choose_template(path: Path, meta: dict, override: str | None) -> tuple[Template | None, str]:
    """``--template`` beats ``bayling.json``'s "template", which beats the tokenizer's own chat_template."""
    if override:
        return get_template(override), "--template"
    name = meta.get("template")
    if name is None:
        return None, "tokenizer chat_template"
    if not isinstance(name, str) or name not in TEMPLATES:
        raise ConfigError(f"unknown template {name!r}; known: {', '.join(TEMPLATES)} (or pass {TEMPLATE_HINT})",
                          path=path / META_FILE, field="template")
    return get_template(name), META_FILE


def context_length(meta: dict, tokenizer, config, override: int | None) -> tuple[int, str]:
    """The longest prompt + answer the model was trained/built for, and where that number came from."""
    if override is not None:
        if override < 2:
            raise ConfigError(f"--max-context must be >= 2, got {override}")
        return override, "--max-context"
    if isinstance(meta.get("max_length"), int) and meta["max_length"] > 1:
        return meta["max_length"], f"{META_FILE} max_length"
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 1 < tok_max < _UNSET_LENGTH:
        return tok_max, "tokenizer model_max_length"
    return int(config.max_position_embeddings), "config max_position_embeddings"


def check_device(device: str) -> None:
    """A device torch cannot use is the user's error (one line), not a traceback from deep in torch."""
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {device!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA GPU is available here (use --device cpu)")


def quiet_libraries() -> None:
    """Library warnings and loading bars would interleave with a streamed answer or a server log."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


class ChatModel:
    """A causal LM + tokenizer from a checkpoint dir (or hub id) that answers conversations."""

    def __init__(self, model: str, *, template: str | None = None, device: str | None = None,
                 dtype: str | None = None, max_context: int | None = None, quiet: bool = True) -> None:
        # Every check a user's input can fail comes before the (slow) torch/transformers imports.
        self.path = Path(resolve_model(model))
        if not (self.path / "config.json").is_file():
            raise ConfigError("not a model directory (no config.json)", path=self.path)
        meta = read_meta(self.path)
        tpl, self.template_source = choose_template(self.path, meta, template)
        if max_context is not None and max_context < 2:
            raise ConfigError(f"--max-context must be >= 2, got {max_context}")

        import torch
        from transformers import AutoModelForCausalLM

        from bayling.tokenizer import load_tokenizer

        if quiet:
            quiet_libraries()
        self.tokenizer = load_tokenizer(str(self.path), tpl)
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(f"the model's tokenizer has no chat template; choose one with {TEMPLATE_HINT}",
                              path=self.path)
        self.template_name = tpl.name if tpl else "tokenizer"
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        check_device(self.device)
        dtype = dtype or ("bfloat16" if self.device.startswith("cuda") else "float32")
        self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=getattr(torch, dtype))
        self.model.to(self.device).eval()
        self.stop_ids = generation_stop_ids(self.model.generation_config.eos_token_id, self.tokenizer, tpl)
        self.context, self.context_source = context_length(meta, self.tokenizer, self.model.config, max_context)
        self._lock = threading.Lock()

    def describe(self) -> str:
        return (f"{self.path} | template {self.template_name} ({self.template_source}) | context {self.context} "
                f"tokens ({self.context_source}) | stops at {self.stop_tokens()} | {self.device}")

    def stop_tokens(self) -> str:
        return ", ".join(self.tokenizer.convert_ids_to_tokens(i) for i in self.stop_ids)

    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        """The conversation rendered by the model's chat template, ready for the assistant's next turn."""
        try:
            text = self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        except Exception as err:  # jinja2 raises its own error types for templates that reject a conversation
            raise BaylingError(f"the chat template rejected the conversation: {err}") from None
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def fit(self, messages: Sequence[Message], max_new_tokens: int) -> tuple[list[Message], int]:
        """Drop the oldest exchanges (never the system message) until prompt + answer fit the context.

        Returns the kept messages and how many exchanges were dropped; raises ContextTooLong when even
        the newest user message alone does not fit."""
        msgs = list(messages)
        system = msgs[:1] if msgs and msgs[0]["role"] == "system" else []
        turns = msgs[len(system):]
        dropped = 0
        while True:
            n = len(self.prompt_ids(system + turns))
            if n + max_new_tokens <= self.context:
                return system + turns, dropped
            nxt = next((i for i in range(1, len(turns)) if turns[i]["role"] == "user"), None)
            if nxt is None:
                raise ContextTooLong(
                    f"the prompt is {n} tokens; with room for {max_new_tokens} new tokens it exceeds the "
                    f"model's {self.context}-token context ({self.context_source})")
            turns = turns[nxt:]
            dropped += 1

    def generate(self, messages: Sequence[Message], sampling: Sampling,
                 cancel: threading.Event | None = None) -> Generation:
        """Start answering ``messages``; iterate the result for text pieces as they are produced."""
        return Generation(self, self.prompt_ids(messages), sampling, cancel or threading.Event())


class Generation:
    """One answer being generated in a worker thread; iterating yields text, then the counts are final."""

    def __init__(self, chat: ChatModel, prompt: list[int], sampling: Sampling, cancel: threading.Event) -> None:
        from transformers import TextIteratorStreamer

        self.chat, self.prompt, self.sampling, self.cancel = chat, prompt, sampling, cancel
        self.prompt_tokens = len(prompt)
        self.completion_tokens = 0
        self.finish_reason: str | None = None  # "stop" | "length" | "cancelled"
        self.text = ""
        self._error: BaseException | None = None
        self._streamer = TextIteratorStreamer(chat.tokenizer, skip_prompt=True, skip_special_tokens=True)
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def _config(self):
        from transformers import GenerationConfig

        s, tok = self.sampling, self.chat.tokenizer
        pad = tok.pad_token_id
        if pad is None or pad >= self.chat.model.get_input_embeddings().num_embeddings:
            pad = self.chat.stop_ids[0]  # a pad token added to the tokenizer has no embedding row
        kw = dict(max_new_tokens=s.max_new_tokens, eos_token_id=self.chat.stop_ids, pad_token_id=pad,
                  bos_token_id=tok.bos_token_id, repetition_penalty=s.repetition_penalty)
        if s.temperature > 0:
            return GenerationConfig(do_sample=True, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, **kw)
        return GenerationConfig(do_sample=False, **kw)

    def _work(self) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        cancel = self.cancel

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

        ended = False
        try:
            with self.chat._lock:
                if cancel.is_set():
                    self.finish_reason = "cancelled"
                    return
                if self.sampling.seed is not None:
                    torch.manual_seed(self.sampling.seed)
                ids = torch.tensor([self.prompt], device=self.chat.device)
                with torch.inference_mode():
                    out = self.chat.model.generate(
                        input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=self._config(),
                        streamer=self._streamer, stopping_criteria=StoppingCriteriaList([Cancelled()]))
                ended = True  # generate() ends the streamer itself
                new = out[0, ids.shape[1]:].tolist()
                self.completion_tokens = len(new)
                if new and new[-1] in self.chat.stop_ids:
                    self.finish_reason = "stop"
                else:
                    self.finish_reason = "cancelled" if cancel.is_set() else "length"
        except BaseException as err:  # re-raised in the consumer's thread
            self._error = err
        finally:
            if not ended:
                self._streamer.end()

    def __iter__(self) -> Iterator[str]:
        for piece in self._streamer:
            if piece:
                self.text += piece
                yield piece
        self._thread.join()
        if self._error is not None:
            raise self._error

    def wait(self) -> None:
        """Block until the worker has finished (the counts and finish_reason are then final)."""
        self._thread.join()

    def stop(self) -> None:
        """Ask the worker to stop after the current token (client gone, Ctrl-C)."""
        self.cancel.set()
