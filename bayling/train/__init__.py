"""``bayling-train``: data side (tokenize, cache, packing, memory) and the DeepSpeed loop.

Data side, in the order the loop uses it (each module's docstring has the details):

- :mod:`bayling.train.tokenize`  render a conversation, tokenise the whole text once, labels from spans.
- :mod:`bayling.train.cache`     ``get_or_build_cache(spec)`` / ``prepare_cache(spec)`` (a ``CacheSpec``)
  -> on-disk token cache;
  ``open_cache`` -> :class:`~bayling.train.cache.TokenCache` (memory-mapped, no pickle).
- :mod:`bayling.train.packing`   best-fit-decreasing bins, ``collate_packed`` (varlen / block-diagonal
  attention per attention.py), ``causal_lm_loss_sum`` (logits only at targets, chunked).
- :mod:`bayling.train.plans`     ``plan_steps(bins, StepLayout, epoch)`` (deterministic, resumable),
  ``step_target_tokens`` (the loss normaliser).
- :mod:`bayling.train.memory`    ``estimate_memory`` + ``format_estimate`` for ``--estimate-memory``
  (model states from DeepSpeed's own ZeRO-2/3 estimators).
- :mod:`bayling.train.step_preview`  the per-step figures ``--print-config`` appends.
- :mod:`bayling.train.local_launch`  ``--nproc-per-node N``: torchrun workers on this machine after the checks.
"""
