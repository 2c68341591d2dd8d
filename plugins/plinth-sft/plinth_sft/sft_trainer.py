"""The `sft` trainer: validates the data, then runs trl's SFTTrainer with plinth's reporting, resume and saving.

Inputs: `dataset` (JSONL/Parquet rows: messages | prompt+completion | text), optional `model` (start from another
stage's model, e.g. SFT -> KTO chains use it the other way round), optional `eval_dataset`.
Outputs: `model` (HF folder) and `metrics` (final training metrics, JSON)."""

from __future__ import annotations

import logging
from typing import Any

from plinth import Artifact, ConfigError, StageContext, Trainer
from plinth.lm import training as T

from .sft_config import SFTConfig

log = logging.getLogger("plinth.sft")


class SFTTrainer(Trainer):
    Config = SFTConfig
    required_inputs = ("dataset",)
    input_kinds = {"dataset": "dataset", "eval_dataset": "dataset", "model": "model"}
    outputs = {"model": "model", "metrics": "metrics"}

    def preflight(self, inputs: dict[str, list[Any]]) -> list[str]:
        """Validate-time: one starting model that resolves, and the first rows of dataset files given by path."""
        from plinth.lm.checks import trainer_problems

        return trainer_problems(self.config, inputs, T.check_sft_rows)

    def prepare(self, ctx: StageContext) -> dict[str, Any]:
        """Everything that can fail on bad input, before loading weights: data checks, model resolution, lengths."""
        cfg: SFTConfig = self.config
        rows, source = T.load_rows(ctx.input("dataset", kind="dataset"))
        fmt = T.check_sft_rows(rows, source)
        if fmt == "prompt-completion" and cfg.apply_chat_template:
            rows = T.to_conversational(rows)
        eval_rows = None
        if "eval_dataset" in ctx.inputs:
            eval_rows, eval_source = T.load_rows(ctx.input("eval_dataset", kind="dataset"))
            T.check_sft_rows(eval_rows, eval_source)
            if fmt == "prompt-completion" and cfg.apply_chat_template:
                eval_rows = T.to_conversational(eval_rows)
        if cfg.eval_steps and eval_rows is None:
            raise ConfigError(f"stage '{ctx.stage}': eval_steps is set but no `eval_dataset` input is wired")
        model_path, label = T.starting_model(cfg, ctx)
        from plinth.lm.hf import load_tokenizer

        tokenizer = load_tokenizer(model_path, cfg.chat_template)
        rows, report = T.apply_length_policy(rows, tokenizer, cfg, source)
        report["data/format"] = fmt
        return dict(rows=rows, eval_rows=eval_rows, model_path=model_path, label=label, tokenizer=tokenizer,
                    report=report)

    def callbacks(self, ctx: StageContext) -> list[Any]:
        """Trainer callbacks; subclasses (and tests) may add their own."""
        return [T.PlinthCallback(ctx, "train")]

    def train(self, ctx: StageContext) -> dict[str, Artifact]:
        cfg: SFTConfig = self.config
        prep = self.prepare(ctx)
        ctx.log_metrics({k: v for k, v in prep["report"].items() if not isinstance(v, str)}, step=0)

        import trl

        args = T.build_training_arguments(
            cfg, ctx, trl.SFTConfig,
            max_length=cfg.max_length,
            packing=cfg.packing,
            completion_only_loss=cfg.completion_only_loss,
            assistant_only_loss=cfg.assistant_only_loss,
            dataset_num_proc=None,
        )
        return T.fit_and_save(trl.SFTTrainer, args, prep, cfg, ctx, "sft", self.callbacks(ctx))
