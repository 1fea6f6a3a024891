"""A conversation as OpenAI-style messages: what the template renders, what ``/save`` writes.

A saved conversation is one JSON line ``{"messages": [...], "model": ..., "template": ...}``: the
``messages`` record format that ``bayling-build-data`` reads, so a chat can become training data.
``/save`` never overwrites a file this session did not write itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bayling.atomic import atomic_write_text
from bayling.errors import BaylingError

Message = dict[str, str]


@dataclass
class Conversation:
    """The system prompt (None: the template's default) and the user/assistant turns so far."""

    system: str | None = None
    turns: list[Message] = field(default_factory=list)
    saved: set[Path] = field(default_factory=set)

    def messages(self, user: str | None = None) -> list[Message]:
        msgs = [{"role": "system", "content": self.system}] if self.system is not None else []
        msgs += self.turns
        if user is not None:
            msgs.append({"role": "user", "content": user})
        return msgs

    def keep(self, messages: list[Message]) -> None:
        """Adopt the messages that fit the context (the system message is not a turn)."""
        self.turns = [m for m in messages if m["role"] != "system"]

    def reset(self) -> None:
        self.turns = []

    def exchanges(self) -> int:
        return sum(1 for m in self.turns if m["role"] == "user")

    def save(self, path: str | Path, *, model: str, template: str) -> Path:
        """Write the conversation; refuse to replace a file this session did not write."""
        p = Path(path).expanduser().resolve()
        if p.exists() and p not in self.saved:
            raise BaylingError("exists and was not written by this chat; choose another name", path=path)
        if p.is_dir() or not p.parent.is_dir():
            raise BaylingError("not a file in an existing folder", path=path)
        record = {"messages": self.messages(), "model": model, "template": template}
        atomic_write_text(p, json.dumps(record, ensure_ascii=False) + "\n")
        self.saved.add(p)
        return p
