"""``bayling-serve``: an OpenAI-compatible chat-completions server for a checkpoint (CPU fallback of vLLM).

    bayling-serve --model runs/demo/train/final --port 8000          # http://127.0.0.1:8000/v1
    bayling-serve --model DIR --print-vllm-command                     # the GPU command: vllm serve ...

Bad input is one line on stderr and exit code 2 (see bayling.cli.run_cli).
"""

from __future__ import annotations

import argparse
import errno
import logging
import socket
import sys

from bayling.cli import run_cli
from bayling.cli.chat import ChatParser, add_model_args, add_sampling_args, sampling_from
from bayling.errors import ConfigError

PROG = "bayling-serve"


def parser() -> argparse.ArgumentParser:
    p = ChatParser(prog=PROG, description="Serve a checkpoint over HTTP with OpenAI's chat-completions API "
                "(POST /v1/chat/completions, streaming with \"stream\": true; GET /v1/models, /health). "
                "On GPUs use vLLM: --print-vllm-command prints the matching `vllm serve` command.")
    add_model_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="default 8000 (0: any free port, printed at start)")
    p.add_argument("--served-model-name", dest="served_name",
                   help="the name clients pass as \"model\" (default: --model as given, as vLLM does)")
    p.add_argument("--print-vllm-command", dest="print_vllm", action="store_true",
                   help="print the `vllm serve` command for this checkpoint (same name, host, port, template, "
                        "context) and exit")
    p.add_argument("--tensor-parallel-size", dest="tp", type=int, default=1, help="vLLM: GPUs per model (default 1)")
    p.add_argument("--log-level", dest="log_level", default="info", choices=["debug", "info", "warning", "error"])
    add_sampling_args(p, max_new_tokens=256)
    p.epilog = "Sampling flags are defaults for requests that do not set temperature/top_p/max_tokens/..."
    return p


def bind(host: str, port: int) -> socket.socket:
    """Bind before loading the model, so a taken port is one clear line, not a uvicorn traceback."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as err:
        why = "the port is in use" if err.errno == errno.EADDRINUSE else err.strerror
        raise ConfigError(f"cannot listen on {host}:{port}: {why}") from None
    except (OverflowError, ValueError):
        raise ConfigError(f"--port must be in 0..65535, got {port}") from None
    return sock


def _main(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    defaults = sampling_from(args)
    name = args.served_name or args.model
    if args.print_vllm:
        from bayling.chat.vllm import vllm_command

        cmd = vllm_command(args.model, served_name=name, host=args.host, port=args.port or 8000,
                           template=args.template, max_context=args.max_context, dtype=args.dtype,
                           tensor_parallel_size=args.tp)
        print(cmd.shell())
        for note in cmd.notes:
            print(f"# note: {note}", file=sys.stderr)
        return 0
    sock = bind(args.host, args.port)
    import uvicorn

    from bayling.chat.model import ChatModel
    from bayling.chat.server import create_app

    logging.basicConfig(level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(name)s: %(message)s")
    chat = ChatModel(args.model, template=args.template, device=args.device, dtype=args.dtype,
                     max_context=args.max_context)
    app = create_app(chat, served_name=name, defaults=defaults)
    host, port = sock.getsockname()[:2]
    print(f"{PROG}: {chat.describe()}", file=sys.stderr)
    print(f"{PROG}: serving '{name}' at http://{host}:{port}/v1 (OpenAI chat completions); Ctrl-C stops",
          file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level=args.log_level, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
