"""The `sft` trainer's parameters: plinth's shared TrainingConfig plus what only SFT has."""

from __future__ import annotations

from pydantic import Field

from plinth.lm.training import TrainingConfig


class SFTConfig(TrainingConfig):
    """Supervised fine-tuning. Data rows: `messages` (chat), `prompt` + `completion`, or `text`."""

    learning_rate: float = Field(2e-5, gt=0, description="peak learning rate")
    packing: bool = Field(False, description="pack several examples into each max_length block (faster, no padding)")
    completion_only_loss: bool | None = Field(
        None,
        description="loss only on completions (prompt-completion rows); None = trl's default (true for those rows)",
    )
    assistant_only_loss: bool = Field(
        False, description="loss only on assistant turns of `messages` rows (needs a template with generation marks)"
    )
    apply_chat_template: bool = Field(
        True, description="wrap plain-string prompt/completion rows as user/assistant messages for the chat template"
    )
