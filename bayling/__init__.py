"""bayling: a pipeline for multilingual instruction tuning (a reproduction of BayLing 2).

Three stages talk through files: ``bayling-build-data`` writes a data directory (manifest.json),
``bayling-train`` writes HF checkpoint directories, ``bayling-eval`` writes results.json.
"""

__version__ = "0.1.0"
