"""bayling-merge: merge experts fine-tuned from one base — PSO-Merging (arXiv 2508.19839) and MergeKit baselines.

Modules: pso (the swarm update, formulation-agnostic), swarm (the 2N+1 starting models; coefficients vs
weights), fitness (FLORES dev chrF++ through bayling-eval's public loop, cached), state (resume after kill),
baselines (MergeKit), checkpoint (reading experts, writing the merged checkpoint), report, runner (one run).
Nothing is imported here so that ``bayling-merge --help`` starts fast.
"""
