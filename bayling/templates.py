"""Conversation formats: ``bayling`` (Llama-2 BayLing), ``bayling3`` (Llama-3 BayLing), ``llama2-chat``.

Each format is defined ONCE, as a Jinja ``chat_template`` in which ``{% generation %}...{% endgeneration %}``
marks what the model must learn to produce (assistant contents plus the closing eos / ``<|eot_id|>``).
Training derives its labels from those markers (transformers' ``return_assistant_tokens_mask``), and the
same template is exported with the tokenizer, so ``apply_chat_template`` at inference renders exactly the
text training saw. ``TEMPLATES`` is the registry: config validation, ``--template`` choices, help and
docs/extending.md ("A conversation template") all derive from it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field

from bayling.errors import BaylingError

Message = dict[str, str]

BAYLING_SYSTEM = (
    "I am an intelligent language assistant developed by the NLP Group of ICT/CAS.\n"
    "Below is a dialog consisting of instructions and responses. Write a response that completes the request."
)
BAYLING3_SYSTEM = "I am BayLing developed by the NLP Group of ICT/CAS."


@dataclass
class Rendered:
    """Rendered text plus [start, end) character spans of the ``{% generation %}`` blocks."""

    text: str
    spans: list[tuple[int, int]] = field(default_factory=list)


def check_roles(messages: Sequence[Message]) -> list[Message]:
    """Roles the templates know, string contents, a system message only first (Jinja would silently skip
    an unknown role and train on a conversation with a hole in it)."""
    msgs = list(messages)
    for i, m in enumerate(msgs):
        if m.get("role") not in ("system", "user", "assistant"):
            raise BaylingError(f"message {i} has role {m.get('role')!r}; expected system, user or assistant")
        if not isinstance(m.get("content"), str):
            raise BaylingError(f"message {i} has no string 'content'")
        if m["role"] == "system" and i > 0:
            raise BaylingError("a system message is only allowed first")
    return msgs


@dataclass(frozen=True)
class Template:
    """A conversation format; ``stop_strings`` are the tokens generation must stop at."""

    name: str
    description: str
    default_system: str | None
    stop_strings: tuple[str, ...]
    chat_template: str
    # Llama-3 ends a turn with <|eot_id|>; its eos (<|end_of_text|>) is already in stop_strings, while the
    # Llama-2 formats stop at the tokenizer's own eos whatever its spelling.
    stop_at_eos: bool = True

    def render(self, messages: Sequence[Message], *, bos_token: str, eos_token: str,
               add_generation_prompt: bool = False) -> Rendered:
        """The text and ``{% generation %}`` spans, by transformers' own Jinja renderer."""
        from transformers.utils.chat_template_utils import render_jinja_template

        texts, spans = render_jinja_template(
            conversations=[check_roles(messages)], chat_template=self.chat_template,
            return_assistant_tokens_mask=True, add_generation_prompt=add_generation_prompt,
            bos_token=bos_token, eos_token=eos_token)
        return Rendered(texts[0], [tuple(x) for x in spans[0]])


_SYSTEM_PREAMBLE = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set system = DEFAULT -%}{%- set loop_messages = messages -%}{%- endif -%}"
)

_BAYLING_JINJA = (
    _SYSTEM_PREAMBLE.replace("DEFAULT", repr(BAYLING_SYSTEM))
    + "{{- bos_token -}}{%- if system -%}{{- system + '\\n\\n' -}}{%- endif -%}"
    "{%- for m in loop_messages -%}"
    "{%- if m['role'] == 'user' -%}{{- '### Instruction:\\n' + m['content'] + '\\n### Response:\\n' -}}"
    "{%- elif m['role'] == 'assistant' -%}"
    "{%- generation -%}{{- m['content'] + eos_token -}}{%- endgeneration -%}{{- '\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
)

_BAYLING3_JINJA = (
    _SYSTEM_PREAMBLE.replace("DEFAULT", repr(BAYLING3_SYSTEM))
    + "{{- bos_token -}}"
    "{%- if system -%}{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' + system | trim + '<|eot_id|>' -}}"
    "{%- endif -%}"
    "{%- for m in loop_messages -%}"
    "{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' -}}"
    "{%- if m['role'] == 'assistant' -%}"
    "{%- generation -%}{{- m['content'] | trim + '<|eot_id|>' -}}{%- endgeneration -%}"
    "{%- else -%}{{- m['content'] | trim + '<|eot_id|>' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)

_LLAMA2_CHAT_JINJA = (
    _SYSTEM_PREAMBLE.replace("DEFAULT", "none")
    + "{%- for m in loop_messages -%}"
    "{%- if m['role'] == 'user' -%}"
    "{%- if loop.first and system -%}"
    "{%- set content = '<<SYS>>\\n' + system | trim + '\\n<</SYS>>\\n\\n' + m['content'] | trim -%}"
    "{%- else -%}{%- set content = m['content'] | trim -%}{%- endif -%}"
    "{{- bos_token + '[INST] ' + content + ' [/INST]' -}}"
    # The space after [/INST] is generated by the model (the prompt ends at "[/INST]"), and Llama-2
    # tokenises it into the first answer token ("▁Hello"), so it is inside the generation block.
    "{%- elif m['role'] == 'assistant' -%}"
    "{%- generation -%}{{- ' ' + m['content'] | trim + ' ' + eos_token -}}{%- endgeneration -%}{%- endif -%}"
    "{%- endfor -%}"
)

TEMPLATES: dict[str, Template] = {
    "bayling": Template(
        "bayling",
        "BayLing (Llama-2 based 7B/13B): '### Instruction:' / '### Response:' turns ending in </s>",
        BAYLING_SYSTEM,
        ("</s>",),
        _BAYLING_JINJA,
    ),
    "bayling3": Template(
        "bayling3",
        "BayLing-3 (Llama-3 based 8B): Llama-3 header tokens, <|eot_id|> after each message",
        BAYLING3_SYSTEM,
        ("<|eot_id|>", "<|end_of_text|>"),
        _BAYLING3_JINJA,
        stop_at_eos=False,
    ),
    "llama2-chat": Template(
        "llama2-chat",
        "Llama-2-Chat [INST] ... [/INST] format the Chat bases were trained with",
        None,
        ("</s>",),
        _LLAMA2_CHAT_JINJA,
    ),
}


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(TEMPLATES), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise BaylingError(f"unknown template {name!r}{hint}; known: {', '.join(TEMPLATES)}") from None


def install_template(tokenizer, template: Template) -> None:
    """Attach the Jinja template so the saved tokenizer renders exactly what training saw."""
    tokenizer.chat_template = template.chat_template


def stop_token_ids(tokenizer, template: Template) -> list[int]:
    """Ids generation must stop at; unknown strings are skipped (a tokenizer may lack one of them)."""
    ids: list[int] = []
    for s in template.stop_strings:
        tid = tokenizer.convert_tokens_to_ids(s)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid not in ids:
            ids.append(tid)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids and template.stop_at_eos:
        ids.append(tokenizer.eos_token_id)
    return ids


def generation_stop_ids(eos, tokenizer, template: Template | None) -> list[int]:
    """Every id a backend stops at: the generation config's eos (int, list or None; the export writes every
    end-of-turn id there) plus the template's stop tokens; the tokenizer's eos only when both give nothing.
    One function so the evaluator's HF and vLLM backends and bayling-chat stop at the same set."""
    ids = [eos] if isinstance(eos, int) else [i for i in (eos or []) if i is not None]
    if template is not None:
        ids += [i for i in stop_token_ids(tokenizer, template) if i not in ids]
    if not ids and tokenizer.eos_token_id is not None:
        ids = [tokenizer.eos_token_id]
    return ids
