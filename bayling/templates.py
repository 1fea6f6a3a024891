"""Conversation formats: ``bayling`` (Llama-2 BayLing), ``bayling3`` (Llama-3 BayLing), ``llama2-chat``.

Each format exists twice, on purpose: a Python renderer that also returns the character spans of every
assistant turn (what training puts loss on), and a Jinja ``chat_template`` that is exported with the
tokenizer so ``tokenizer.apply_chat_template`` at inference renders the very same text. Tests check the
two agree byte for byte on real tokenizers. Labels come from these spans mapped onto token offsets of the
whole rendered text, never from tokenising substrings on their own.
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
    """Rendered text plus [start, end) character spans of the tokens the model must learn to produce."""

    text: str
    spans: list[tuple[int, int]] = field(default_factory=list)


class _Builder:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.spans: list[tuple[int, int]] = []
        self.length = 0

    def add(self, text: str, trainable: bool = False) -> None:
        if trainable and text:
            self.spans.append((self.length, self.length + len(text)))
        self.parts.append(text)
        self.length += len(text)

    def done(self) -> Rendered:
        return Rendered("".join(self.parts), self.spans)


def _check_roles(messages: Sequence[Message]) -> list[Message]:
    msgs = list(messages)
    for i, m in enumerate(msgs):
        if m.get("role") not in ("system", "user", "assistant"):
            raise BaylingError(f"message {i} has role {m.get('role')!r}; expected system, user or assistant")
        if not isinstance(m.get("content"), str):
            raise BaylingError(f"message {i} has no string 'content'")
    return msgs


@dataclass(frozen=True)
class Template:
    """A conversation format; ``stop_strings`` are the tokens generation must stop at."""

    name: str
    description: str
    default_system: str | None
    stop_strings: tuple[str, ...]
    chat_template: str

    def render(
        self,
        messages: Sequence[Message],
        *,
        bos_token: str,
        eos_token: str,
        add_generation_prompt: bool = False,
    ) -> Rendered:
        msgs = _check_roles(messages)
        system = self.default_system
        if msgs and msgs[0]["role"] == "system":
            system = msgs[0]["content"]
            msgs = msgs[1:]
        render = _RENDERERS[self.name]
        return render(msgs, system, bos_token, eos_token, add_generation_prompt)


def _render_bayling(msgs, system, bos, eos, gen) -> Rendered:
    b = _Builder()
    b.add(bos)
    if system:
        b.add(system + "\n\n")
    for m in msgs:
        if m["role"] == "user":
            b.add("### Instruction:\n" + m["content"] + "\n### Response:\n")
        elif m["role"] == "assistant":
            b.add(m["content"] + eos, trainable=True)
            b.add("\n")
        else:
            raise BaylingError("a system message is only allowed first")
    return b.done()


def _render_bayling3(msgs, system, bos, eos, gen) -> Rendered:
    b = _Builder()
    b.add(bos)
    if system:
        b.add("<|start_header_id|>system<|end_header_id|>\n\n" + system.strip() + "<|eot_id|>")
    for m in msgs:
        if m["role"] == "system":
            raise BaylingError("a system message is only allowed first")
        b.add(f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n")
        b.add(m["content"].strip() + "<|eot_id|>", trainable=m["role"] == "assistant")
    if gen:
        b.add("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return b.done()


def _render_llama2_chat(msgs, system, bos, eos, gen) -> Rendered:
    b = _Builder()
    first = True
    for m in msgs:
        if m["role"] == "user":
            content = m["content"].strip()
            if first and system:
                content = f"<<SYS>>\n{system.strip()}\n<</SYS>>\n\n{content}"
            b.add(f"{bos}[INST] {content} [/INST]")
            first = False
        elif m["role"] == "assistant":
            b.add(" ")
            b.add(m["content"].strip() + " " + eos, trainable=True)
        else:
            raise BaylingError("a system message is only allowed first")
    return b.done()


_RENDERERS = {"bayling": _render_bayling, "bayling3": _render_bayling3, "llama2-chat": _render_llama2_chat}

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
    "{%- elif m['role'] == 'assistant' -%}{{- m['content'] + eos_token + '\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
)

_BAYLING3_JINJA = (
    _SYSTEM_PREAMBLE.replace("DEFAULT", repr(BAYLING3_SYSTEM))
    + "{{- bos_token -}}"
    "{%- if system -%}{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' + system | trim + '<|eot_id|>' -}}"
    "{%- endif -%}"
    "{%- for m in loop_messages -%}"
    "{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' -}}"
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
    "{%- elif m['role'] == 'assistant' -%}{{- ' ' + m['content'] | trim + ' ' + eos_token -}}{%- endif -%}"
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


def render_for_tokenizer(template: Template, tokenizer, messages: Sequence[Message], **kw) -> Rendered:
    """Render with the tokenizer's own BOS/EOS strings, as ``apply_chat_template`` would."""
    return template.render(messages, bos_token=tokenizer.bos_token or "", eos_token=tokenizer.eos_token or "", **kw)


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
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids and template.name != "bayling3":
        ids.append(tokenizer.eos_token_id)
    return ids
