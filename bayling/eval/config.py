"""``bayling-eval`` settings as one typed dataclass (filled by bayling.config from YAML, key=value and flags).

Defaults follow the BayLing papers where they say something (beam 5, up to 1024 new tokens, BayLing 1's
translation prompt); everything else is an assumption documented in docs/evaluation.md. The resolved config
is stored in results.json so a run records exactly what produced it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bayling.errors import ConfigError

FAMILIES = ("en-x", "x-en", "zh-x", "x-zh")


@dataclass(frozen=True)
class Suite:
    """One ``--suite``: everything the CLI, validation, dispatch, reports and docs need to know about it.

    ``kind`` picks the runner: ``translation`` suites name a module with ``build_tasks(cfg) -> list[Task]`` and
    ``score_settings(cfg) -> dict`` (bayling.eval.flores is the model); ``knowledge`` suites list lm-eval task,
    group or alias names (run by bayling.eval.knowledge). ``required`` are EvalConfig keys the suite cannot
    run without (named as flags in the error)."""

    kind: Literal["translation", "knowledge"]
    help: str
    module: str = ""
    tasks: tuple[str, ...] = ()
    required: tuple[str, ...] = ()


#: The suite registry: --suite's choices and help, EvalConfig validation and the dispatch derive from it.
SUITES: dict[str, Suite] = {
    "flores": Suite("translation", "FLORES-101/200 devtest: X<->en and X<->zh with BayLing 1's prompt",
                    module="bayling.eval.flores"),
    "wmt22": Suite("translation", "WMT22 general task, 14 directions, WMT22's scoring",
                   module="bayling.eval.wmt", required=("wmt_dir",)),
    "knowledge": Suite("knowledge", "multilingual knowledge (lm-eval): XCOPA, Okapi ARC/HellaSwag/MMLU, Belebele, "
                       "XStoryCloze, XNLI, MGSM",
                       tasks=("xcopa_local", "okapi_arc", "okapi_hellaswag", "okapi_mmlu", "belebele_bayling",
                              "xstorycloze", "xnli", "mgsm_direct")),
    "english": Suite("knowledge", "English MMLU, ARC-Challenge/Easy, HellaSwag (lm-eval)",
                     tasks=("mmlu", "arc_challenge", "arc_easy", "hellaswag")),
}
WMT22_PAIRS = (
    "cs-en", "de-en", "de-fr", "en-cs", "en-de", "en-ja", "en-ru",
    "en-uk", "en-zh", "fr-de", "ja-en", "ru-en", "uk-en", "zh-en",
)


@dataclass
class EvalConfig:
    """Everything one ``bayling-eval`` run needs; CLI flags map 1:1 onto these keys."""

    suite: str = "flores"  # a key of SUITES
    model: str | None = None
    out: str | None = None
    # translation generation (paper: beam 5, up to 1024 new tokens)
    beams: int = 5
    batch_size: int = 16
    max_new_tokens: int = 1024
    repetition_penalty: float = 1.0  # 1.0 = plain greedy/beam (the paper); >1 discourages loops in tiny models
    template: str | None = None
    backend: Literal["auto", "hf", "vllm"] = "auto"
    device: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    limit: int | None = None
    prompt_lang: Literal["auto", "en", "zh"] = "auto"
    comet_model: str | None = None
    progress: bool = True
    # FLORES
    langs: str = "all"
    directions: list[str] | None = None
    flores_dir: str | None = None
    flores: int = 101
    # WMT22
    wmt_dir: str | None = None
    pairs: list[str] | None = None
    wmt_refs: Literal["first", "all"] = "first"
    # knowledge / english (lm-eval harness)
    tasks: list[str] | None = None
    task_dir: str | None = None
    data_dir: str | None = None  # built-in tasks from local `hf download` folders (bayling.eval.local_data)
    num_fewshot: int | None = None

    def validate(self) -> None:
        if self.suite not in SUITES:
            raise ConfigError(f"unknown suite '{self.suite}'; known: {', '.join(SUITES)}", field="suite")
        if self.beams < 1:
            raise ConfigError("must be >= 1", field="beams")
        if self.batch_size < 1:
            raise ConfigError("must be >= 1", field="batch_size")
        if self.max_new_tokens < 1:
            raise ConfigError("must be >= 1", field="max_new_tokens")
        if not self.repetition_penalty > 0:
            raise ConfigError("must be > 0 (1.0 = no penalty)", field="repetition_penalty")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("must be >= 1", field="limit")
        if self.num_fewshot is not None and self.num_fewshot < 0:
            raise ConfigError("must be >= 0", field="num_fewshot")
        if self.flores not in (101, 200):
            raise ConfigError(f"must be 101 or 200, got {self.flores}", field="flores")
        for d in self.directions or []:
            if d not in FAMILIES:
                raise ConfigError(f"unknown direction family '{d}'; known: {', '.join(FAMILIES)}",
                                  field="directions")
        for p in self.pairs or []:
            if p not in WMT22_PAIRS:
                raise ConfigError(f"unknown WMT22 pair '{p}'; known: {', '.join(WMT22_PAIRS)}", field="pairs")

    def require(self, *names: str) -> None:
        """Options a suite cannot run without, named as the CLI flag the user must add."""
        for name in names:
            if getattr(self, name) in (None, ""):
                raise ConfigError(f"--{name.replace('_', '-')} is required for --suite {self.suite}")
