"""The 2N+1 starting models of PSO-Merging and the two ways a particle becomes a model.

Starting models (the paper, per the reviews): index 0 the base B, 1..N the experts E_i, N+1..2N the DARE
copies ``B + DARE(E_i - B)`` (drop rate 0.8 = density 0.2). The DARE copies are never stored: each tensor is
re-drawn from a generator keyed by (seed, expert, tensor name) when needed, so memory holds N+1 models.

* ``coefficients`` formulation: a particle is c in R^(2N+1) and its model is ``sum_j c_j S_j`` (exact when
  the random factors are per particle, see bayling.merge.pso); one model is materialised at a time.
* ``weights`` formulation: a particle is the flattened float32 model (all floating tensors concatenated).
"""

from __future__ import annotations

import hashlib

import torch

FORMULATIONS = ("auto", "coefficients", "weights")


def tensor_generator(seed: int, model_index: int, name: str) -> torch.Generator:
    """The DARE mask of one tensor of one expert, reproducible without storing it."""
    digest = hashlib.sha256(f"{seed}:{model_index}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def dare(delta: torch.Tensor, density: float, gen: torch.Generator) -> torch.Tensor:
    """DARE as in its paper: drop each element with probability p = 1 - density, rescale survivors by 1/(1-p).

    (MergeKit's DARE instead rescales to the L1 norm of the undropped delta; PSO-Merging cites the paper.)"""
    if density >= 1.0:
        return delta.clone()
    keep = torch.rand(delta.shape, generator=gen) < density
    return torch.where(keep, delta / density, torch.zeros((), dtype=delta.dtype))


class StartingModels:
    """Base + experts (as loaded) and the recipe for the DARE copies."""

    def __init__(self, base: dict[str, torch.Tensor], experts: list[dict[str, torch.Tensor]], *,
                 dare_density: float = 0.2, seed: int = 0, dare_copies: bool = True) -> None:
        self.base = base
        self.experts = experts
        self.dare_density = dare_density
        self.seed = seed
        self.dare_copies = dare_copies
        self.names = [n for n, t in base.items() if t.is_floating_point()]

    @property
    def count(self) -> int:
        return 1 + len(self.experts) * (2 if self.dare_copies else 1)

    def labels(self) -> list[str]:
        n = len(self.experts)
        return ["base"] + [f"expert{i + 1}" for i in range(n)] + \
            ([f"dare(expert{i + 1})" for i in range(n)] if self.dare_copies else [])

    def component(self, j: int, name: str) -> torch.Tensor:
        """Tensor ``name`` of starting model j, in float32."""
        b = self.base[name].float()
        n = len(self.experts)
        if j == 0:
            return b
        if j <= n:
            return self.experts[j - 1][name].float()
        i = j - n - 1
        delta = self.experts[i][name].float() - b
        return b + dare(delta, self.dare_density, tensor_generator(self.seed, i + 1, name))

    def materialize(self, coefs: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model ``sum_j c_j S_j`` in the base's dtypes (non-float tensors copied from the base)."""
        out = {}
        for name, t in self.base.items():
            if name not in self.names:
                out[name] = t
                continue
            acc = torch.zeros(t.shape, dtype=torch.float32)
            for j, c in enumerate(coefs.tolist()):
                if c != 0.0:
                    acc.add_(self.component(j, name), alpha=c)
            out[name] = acc.to(t.dtype)
        return out

    # --- the weights formulation -------------------------------------------------------------------------
    def flat_start(self, j: int) -> torch.Tensor:
        return torch.cat([self.component(j, n).reshape(-1) for n in self.names])

    def flat_combination(self, coefs: torch.Tensor) -> torch.Tensor:
        acc = None
        for j, c in enumerate(coefs.tolist()):
            if c != 0.0:
                part = self.flat_start(j) * c
                acc = part if acc is None else acc.add_(part)
        return acc if acc is not None else torch.zeros(sum(self.base[n].numel() for n in self.names))

    def unflatten(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        out, pos = {}, 0
        for name, t in self.base.items():
            if name not in self.names:
                out[name] = t
                continue
            k = t.numel()
            out[name] = vec[pos:pos + k].reshape(t.shape).to(t.dtype)
            pos += k
        return out

def choose_formulation(formulation: str, random_factors: str) -> str:
    """``auto``: coefficients when exact (per-particle random factors), else weights."""
    if formulation != "auto":
        return formulation
    return "coefficients" if random_factors == "particle" else "weights"
