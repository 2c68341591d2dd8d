"""plinth-ties: TIES, DARE-TIES, task arithmetic and linear merging on one streaming engine.

Plain API (no pipeline needed):

    from plinth_ties import ModelRef, merge
    merge("ties", [ModelRef("sft/", weight=1, density=0.2), ModelRef("kto/")], out="merged/", base="base/")

Importing this package is light; torch is imported when a merge runs.
"""

# Names resolve on first use: the `plinth` entry point imports this package, and listing plugins must not pay
# for torch, trl or pydantic.
from plinth.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "METHODS": "engine",
        "MergeResult": "engine",
        "ModelRef": "engine",
        "merge": "engine",
        "MergeInputError": "errors",
    },
)
