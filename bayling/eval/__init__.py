"""bayling-eval: translation suites (FLORES, WMT22), knowledge suites (lm-eval), scoring and comparison.

Modules: config (EvalConfig), generate (batched generation), metrics (sacrebleu/COMET), translate (the
resumable per-direction loop), flores, wmt, report (results.json/csv, summary.md, scores.png), compare,
knowledge (lm-eval harness). Nothing is imported here so that ``bayling-eval score`` starts fast.
"""
