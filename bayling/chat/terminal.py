"""The interactive loop of ``bayling-chat``: read a line, stream the answer, keep the history in context.

Slash commands live in one table (``COMMANDS``) from which ``/help`` and the docs derive. Ctrl-C while an
answer streams stops that answer (the partial answer stays in the history); Ctrl-C at the prompt clears the
line; Ctrl-D or ``/exit`` quits.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from bayling.chat.history import Conversation
from bayling.chat.model import ChatModel, ContextTooLong, Sampling
from bayling.errors import BaylingError

PROMPT = ">>> "


@dataclass
class Session:
    chat: ChatModel
    sampling: Sampling
    conv: Conversation
    out: TextIO
    running: bool = True

    def say(self, text: str) -> None:
        """A notice from the chat itself (not the model), in brackets so it cannot pass for an answer."""
        self.out.write(f"[{text}]\n")
        self.out.flush()


def _reset(s: Session, arg: str) -> None:
    s.conv.reset()
    s.say("history cleared")


def _system(s: Session, arg: str) -> None:
    if not arg:
        shown = s.conv.system if s.conv.system is not None else "(the template's default)"
        s.say(f"system prompt: {shown}")
        return
    s.conv.system = arg
    s.say("system prompt set; the history is kept")


def _save(s: Session, arg: str) -> None:
    if not arg:
        s.say("usage: /save FILE")
        return
    try:
        path = s.conv.save(arg, model=str(s.chat.path), template=s.chat.template_name)
    except BaylingError as err:
        s.say(f"not saved: {err}")
        return
    s.say(f"saved {s.conv.exchanges()} exchange(s) to {path}")


def _exit(s: Session, arg: str) -> None:
    s.running = False


def _help(s: Session, arg: str) -> None:
    for name, (_, usage, text) in COMMANDS.items():
        s.out.write(f"  {usage or name:<16} {text}\n")
    s.out.flush()


COMMANDS: dict[str, tuple[Callable[[Session, str], None], str, str]] = {
    "/reset": (_reset, "", "forget the conversation (the system prompt stays)"),
    "/system": (_system, "/system TEXT", "set the system prompt (no TEXT: show it)"),
    "/save": (_save, "/save FILE", "write the conversation as a JSON line ({\"messages\": [...]})"),
    "/exit": (_exit, "", "quit (Ctrl-D does too)"),
    "/help": (_help, "", "this list"),
}


def answer(s: Session, user: str) -> str | None:
    """Stream one answer to ``user``; returns the answer, or None when the message cannot fit."""
    try:
        msgs, dropped = s.chat.fit(s.conv.messages(user), s.sampling.max_new_tokens)
    except ContextTooLong as err:
        s.say(f"not sent: {err}")
        return None
    if dropped:
        s.say(f"dropped the {dropped} oldest exchange(s) to stay within the {s.chat.context}-token context")
    s.conv.keep(msgs)
    gen = s.chat.generate(msgs, s.sampling)
    try:
        for piece in gen:
            s.out.write(piece)
            s.out.flush()
    except KeyboardInterrupt:
        gen.stop()
        for _ in gen:  # drain: the worker stops after its current token
            pass
        s.out.write("\n")
        s.say("stopped")
    else:
        s.out.write("\n")
    s.out.flush()
    s.conv.turns.append({"role": "assistant", "content": gen.text})
    return gen.text


def ctrl_c_interrupts() -> None:
    """Make Ctrl-C raise KeyboardInterrupt here even if the process that started us ignored SIGINT.

    Why: an ignored signal stays ignored across exec, and Python then installs no handler, so Ctrl-C would
    neither stop an answer nor clear a line (seen when the chat is started from a test runner, a job
    launcher or ``nohup``-like wrappers). The chat is interactive: Ctrl-C is the user's, so take it back."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def run_terminal(chat: ChatModel, sampling: Sampling, conv: Conversation, *,
                 out: TextIO = sys.stdout, read: Callable[[str], str] = input) -> int:
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    ctrl_c_interrupts()
    s = Session(chat, sampling, conv, out)
    s.say(f"bayling-chat: {chat.describe()}")
    s.say("type a message; /help lists commands; Ctrl-D quits")
    while s.running:
        try:
            line = read(PROMPT)
        except EOFError:
            out.write("\n")
            break
        except KeyboardInterrupt:
            out.write("\n")
            continue
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            name, _, arg = text.partition(" ")
            if name in COMMANDS:
                COMMANDS[name][0](s, arg.strip())
            else:
                s.say(f"unknown command {name}; /help lists commands")
            continue
        answer(s, line)
    return 0
