"""Where the repository's own files are: one definition of the checkout root.

Why one home: recipes (data/recipes), shipped tokenizers (data/tokenizers), the language registry
(data/languages.tsv), prompt phrasings, local eval tasks (eval/) and the Slurm scripts all live beside the
package in the checkout; eight modules each walking ``Path(__file__).parents[N]`` with their own N broke
silently whenever a module moved. Modules name folders relative to :data:`REPO_ROOT` instead.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
