"""The `kto` trainer: validates unpaired preference data, balances the classes, runs trl's KTOTrainer.

Inputs: `dataset` (rows {prompt, completion, label}), optional `model` (e.g. "sft.model" for SFT -> KTO),
optional `eval_dataset`. Outputs: `model` (HF folder) and `metrics` (final metrics incl. rewards and KL)."""

from __future__ import annotations

import logging
import random
from typing import Any

from plinth import Artifact, ConfigError, StageContext, Trainer
from plinth.lm import training as T

from .kto_config import HIGH, LOW, KTOConfig, auto_weights, weighted_ratio

log = logging.getLogger("plinth.kto")


class KTOTrainer(Trainer):
    Config = KTOConfig
    required_inputs = ("dataset",)
    input_kinds = {"dataset": "dataset", "eval_dataset": "dataset", "model": "model"}
    outputs = {"model": "model", "metrics": "metrics"}

    def preflight(self, inputs: dict[str, list[Any]]) -> list[str]:
        """Validate-time: one starting model that resolves, and the first rows of dataset files given by path."""
        from plinth.lm.checks import kto_fields, trainer_problems

        return trainer_problems(self.config, inputs, kto_fields)

    def prepare(self, ctx: StageContext) -> dict[str, Any]:
        """Data checks, class weights, model resolution and length policy: all before any weights load."""
        cfg: KTOConfig = self.config
        rows, source = T.load_rows(ctx.input("dataset", kind="dataset"))
        T.check_kto_rows(rows, source)
        n_rows = len(rows)
        if cfg.shuffle:
            random.Random(cfg.seed).shuffle(rows)
        eval_rows = None
        if "eval_dataset" in ctx.inputs:
            eval_rows, eval_source = T.load_rows(ctx.input("eval_dataset", kind="dataset"))
            T.check_kto_rows(eval_rows, eval_source)
        if cfg.eval_steps and eval_rows is None:
            raise ConfigError(f"stage '{ctx.stage}': eval_steps is set but no `eval_dataset` input is wired")
        if cfg.apply_chat_template:
            rows = T.to_conversational(rows)
            eval_rows = T.to_conversational(eval_rows) if eval_rows else None
        rows = [{"prompt": r["prompt"], "completion": r["completion"], "label": r["label"]} for r in rows]
        model_path, label = T.starting_model(cfg, ctx)
        from plinth.lm.hf import load_tokenizer

        tokenizer = load_tokenizer(model_path, cfg.chat_template)
        rows, report = T.apply_length_policy(rows, tokenizer, cfg, source)
        # max_steps x batch rows are all training reads: KTO's per-row work (reference log-probs of each row and
        # its KL pair) is done for those alone, and the class weights are counted on them — after overlong rows
        # are dropped, so the weights balance the rows that are actually trained on
        rows = rows[: T.rows_trained(cfg, ctx, len(rows))]
        n_good, n_bad = T.check_kto_rows(rows, f"{source} ({len(rows)} rows trained on, overlong ones dropped)"
                                         if report.get("data/dropped") else source)
        if cfg.desirable_weight == "auto":
            lam_d, lam_u, why = auto_weights(n_good, n_bad, cfg.undesirable_weight)
            log.warning("stage '%s': %s", ctx.stage, why)
        else:
            lam_d, lam_u = float(cfg.desirable_weight), cfg.undesirable_weight
            why = "set by the config"
            r = weighted_ratio(n_good, n_bad, lam_d, lam_u)
            if not LOW <= r <= HIGH:
                log.warning(
                    "stage '%s': weighted desirable/undesirable ratio λ_D·n_D / (λ_U·n_U) = %g·%d / (%g·%d) = %.3g "
                    "is outside [1, 4/3]; set desirable_weight = \"auto\" to balance",
                    ctx.stage, lam_d, n_good, lam_u, n_bad, r,
                )
        if len(rows) < cfg.batch_size:
            raise ConfigError(
                f"stage '{ctx.stage}': {len(rows)} usable rows in {source}, fewer than batch_size={cfg.batch_size}"
            )
        report.update({
            "data/rows_in_file": n_rows, "data/examples": len(rows), "data/desirable": n_good,
            "data/undesirable": n_bad, "desirable_weight": lam_d, "undesirable_weight": lam_u,
        })
        return dict(rows=rows, eval_rows=eval_rows, model_path=model_path, label=label, tokenizer=tokenizer,
                    report=report, weights_reason=why, lam_d=lam_d, lam_u=lam_u)

    def callbacks(self, ctx: StageContext) -> list[Any]:
        """Trainer callbacks; subclasses (and tests) may add their own."""
        return [T.PlinthCallback(ctx, "train")]

    def train(self, ctx: StageContext) -> dict[str, Artifact]:
        cfg: KTOConfig = self.config
        prep = self.prepare(ctx)
        ctx.log_metrics(prep["report"], step=0)

        import trl

        args = T.build_training_arguments(
            cfg, ctx, trl.KTOConfig,
            max_length=cfg.max_length,
            beta=cfg.beta,
            desirable_weight=prep["lam_d"],
            undesirable_weight=prep["lam_u"],
            loss_type=cfg.loss_type,
            precompute_ref_log_probs=cfg.reference == "precompute",
        )
        import trl.trainer.kto_trainer as trl_kto

        with T.fold_tqdm(trl_kto, ctx, "reference log-probs"):
            return T.fit_and_save(trl.KTOTrainer, args, prep, cfg, ctx, "kto", self.callbacks(ctx),
                                  weights_reason=prep["weights_reason"])
