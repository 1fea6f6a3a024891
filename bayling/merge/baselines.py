"""The data-free baselines users know, computed by MergeKit (PyPI ``mergekit``, LGPL-3.0-only, pinned).

Why MergeKit and not our own code: it is the library people run these merges with, so "TIES" in our
tables is the TIES everyone else reports. We only write its configuration and call its public
``run_merge``; each baseline lands in ``OUT/baselines/<method>/`` as a full checkpoint (the base's tokenizer,
chat template, generation config and bayling.json copied in, so bayling-eval loads it) with
``merge.json`` written last: a finished baseline is reused when the run is resumed.

Settings (MergeKit's parameter names): every expert gets ``weight`` 1; ``density`` applies to TIES and
DARE (default 0.2 = the DARE drop rate 0.8 PSO-Merging uses); ``lambda`` scales the merged task vector
(default 1). ``linear`` is the normalised mean of the experts; ``ties`` normalises by the agreeing weights
(the TIES disjoint mean, MergeKit's default). MergeKit's DARE rescales the kept deltas to the undropped
delta's L1 norm, not by 1/(1-p) as the DARE paper does (PSO's own DARE copies use the paper's rescale).
"""

from __future__ import annotations

import json
from pathlib import Path

from bayling.atomic import atomic_write_text
from bayling.merge.checkpoint import MergeError, copy_base_files

# The registry of MergeKit methods bayling-merge offers: name -> (help text, uses the base, uses --density).
# bayling.merge.runner.METHODS (CLI choices, --help, docs) is built from it; adding a line adds a method.
MERGEKIT_METHODS = {
    "linear": ("MergeKit 'linear': the mean of the experts (model soup)", False, False),
    "task_arithmetic": ("MergeKit 'task_arithmetic': base + lambda * sum of task vectors", True, False),
    "ties": ("MergeKit 'ties': trim to density, elect signs, disjoint mean", True, True),
    "dare_linear": ("MergeKit 'dare_linear': random drop to density, rescale, task arithmetic", True, True),
    "dare_ties": ("MergeKit 'dare_ties': random drop to density, rescale, TIES sign election", True, True),
}
DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}


def mergekit_config(method: str, base: Path, experts: list[Path], *, density: float, lam: float,
                    dtype: str, weights: list[float] | None = None) -> dict:
    """The MergeKit YAML (as a dict) for one baseline; ``weights``: one per expert (default 1 each)."""
    _, uses_base, uses_density = MERGEKIT_METHODS[method]
    if weights is not None and len(weights) != len(experts):
        raise MergeError(f"{len(weights)} weights for {len(experts)} experts")
    models = []
    for i, e in enumerate(experts):
        params: dict = {"weight": 1.0 if weights is None else float(weights[i])}
        if uses_density:
            params["density"] = density
        models.append({"model": str(e), "parameters": params})
    cfg: dict = {"merge_method": method, "models": models, "dtype": dtype}
    if uses_base:
        cfg["base_model"] = str(base)
        cfg["parameters"] = {"lambda": lam}
    return cfg


def run_baseline(method: str, base: Path, experts: list[Path], dest: Path, *, density: float, lam: float,
                 dtype: str, seed: int, device: str | None, inputs: list | None = None,
                 weights: list[float] | None = None) -> Path:
    """Merge with MergeKit into ``dest`` (reused when already finished with the same configuration)."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    cfg = mergekit_config(method, base, experts, density=density, lam=lam, dtype=dtype, weights=weights)
    done = dest / "merge.json"
    if done.is_file():
        try:
            meta = json.loads(done.read_text(encoding="utf-8"))
            if meta.get("mergekit_config") == cfg and meta.get("inputs") == inputs and meta.get("seed") == seed:
                return dest
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass
    try:
        config = MergeConfiguration.model_validate(cfg)
    except Exception as err:  # pydantic's ValidationError: our config is wrong for this MergeKit
        raise MergeError(f"MergeKit rejected the {method} configuration: {' '.join(str(err).split())[:300]}") from None
    options = MergeOptions(random_seed=seed, copy_tokenizer=False, write_model_card=False, quiet=True,
                           device=device or "cpu", lazy_unpickle=False)
    run_merge(config, str(dest), options)
    copy_base_files(base, dest)
    meta = {"tool": "bayling-merge", "method": method, "library": "mergekit", "mergekit_config": cfg,
            "seed": seed, "inputs": inputs}
    atomic_write_text(done, json.dumps(meta, indent=1) + "\n")
    return dest


def weights_dtype(state: dict) -> str:
    """MergeKit's ``dtype`` for the output: the base's floating dtype."""
    for t in state.values():
        if t.is_floating_point():
            return str(t.dtype).removeprefix("torch.")
    return "float32"
