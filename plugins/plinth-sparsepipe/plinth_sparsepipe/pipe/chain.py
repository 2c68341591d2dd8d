"""A model as the pipeline sees it: an ordered chain of named blocks, of which a stage runs a contiguous range.

Models list their blocks with `model.blocks()` (or are plain `nn.Sequential`s); a model whose forward is not the
composition of its blocks says `pipelinable = False` (the U-Net's skips) and is refused with a clear error.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from plinth.errors import ConfigError


def chain_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    name = type(model).__name__
    if not getattr(model, "pipelinable", True):
        raise ConfigError(f"{name} is not a chain of blocks (its forward has skips), so it cannot be cut into "
                          "pipeline stages; train it with strategy `single` or `ddp`")
    blocks = model.blocks() if hasattr(model, "blocks") else list(model.named_children())
    if not blocks:
        raise ConfigError(f"{name} has no blocks to cut into pipeline stages")
    return list(blocks)


def block_prefixes(model: nn.Module) -> dict[int, str]:
    """id(block) -> its state-dict prefix in `model` (so a stage's keys map back to the whole model's)."""
    return {id(m): n for n, m in model.named_modules() if n}


def stage_module(blocks: list[tuple[str, nn.Module]], start: int, stop: int) -> nn.Sequential:
    """Blocks [start, stop) as one module whose state-dict keys are `<block name>.<key>`."""
    return nn.Sequential(OrderedDict(blocks[start:stop]))


def check_layers(model_blocks: list[str], plan_layers: list[str], where: str) -> None:
    """The plan (or profile) must describe this model: the same block names in the same order."""
    if model_blocks != plan_layers:
        i = next((i for i, (a, b) in enumerate(zip(model_blocks, plan_layers)) if a != b),
                 min(len(model_blocks), len(plan_layers)))
        got = model_blocks[i] if i < len(model_blocks) else "(end)"
        want = plan_layers[i] if i < len(plan_layers) else "(end)"
        raise ConfigError(f"{where}: layer {i} of the plan is {want!r} but the model's block {i} is {got!r}: the plan "
                          f"was made for another model ({len(plan_layers)} layers; this one has {len(model_blocks)})")
