"""Local path or hub id: one resolver, so every command takes both and fails clearly offline."""

from __future__ import annotations

import os
from pathlib import Path

from bayling.errors import OfflineError

DOWNLOAD_HINT = {
    "model": "hf download {id} --local-dir DIR",
    "dataset": "hf download --repo-type dataset {id} --local-dir DIR",
}


def is_offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def looks_like_hub_id(name: str) -> bool:
    """``org/name`` that is not an existing local path."""
    if Path(name).exists() or name.startswith((".", "/", "~")):
        return False
    parts = name.split("/")
    return len(parts) == 2 and all(parts)


def offline_error(name: str, kind: str, option: str) -> OfflineError:
    hint = DOWNLOAD_HINT.get(kind, "").format(id=name)
    return OfflineError(
        f"{kind} '{name}' is not a local path and the hub cannot be reached (offline); "
        f"on a machine with internet run `{hint}` and pass DIR to {option}",
    )


def resolve_model(name: str, option: str = "--model") -> str:
    """Return a local directory for ``name``; download by hub id when online."""
    p = Path(name).expanduser()
    if p.exists():
        return str(p)
    if not looks_like_hub_id(name):
        raise OfflineError(f"model path '{name}' does not exist", path=name)
    if is_offline():
        raise offline_error(name, "model", option)
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name)
    except Exception as err:  # network errors come in many types
        raise offline_error(name, "model", option) from err
