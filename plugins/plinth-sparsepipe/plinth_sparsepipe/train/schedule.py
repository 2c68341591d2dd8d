"""Optimizers and learning-rate policies. A policy is a pure function of the optimizer step index, so a resumed
run (or a pipeline stage on another process) computes the same rate without carrying scheduler state."""

from __future__ import annotations

from typing import Any, Callable

from .config import PointcloudTrainerConfig


def lr_factor(cfg: PointcloudTrainerConfig, total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
    """step index (0-based) -> multiplier of the base learning rate.

    poly (the paper's, power 2): (1 - s / total)^power; step: gamma^(epoch // step_epochs); constant: 1; each
    times a linear warm-up ((s + 1) / warmup_steps) over the first `warmup_steps` steps."""
    power, gamma, every, warmup = cfg.poly_power, cfg.step_gamma, cfg.step_epochs, cfg.warmup_steps
    schedule = cfg.lr_schedule

    def factor(step: int) -> float:
        if schedule == "poly":
            value = max(0.0, 1.0 - step / total_steps) ** power
        elif schedule == "step":
            value = gamma ** ((step // steps_per_epoch) // every)
        else:
            value = 1.0
        if step < warmup:
            value *= (step + 1) / warmup
        return value

    return factor


def optimizer_factory(cfg: PointcloudTrainerConfig) -> Callable[[Any], Any]:
    """parameters -> SGD (momentum, optional Nesterov) or AdamW at the base learning rate, with weight decay."""

    def make(params: Any):
        import torch

        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=cfg.learning_rate, betas=tuple(cfg.betas),
                                     weight_decay=cfg.weight_decay)
        return torch.optim.SGD(params, lr=cfg.learning_rate, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)

    return make
