"""bayling-build-data: readers -> synthesis -> filters -> dedup -> decontamination -> mixing -> writing.

Each step is a module of this package; records are plain dicts in the canonical schema (docs/data-format.md).
"""
