"""``bayling-chat``: talk to a checkpoint in the terminal, or answer one prompt and exit.

    bayling-chat --model runs/demo/train/final
    bayling-chat --model DIR --once "Translate into French: good morning" --temperature 0
    echo "hello" | bayling-chat --model DIR --once -

Bad input is one line on stderr and exit code 2 (see bayling.cli.run_cli).
"""

from __future__ import annotations

import argparse
import sys

from bayling.cli import run_cli
from bayling.errors import ConfigError
from bayling.templates import TEMPLATES

PROG = "bayling-chat"


class ChatParser(argparse.ArgumentParser):
    """argparse that reports a usage error as a ConfigError (one line, exit 2) instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{message} (see {self.prog} --help)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Options shared with bayling-serve: which checkpoint and how to load it."""
    p.add_argument("--model", required=True, help="checkpoint dir (bayling-train's RUN/final) or hub id")
    p.add_argument("--template", choices=list(TEMPLATES),
                   help="override the checkpoint's chat template (default: final/bayling.json's, else the "
                        "tokenizer's chat_template)")
    p.add_argument("--max-context", dest="max_context", type=int,
                   help="context in tokens (default: bayling.json max_length, else the tokenizer's/config's)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="default: bfloat16 on GPU, float32 on CPU")


def add_sampling_args(p: argparse.ArgumentParser, max_new_tokens: int) -> None:
    p.add_argument("--temperature", type=float, default=0.7, help="0 = greedy (default 0.7)")
    p.add_argument("--top-p", dest="top_p", type=float, default=0.9, help="nucleus sampling (default 0.9)")
    p.add_argument("--top-k", dest="top_k", type=int, default=0, help="0 = off (default)")
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=max_new_tokens,
                   help=f"longest answer in tokens (default {max_new_tokens})")
    p.add_argument("--repetition-penalty", dest="repetition_penalty", type=float, default=1.0,
                   help="HF repetition penalty (default 1.0 = none)")
    p.add_argument("--seed", type=int, help="seed for sampling (reproducible answers)")


def parser() -> argparse.ArgumentParser:
    p = ChatParser(prog=PROG, description="Chat with a checkpoint in the terminal: streamed answers, the "
                "checkpoint's own chat template and stop tokens, history kept within the context. Commands "
                "in the chat: /reset, /system TEXT, /save FILE, /exit, /help.")
    add_model_args(p)
    p.add_argument("--system", help="system prompt (default: the template's own)")
    p.add_argument("--once", metavar="PROMPT", help="print one answer to PROMPT and exit ('-' reads stdin)")
    add_sampling_args(p, max_new_tokens=512)
    return p


def sampling_from(args: argparse.Namespace):
    from bayling.chat.model import Sampling

    return Sampling(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                    max_new_tokens=args.max_new_tokens, repetition_penalty=args.repetition_penalty,
                    seed=args.seed).check()


def _main(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    sampling = sampling_from(args)
    prompt = args.once
    if prompt == "-":
        prompt = sys.stdin.read()
    if prompt is not None and not prompt.strip():
        raise ConfigError("--once needs a non-empty prompt")
    from bayling.chat.history import Conversation
    from bayling.chat.model import ChatModel
    from bayling.chat.terminal import run_terminal

    chat = ChatModel(args.model, template=args.template, device=args.device, dtype=args.dtype,
                     max_context=args.max_context)
    conv = Conversation(system=args.system)
    if prompt is None:
        return run_terminal(chat, sampling, conv)
    msgs, _ = chat.fit(conv.messages(prompt), sampling.max_new_tokens)  # one turn: nothing to drop
    for piece in chat.generate(msgs, sampling):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
