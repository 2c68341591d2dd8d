"""`judge`: pairwise win rate of each model against the baseline, decided by a teacher chat back end.

Each model and the baseline answer the same prompts (greedy). The judge — any registered chat back end, got
through `plinth.lm.chat.make_backend` so this plugin never imports plinth-teacher — sees the prompt and both
answers and replies [[A]], [[B]] or [[C]] (tie). With `swap` (default) every pair is judged in both orders to
cancel position bias. Per prompt: win 1, tie 0.5, loss 0, averaged over orders; a verdict that cannot be
parsed counts as a tie and is reported in `unparsed`. The interval is a bootstrap over prompts.
"""

from __future__ import annotations

import gc
import re
from pathlib import Path
from typing import Any

from pydantic import Field

from plinth import Artifact, ConfigError, StageContext
from plinth.fileparams import file_field
from plinth.lm.chat import make_backend

from .base import ModelEvalConfig, ModelEvaluator
from .lm import EvalModel
from .results import MetricsWriter, bootstrap_mean, collect_models
from .tasks import field_of, read_rows

JUDGE_TEMPLATE = (
    "You are a careful judge. Compare two assistant answers to the user's question for helpfulness, "
    "correctness and safety.\n\n[Question]\n{question}\n\n[Answer A]\n{a}\n\n[Answer B]\n{b}\n\n"
    "Reply with a one-sentence reason, then exactly one verdict: [[A]] if A is better, [[B]] if B is better, "
    "[[C]] for a tie."
)
VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")


class JudgeConfig(ModelEvalConfig):
    task_file: str = file_field(..., description="JSONL/JSON/CSV of prompts to answer")
    prompt_field: list[str] = Field(["prompt", "question", "instruction"], description="prompt field names")
    judge_backend: str = Field(..., description="registered chat back end name (e.g. 'hf', 'openai')")
    judge: dict[str, Any] = Field(default_factory=dict, description="the back end's config (model, url, ...)")
    judge_template: str = Field(JUDGE_TEMPLATE, description="judge prompt with {question}, {a}, {b}")
    judge_max_tokens: int = Field(128, ge=1, description="tokens the judge may use for its verdict")
    swap: bool = Field(True, description="judge each pair in both orders (cancels position bias)")
    chat_template: bool = Field(True, description="answer prompts through the model's chat template")
    system_prompt: str | None = Field(None, description="system message for the answering models")
    max_new_tokens: int = Field(256, ge=1, description="answer length limit")


def parse_verdict(text: str) -> str | None:
    """'A', 'B', 'C' (tie) or None."""
    found = VERDICT.findall(text)
    if found:
        return found[-1]
    m = re.fullmatch(r"\s*\(?([ABC])\)?[.!]?\s*", text)
    return m.group(1) if m else None


class Judge(ModelEvaluator):
    """Win rate against the baseline, judged by a chat back end."""

    name = "judge"
    Config = JudgeConfig
    task_fields = (("task_file", "prompt_field"),)
    require_baseline = True

    def preflight(self, inputs: dict[str, list[Any]]) -> list[str]:
        """Also: the judge's back end is a registered one (the did-you-mean names the others)."""
        from plinth.plugins import load_plugins

        problems = super().preflight(inputs)
        try:
            load_plugins().chat_backend(self.config.judge_backend)
        except ConfigError as exc:
            problems.append(f"judge_backend: {exc}")
        return problems

    def evaluate(self, ctx: StageContext) -> dict[str, Artifact]:
        c = self.config
        refs = collect_models(ctx, c.baseline, c.baseline_label, require_baseline=True)
        if len(refs) < 2:
            raise ConfigError(f"stage '{ctx.stage}': judge needs at least one model besides the baseline "
                              "(inputs = {{ models = [...] }})")
        path = Path(c.task_file)
        rows = read_rows(path)
        prompts = [str(field_of(r, c.prompt_field, path, "prompt")) for r in rows][: c.limit or None]
        if not prompts:
            raise ConfigError(f"task file {path}: no prompts")
        judge = make_backend(c.judge_backend, c.judge)  # fails here (before generation) on a bad back end
        task = self.task_name(path)
        answers = {ref.label: self._answers(ref, prompts, ctx) for ref in refs}
        base = refs[0]
        writer = MetricsWriter(ctx, self.name, task)
        try:
            for ref in refs[1:]:
                metrics, samples = self._judge(judge, prompts, answers[ref.label], answers[base.label], ref.label,
                                               ctx)
                writer.add(ref, metrics, samples)
        finally:
            judge.close()
        writer.add(base, {}, [{"id": i, "prompt": p, "answer": a} for i, (p, a) in
                              enumerate(zip(prompts, answers[base.label]))])
        return writer.finish()

    def _answers(self, ref, prompts: list[str], ctx: StageContext) -> list[str]:
        c = self.config
        model = EvalModel(ref.path, dtype=c.dtype, device=c.device, batch_size=c.batch_size)
        try:
            if c.chat_template:
                system = [{"role": "system", "content": c.system_prompt}] if c.system_prompt else []
                texts = [model.format_chat(system + [{"role": "user", "content": p}]) for p in prompts]
            else:
                texts = prompts
            with ctx.progress(len(texts), f"judge answers [{ref.label}]") as p:
                outs = model.generate(texts, max_new_tokens=c.max_new_tokens, progress=p)
        finally:
            model.close()
            del model
            gc.collect()
        return [o[0].strip() for o in outs]

    def _judge(self, judge, prompts, cand, base, label, ctx):
        c = self.config
        convs, plan = [], []  # plan: (prompt index, candidate is A?)
        for i, (q, x, y) in enumerate(zip(prompts, cand, base)):
            convs.append([{"role": "user", "content": c.judge_template.format(question=q, a=x, b=y)}])
            plan.append((i, True))
            if c.swap:
                convs.append([{"role": "user", "content": c.judge_template.format(question=q, a=y, b=x)}])
                plan.append((i, False))
        with ctx.progress(len(convs), f"judge verdicts [{label}]"):
            replies = judge.chat(convs, n=1, temperature=0.0, max_tokens=c.judge_max_tokens, seed=0)
        per_prompt: list[list[float]] = [[] for _ in prompts]
        verdicts: list[list[dict[str, Any]]] = [[] for _ in prompts]
        unparsed = wins = ties = losses = 0
        for (i, cand_is_a), reply in zip(plan, replies):
            text = reply[0] if reply else ""
            v = parse_verdict(text)
            if v is None:
                unparsed += 1
                score = 0.5
            elif v == "C":
                score = 0.5
            else:
                score = 1.0 if (v == "A") == cand_is_a else 0.0
            wins += score == 1.0
            ties += score == 0.5
            losses += score == 0.0
            per_prompt[i].append(score)
            verdicts[i].append({"candidate_is": "A" if cand_is_a else "B", "verdict": v, "reply": text})
        scores = [sum(s) / len(s) for s in per_prompt]
        metric = bootstrap_mean(scores, unparsed=unparsed, wins=wins, ties=ties, losses=losses,
                                judge=c.judge_backend)
        samples = [{"id": i, "prompt": q, "answer": x, "baseline_answer": y, "score": s, "judgements": j}
                   for i, (q, x, y, s, j) in enumerate(zip(prompts, cand, base, scores, verdicts))]
        return {"win_rate": metric}, samples
