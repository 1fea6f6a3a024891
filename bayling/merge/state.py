"""Saving and restoring the swarm after every iteration (resumable after kill -9).

Why not a pickle: a resumed run must never execute what it reads. Tensors go to ``swarm.safetensors`` and
everything else to ``swarm.json``; both are written to temp names and renamed, the JSON last, and the JSON
records the SHA-256 of the tensor file, so a crash between the two renames leaves the previous, consistent
pair (or is detected). ``settings`` in the JSON must equal the current run's, else the run refuses to
continue a different search in the same folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bayling.atomic import atomic_write_text
from bayling.errors import read_json
from bayling.hashing import sha256_file
from bayling.merge.checkpoint import MergeError
from bayling.merge.pso import SwarmState

STATE_JSON = "swarm.json"
STATE_TENSORS = "swarm.safetensors"


def save_state(folder: Path, state: SwarmState, settings: dict) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for i in range(len(state.x)):
        tensors[f"x.{i}"] = state.x[i].contiguous()
        tensors[f"v.{i}"] = state.v[i].contiguous()
        tensors[f"pbest.{i}"] = state.pbest[i].contiguous()
    tmp = folder / f".{STATE_TENSORS}.tmp{os.getpid()}"
    save_file(tensors, str(tmp))
    digest = sha256_file(tmp)
    final = folder / f"{STATE_TENSORS[:-12]}-{digest[:16]}.safetensors"
    os.replace(tmp, final)
    doc = {"format": 1, "settings": settings, "iteration": state.iteration, "fitness": state.fitness,
           "pbest_fitness": state.pbest_fitness, "gbest_index": state.gbest_index, "history": state.history,
           "tensors": final.name, "tensors_sha256": digest, "particles": len(state.x)}
    atomic_write_text(folder / STATE_JSON, json.dumps(doc, indent=1) + "\n")
    for old in folder.glob("swarm-*.safetensors"):
        if old.name != final.name:
            old.unlink()


def load_state(folder: Path, settings: dict) -> SwarmState | None:
    """The saved swarm, or None when there is none; an error if it belongs to a different search."""
    from safetensors.torch import load_file

    path = folder / STATE_JSON
    if not path.is_file():
        return None
    doc = read_json(path, "saved swarm state", MergeError)
    if not isinstance(doc, dict) or doc.get("format") != 1:
        raise MergeError("saved swarm state has an unknown format", path=path)
    if doc.get("settings") != settings:
        diff = sorted(k for k in set(settings) | set(doc.get("settings") or {})
                      if settings.get(k) != (doc.get("settings") or {}).get(k))
        raise MergeError(f"this folder holds a merge run with different settings ({', '.join(diff[:5])}); "
                         "use another --out to start a new one", path=path)
    tpath = folder / doc["tensors"]
    if not tpath.is_file() or sha256_file(tpath) != doc["tensors_sha256"]:
        raise MergeError("saved swarm tensors are missing or do not match swarm.json", path=tpath)
    t = load_file(str(tpath))
    n = doc["particles"]
    return SwarmState(iteration=doc["iteration"], x=[t[f"x.{i}"] for i in range(n)],
                      v=[t[f"v.{i}"] for i in range(n)], fitness=list(doc["fitness"]),
                      pbest=[t[f"pbest.{i}"] for i in range(n)], pbest_fitness=list(doc["pbest_fitness"]),
                      gbest_index=doc["gbest_index"], history=list(doc["history"]))

