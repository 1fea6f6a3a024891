"""The ``vllm serve`` command that serves an exported checkpoint on GPUs, derived from the checkpoint's files.

Why generate it instead of documenting a fixed line: the settings that make vLLM answer like our own
generation live in the checkpoint — the context length trained for (``bayling.json`` max_length ->
``--max-model-len``), the chat template (in the tokenizer, or ``--template`` -> ``--chat-template``, which
vLLM accepts as a single-line template string; ours are single-line), and the end-of-turn ids (the export
writes them to ``generation_config.json``'s ``eos_token_id``, which vLLM reads with
``--generation-config auto``). Stop ids that only an overriding template knows cannot be set on vLLM's
command line: the notes tell clients to send them as ``stop_token_ids``.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from bayling.chat.model import TEMPLATE_HINT, choose_template, read_meta
from bayling.errors import ConfigError, read_json
from bayling.templates import stop_token_ids


@dataclass
class VllmCommand:
    argv: list[str]
    notes: list[str] = field(default_factory=list)

    def shell(self) -> str:
        return shlex.join(self.argv)


def _has_chat_template(path: Path) -> bool:
    """transformers 5 saves the template as chat_template.jinja; older exports keep it in tokenizer_config."""
    if (path / "chat_template.jinja").is_file():
        return True
    cfg = path / "tokenizer_config.json"
    return cfg.is_file() and bool((read_json(cfg, "tokenizer_config.json", ConfigError) or {}).get("chat_template"))


def _generation_eos(path: Path) -> list[int]:
    file = path / "generation_config.json"
    if not file.is_file():
        return []
    eos = (read_json(file, "generation_config.json", ConfigError) or {}).get("eos_token_id")
    return [eos] if isinstance(eos, int) else list(eos or [])


def vllm_command(model: str, *, served_name: str, host: str, port: int, template: str | None = None,
                 max_context: int | None = None, dtype: str | None = None,
                 tensor_parallel_size: int = 1) -> VllmCommand:
    """Build the command from a local checkpoint dir (reads config files and the tokenizer, no weights)."""
    path = Path(model)
    if not (path / "config.json").is_file():
        raise ConfigError("not a model directory (no config.json)", path=path)
    meta = read_meta(path)
    tpl, _source = choose_template(path, meta, template)
    argv = ["vllm", "serve", str(path), "--served-model-name", served_name, "--host", host, "--port", str(port),
            "--generation-config", "auto"]
    notes: list[str] = []
    length = max_context or meta.get("max_length")
    if isinstance(length, int):
        argv += ["--max-model-len", str(length)]
    if dtype:
        argv += ["--dtype", dtype]
    if tensor_parallel_size > 1:
        argv += ["--tensor-parallel-size", str(tensor_parallel_size)]
    if template:
        argv += ["--chat-template", tpl.chat_template]
    elif not _has_chat_template(path):
        raise ConfigError(f"the checkpoint's tokenizer has no chat template; choose one with {TEMPLATE_HINT}",
                          path=path)
    if tpl is not None:
        from bayling.tokenizer import load_tokenizer

        missing = [i for i in stop_token_ids(load_tokenizer(str(path)), tpl) if i not in _generation_eos(path)]
        if missing:
            notes.append(f"generation_config.json lacks the template's end-of-turn ids {missing}: clients must "
                         f"send them, e.g. extra_body={json.dumps({'stop_token_ids': missing})}")
    return VllmCommand(argv, notes)
