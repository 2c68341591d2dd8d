"""plinth-ties: TIES, DARE-TIES, task arithmetic and linear merging on one streaming engine.

Plain API (no pipeline needed):

    from plinth_ties import ModelRef, merge
    merge("ties", [ModelRef("sft/", weight=1, density=0.2), ModelRef("kto/")], out="merged/", base="base/")

Importing this package is light; torch is imported when a merge runs.
"""

from __future__ import annotations

from .engine import METHODS, MergeResult, ModelRef, merge
from .errors import MergeInputError

__all__ = ["METHODS", "MergeInputError", "MergeResult", "ModelRef", "merge"]
__version__ = "0.1.0"
