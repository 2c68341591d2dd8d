"""`perplexity`: exp(mean negative log-likelihood per token) on held-out text.

Each document is cut into windows of `max_length` tokens; every token but a document's first is scored
given the tokens before it in its window (the first token of each later window is conditioned on the last
`context` tokens of the previous one). The interval is a bootstrap over documents of the token-weighted ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from plinth import ConfigError, StageContext
from plinth.fileparams import file_field
from plinth.stats import bootstrap_interval

from .base import ModelEvalConfig, ModelEvaluator
from .lm import EvalModel
from .results import Metric, ModelRef
from .tasks import field_of, read_rows


class PerplexityConfig(ModelEvalConfig):
    task_file: str = file_field(..., description="JSONL/JSON/CSV with one document per row, or a .txt file (one "
                                            "document per blank-line-separated paragraph)")
    text_field: list[str] = Field(["text", "content", "document"], description="text field names, first found")
    max_length: int = Field(512, ge=2, description="tokens per scoring window")
    context: int = Field(64, ge=0, description="tokens carried over from the previous window as context")

    @model_validator(mode="after")
    def _window(self) -> "PerplexityConfig":
        if self.context >= self.max_length:
            raise ValueError(f"context ({self.context}) must be smaller than max_length ({self.max_length})")
        return self


@dataclass
class Prepared:
    task: str
    docs: list[str]


class Perplexity(ModelEvaluator):
    """Held-out perplexity (lower is better)."""

    name = "perplexity"
    Config = PerplexityConfig
    task_fields = (("task_file", "text_field"),)

    def prepare(self, ctx: StageContext) -> Prepared:
        c = self.config
        path = Path(c.task_file)
        if path.suffix == ".txt":
            if not path.exists():
                raise ConfigError(f"task file {path} does not exist")
            docs = [d.strip() for d in path.read_text(encoding="utf-8").split("\n\n") if d.strip()]
        else:
            docs = [str(field_of(r, c.text_field, path, "text")) for r in read_rows(path)]
        if c.context >= c.max_length:
            raise ConfigError(f"perplexity: context ({c.context}) must be smaller than max_length ({c.max_length})")
        if c.limit:
            docs = docs[: c.limit]
        if not docs:
            raise ConfigError(f"task file {path}: no text to score")
        return Prepared(task=self.task_name(path), docs=docs)

    def windows(self, ids: list[int]) -> list[tuple[list[int], int]]:
        """(window ids, number of context tokens not scored) covering every token after the first once."""
        c = self.config
        out, pos = [], 1
        while pos < len(ids):
            start = max(0, pos - (max(1, c.context) if out else pos))
            end = min(len(ids), start + c.max_length)
            out.append((ids[start:end], pos - start))
            pos = end
        return out

    def evaluate_model(self, model: EvalModel, prepared: Prepared, ref: ModelRef, ctx: StageContext
                       ) -> tuple[dict[str, Metric], list[dict[str, Any]]]:
        encoded, owners = [], []
        for d, text in enumerate(prepared.docs):
            ids = model.tok(text, add_special_tokens=False)["input_ids"]
            for win in self.windows(ids):
                encoded.append(win)
                owners.append(d)
        with ctx.progress(len(encoded), f"{self.name} {prepared.task} [{ref.label}]") as p:
            scored = model.score_ids(encoded, progress=p)
        nll = [0.0] * len(prepared.docs)
        ntok = [0] * len(prepared.docs)
        for d, (ll, n, _greedy) in zip(owners, scored):
            nll[d] -= ll
            ntok[d] += n
        pairs = [(a, b) for a, b in zip(nll, ntok) if b > 0]
        if not pairs:
            raise ConfigError(f"perplexity: every document of {self.config.task_file} is shorter than 2 tokens")

        def ppl(sample):
            return math.exp(sum(a for a, _ in sample) / max(1, sum(b for _, b in sample)))

        value = ppl(pairs)
        lo, hi = bootstrap_interval(pairs, statistic=ppl)
        total = sum(b for _, b in pairs)
        metrics = {
            "perplexity": Metric(value=value, n=len(pairs), ci_low=lo, ci_high=hi, ci_method="bootstrap",
                                 higher_is_better=False, extra={"tokens": total}),
        }
        samples = [{"id": d, "tokens": ntok[d], "nll": round(nll[d], 4),
                    "perplexity": math.exp(nll[d] / ntok[d]) if ntok[d] else None, "text": prepared.docs[d][:200]}
                   for d in range(len(prepared.docs))]
        return metrics, samples
