"""The `kto` trainer's parameters, and the class-balance rule of the KTO paper.

Ethayarajh et al. (2024), sec. 4: with n_D desirable and n_U undesirable examples, choose the weights so that
    lambda_D * n_D / (lambda_U * n_U)  lies in  [1, 4/3].
`auto_weights` keeps lambda_U and moves lambda_D as little as possible to land in that range."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from plinth.lm.training import TrainingConfig

LOW, HIGH = 1.0, 4.0 / 3.0


class KTOConfig(TrainingConfig):
    """KTO on unpaired rows {prompt, completion, label: bool} (chat messages or plain strings)."""

    learning_rate: float = Field(1e-6, gt=0, description="peak learning rate (KTO wants small ones: 5e-7 .. 5e-6)")
    batch_size: int = Field(
        4, ge=2, description="per-device batch size; at least 2 (the KL estimate pairs examples within a batch)"
    )
    beta: float = Field(0.1, gt=0, description="strength of the pull towards the reference model")
    desirable_weight: Annotated[float, Field(gt=0)] | Literal["auto"] = Field(
        1.0, description='weight of desirable examples; "auto" applies the paper\'s [1, 4/3] balance rule'
    )
    undesirable_weight: float = Field(1.0, gt=0, description="weight of undesirable examples")
    loss_type: Literal["kto", "apo_zero_unpaired"] = Field("kto", description="trl loss type")
    reference: Literal["copy", "precompute"] = Field(
        "copy",
        description="reference model: a frozen copy kept in memory, or log-probs precomputed once before training "
        "(saves the copy's memory; the data order is then fixed)",
    )
    shuffle: bool = Field(
        True, description="shuffle rows once (seeded) before training; KTO reads batches in order to pair KL examples"
    )
    apply_chat_template: bool = Field(
        True, description="wrap plain-string prompt/completion rows as user/assistant messages for the chat template"
    )


def auto_weights(n_desirable: int, n_undesirable: int, undesirable_weight: float = 1.0) -> tuple[float, float, str]:
    """(desirable_weight, undesirable_weight, explanation) putting the weighted class ratio in [1, 4/3]: λ_U is
    kept, λ_D moves as little as possible. The explanation states both weights and the rule with its numbers."""
    ratio = n_desirable / n_undesirable
    target = min(max(ratio, LOW), HIGH)
    lam_u = undesirable_weight
    lam_d = round(target / ratio * lam_u, 6)
    why = (
        f"{n_desirable} desirable, {n_undesirable} undesirable rows: λ_D = desirable_weight = {lam_d:g}, "
        f"λ_U = undesirable_weight = {lam_u:g}; λ_D·n_D / (λ_U·n_U) = {lam_d:g}·{n_desirable} / "
        f"({lam_u:g}·{n_undesirable}) = {weighted_ratio(n_desirable, n_undesirable, lam_d, lam_u):.4g}, "
        "in [1, 4/3] (the KTO paper's balance rule)"
    )
    return lam_d, lam_u, why


def weighted_ratio(n_desirable: int, n_undesirable: int, lam_d: float, lam_u: float) -> float:
    return lam_d * n_desirable / (lam_u * n_undesirable)
