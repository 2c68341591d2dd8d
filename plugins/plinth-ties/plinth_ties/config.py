"""The mergers' parameters (pydantic), in the spirit of trl's `<method>_config.py`: one documented field each.

Per-model parameters (`weight`, `density`) take a single number for every model, a list aligned with the stage's
`models` input, or a table keyed by model label (the producing stage, e.g. `sft`, or `sft.model`, or an
external input's `label`) - the mergekit habit of giving parameters per model, without repeating paths.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import ConfigDict, Field

from plinth import ComponentConfig
from plinth.fileparams import file_field

PerModel = Union[float, list[float], dict[str, float]]
#: a keep probability / fraction per model, each in (0, 1]
Fraction = Annotated[float, Field(gt=0, le=1)]
PerModelFraction = Union[Fraction, list[Fraction], dict[str, Fraction]]


class MergeConfig(ComponentConfig):
    """Parameters every merge method takes."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_by_name=True, validate_by_alias=True)

    base: str | None = file_field(
        None, kind="path_or_name",
        description="Base model: a folder or an alias such as 'smollm2-135m-instruct' (resolved with plinth.lm.hf). "
        "Used when the stage has no `base` input; giving both is an error.",
    )
    weight: PerModel = Field(1.0, description="Per-model weight w_i (number, list aligned with `models`, or {label = w}).")
    normalize: bool | None = Field(
        None,
        description="Divide by the sum of weights (TIES: of the weights that agree with the elected sign). "
        "Default: true for ties, dare_ties and linear; false for task_arithmetic and dare_linear.",
    )
    dtype: Literal["base", "float32", "bfloat16", "float16"] = Field(
        "base", description="Output dtype of floating tensors; 'base' keeps each tensor's dtype in the reference model."
    )
    include: list[str] = Field(
        [".*"], description="Regexes (re.search) of tensor names to merge; others are copied from the reference model."
    )
    copy_: list[str] = Field(
        [], alias="copy", description="Regexes of tensor names copied unchanged from the reference model (wins over include)."
    )
    vocab_mismatch: Literal["error", "common"] = Field(
        "error",
        description="When embedding/head rows differ between models: 'error', or 'common' to merge the rows all "
        "models share and keep the reference's remaining rows.",
    )
    allow_pickle: bool = Field(
        False, description="Accept pickle checkpoints (pytorch_model.bin). Refused by default: unpickling can run code."
    )
    files_from: str | None = Field(
        None, description="Label of the model whose config/tokenizer/chat template/generation config are copied "
        "(default: the base; for linear without a base, the first model).",
    )
    max_shard_size: Union[int, str] = Field("2GB", description="Largest output shard ('2GB', '500MB', or bytes).")
    hash_inputs: bool = Field(True, description="Record sha256 of each input's config and weights in merge.json.")
    num_threads: int | None = Field(
        1, ge=1, description="torch intra-op threads while merging (null: torch's default). The work is "
        "memory-bound; on 2 shared cores one thread was 3x faster than two (OpenMP threads wait on each other).",
    )


class TaskArithmeticConfig(MergeConfig):
    lambda_: float = Field(1.0, alias="lambda", description="Scale λ of the merged task vector: θ = θ_base + λ·τ_m.")


class TiesConfig(TaskArithmeticConfig):
    density: PerModelFraction = Field(
        0.2, description="Fraction k of each task vector kept by magnitude, in (0, 1] (paper: 0.2)."
    )
    trim: Literal["per_tensor", "global"] = Field(
        "per_tensor",
        description="Where top-k is taken: 'per_tensor' (mergekit) or 'global' over the whole model (the paper; "
        "exact; one extra streaming pass).",
    )


class DareConfig(TaskArithmeticConfig):
    density: PerModelFraction = Field(0.5, description="Probability of keeping each task-vector entry, in (0, 1].")
    seed: int = Field(0, description="Seed of the random drop masks (one stream per model and tensor).")


class LinearConfig(MergeConfig):
    """Linear fusion needs no base: θ = Σ w_i θ_i (/ Σ w_i)."""
