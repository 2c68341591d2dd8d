"""`exact-match`: generate an answer per prompt (greedy, batched) and compare the extracted answer.

Tasks come from a local JSONL/CSV file (GSM8K layout: `question`, `answer` with '#### 42') or from a
reasoning-gym generator, whose own scorer then decides correctness. Few-shot examples come from
`few_shot_file` or from the first rows of the task file (which are then not evaluated).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from plinth import ConfigError, StageContext
from plinth.fileparams import file_field
from plinth.lm.answers import answers_match
from plinth.lm.gym_scoring import score_in_sandbox

from . import extract as ex
from .base import ModelEvalConfig, ModelEvaluator
from .lm import EvalModel, Messages
from .results import Metric, ModelRef, proportion
from .tasks import field_of, read_rows


class ExactMatchConfig(ModelEvalConfig):
    task_file: str | None = file_field(
        None, description="local JSONL/JSON/CSV task file (or a `task` dataset input, or reasoning_gym)"
    )
    reasoning_gym: str | None = Field(None, description="a reasoning-gym task name, e.g. 'basic_arithmetic'")
    reasoning_gym_size: int = Field(100, ge=1, description="items generated from reasoning_gym")
    reasoning_gym_seed: int = Field(0, description="seed for reasoning_gym")
    question_field: list[str] = Field(["question", "prompt", "input"], description="prompt field names, first found")
    answer_field: list[str] = Field(["answer", "target", "output"], description="reference field names, first found")
    extract: Literal["auto", "gsm8k", "last-number", "boxed", "first-line", "full", "regex"] = Field(
        "auto", description="answer extractor; auto: gsm8k for files, first-line for reasoning_gym")
    regex: str | None = Field(None, description="with extract='regex': the last match (group 1 if any) is the answer")
    numeric: bool = Field(True, description="compare as numbers when both answers are one number (plinth.lm.answers "
                                            "rules), else as text; false: always as text")
    case_sensitive: bool = Field(False, description="string comparison is case-sensitive")
    few_shot: int = Field(0, ge=0, description="number of worked examples in each prompt (paper: GSM8K 4-shot)")
    few_shot_file: str | None = file_field(None, description="examples file (default: the first rows of task_file)")
    prompt_template: str = Field("Question: {question}\nAnswer:", description="prompt for one item")
    example_template: str = Field("Question: {question}\nAnswer: {answer}\n\n",
                                  description="one few-shot example (plain prompts)")
    chat_template: bool = Field(False, description="wrap prompts in the model's chat template (examples as turns)")
    system_prompt: str | None = Field(None, description="system message when chat_template is on")
    max_new_tokens: int = Field(256, ge=1, description="generation length limit")
    stop: list[str] | None = Field(None, description="stop strings (default: ['\\n\\nQuestion:', '\\nQuestion:'] "
                                                     "for plain prompts, none for chat)")
    temperature: float = Field(0.0, ge=0.0, description="0 = greedy (the paper's setting)")
    seed: int = Field(0, description="sampling seed when temperature > 0")

    @model_validator(mode="after")
    def _check(self) -> "ExactMatchConfig":
        if self.task_file and self.reasoning_gym:
            raise ValueError("give one of `task_file` and `reasoning_gym` (or a `task` input), not both")
        if self.extract == "regex" and not self.regex:
            raise ValueError("extract = 'regex' needs `regex`")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex {self.regex!r} is not a valid regular expression: {exc}") from None
        return self


@dataclass
class Prepared:
    task: str
    items: list[dict[str, Any]]  # {"id", "question", "reference", "entry"}
    shots: list[tuple[str, str]] = field(default_factory=list)
    scorer: Any = None  # reasoning-gym dataset: set when its scorer decides (then `gym` is set too)
    gym: tuple[str, int, int, str] | None = None  # (task, size, seed, options JSON): rebuilt in the sandbox


class ExactMatch(ModelEvaluator):
    """Generative accuracy with answer extraction (GSM8K, arithmetic, reasoning-gym tasks)."""

    name = "exact-match"
    Config = ExactMatchConfig
    task_fields = (("task_file", "question_field"), ("task_file", "answer_field"))

    def preflight(self, inputs: dict[str, list[Any]]) -> list[str]:
        c, problems = self.config, super().preflight(inputs)
        given = [k for k, on in (("task_file", c.task_file), ("reasoning_gym", c.reasoning_gym),
                                 ("a `task` input", "task" in inputs)) if on]
        if len(given) > 1:
            problems.append(f"task_file: {' and '.join(given)} are given; keep one")
        elif not given:
            problems.append('task_file: nothing to evaluate on; set `task_file`, `reasoning_gym`, or wire '
                            '`inputs = { task = "data.eval" }`')
        return problems

    # -- task -------------------------------------------------------------------------------------------
    def prepare(self, ctx: StageContext) -> Prepared:
        c = self.config
        if c.reasoning_gym:
            if "task" in ctx.inputs:
                raise ConfigError(f"stage '{ctx.stage}': both `reasoning_gym` and a `task` input are given; keep one")
            return self._prepare_gym()
        if "task" in ctx.inputs:  # a dataset made by an earlier stage, e.g. the teacher's held-out `eval` set
            if c.task_file:
                raise ConfigError(f"stage '{ctx.stage}': both `task_file` and a `task` input are given; keep one")
            path = ctx.input("task", kind="dataset").path
        elif c.task_file:
            path = Path(c.task_file)
        else:
            raise ConfigError(
                f"stage '{ctx.stage}': nothing to evaluate on — set `task_file`, `reasoning_gym`, or wire "
                "`inputs = { task = \"data.eval\" }`"
            )
        rows = read_rows(path)
        shots: list[tuple[str, str]] = []
        if c.few_shot:
            if c.few_shot_file:
                shot_rows = read_rows(c.few_shot_file, "few-shot file")
                src = c.few_shot_file
            else:
                shot_rows, rows, src = rows[: c.few_shot], rows[c.few_shot :], str(path)
            if len(shot_rows) < c.few_shot:
                raise ConfigError(f"few_shot = {c.few_shot} but {src} has only {len(shot_rows)} rows")
            for r in shot_rows[: c.few_shot]:
                shots.append((str(field_of(r, c.question_field, src, "question")),
                               str(field_of(r, c.answer_field, src, "answer"))))
        if c.limit:
            rows = rows[: c.limit]
        if not rows:
            raise ConfigError(f"task file {path}: no items to evaluate")
        items = []
        for i, r in enumerate(rows):
            q = str(field_of(r, c.question_field, path, "question"))
            a = str(field_of(r, c.answer_field, path, "answer"))
            items.append({"id": r.get("id", i), "question": q, "reference": reference_answer(a), "entry": None})
        return Prepared(task=self.task_name(path), items=items, shots=shots)

    def _prepare_gym(self) -> Prepared:
        c = self.config
        try:
            import reasoning_gym
        except ImportError as exc:
            raise ConfigError("reasoning_gym tasks need `pip install reasoning-gym`") from exc
        try:
            ds = reasoning_gym.create_dataset(c.reasoning_gym, size=c.reasoning_gym_size, seed=c.reasoning_gym_seed)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"reasoning_gym = '{c.reasoning_gym}': {exc}") from exc
        entries = list(ds)
        shots = [(e["question"], str(e["answer"])) for e in entries[: c.few_shot]]
        entries = entries[c.few_shot :]
        if c.limit:
            entries = entries[: c.limit]
        # "index": the entry's position in the dataset, which the sandboxed scorer rebuilds from `gym`
        items = [{"id": i, "question": e["question"], "reference": str(e["answer"]), "entry": e,
                  "index": c.few_shot + i} for i, e in enumerate(entries)]
        return Prepared(task=c.task_name or c.reasoning_gym, items=items, shots=shots, scorer=ds,
                        gym=(c.reasoning_gym, c.reasoning_gym_size, c.reasoning_gym_seed, "{}"))

    # -- prompts ----------------------------------------------------------------------------------------
    def build_prompt(self, model: EvalModel, question: str, shots: list[tuple[str, str]]) -> str:
        c = self.config
        if c.chat_template:
            messages: Messages = []
            if c.system_prompt:
                messages.append({"role": "system", "content": c.system_prompt})
            for q, a in shots:
                messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            messages.append({"role": "user", "content": question})
            return model.format_chat(messages)
        prefix = "".join(c.example_template.format(question=q, answer=a) for q, a in shots)
        return prefix + c.prompt_template.format(question=question)

    def extractor(self, gym: bool):
        c = self.config
        kind = c.extract
        if kind == "auto":
            kind = "first-line" if gym else "gsm8k"
        if kind == "regex":
            return kind, ex.make_regex(c.regex or "")
        return kind, ex.EXTRACTORS[kind]

    # -- scoring ----------------------------------------------------------------------------------------
    def evaluate_model(self, model: EvalModel, prepared: Prepared, ref: ModelRef, ctx: StageContext
                       ) -> tuple[dict[str, Metric], list[dict[str, Any]]]:
        c = self.config
        kind, extractor = self.extractor(prepared.scorer is not None)
        stop = c.stop if c.stop is not None else ([] if c.chat_template else ["\n\nQuestion:", "\nQuestion:"])
        prompts = [self.build_prompt(model, it["question"], prepared.shots) for it in prepared.items]
        with ctx.progress(len(prompts), f"{self.name} {prepared.task} [{ref.label}]") as p:
            outputs = model.generate(prompts, max_new_tokens=c.max_new_tokens, stop=stop,
                                     temperature=c.temperature, seed=c.seed, progress=p)
        answers = [extractor(outs[0]) for outs in outputs]
        gym_scores: dict[int, float | None] = {}
        if prepared.scorer is not None:
            # reasoning-gym scorers eval the answer text: all of this model's answers in one sandbox run
            # (plinth.lm.gym_scoring); a scorer error is a wrong answer, an answer that stopped the child None
            todo = [k for k, a in enumerate(answers) if a is not None]
            got = score_in_sandbox([(*prepared.gym, prepared.items[k]["index"], answers[k]) for k in todo])
            gym_scores = dict(zip(todo, got))
        scores, samples, unparsed = [], [], 0
        for k, (it, prompt, outs) in enumerate(zip(prepared.items, prompts, outputs)):
            text, answer = outs[0], answers[k]
            if answer is None:
                unparsed += 1
                correct = False
            elif prepared.scorer is not None:
                score = gym_scores[k]
                correct = score is not None and score >= 1.0
            else:
                correct = answers_match(answer, it["reference"], c.numeric, c.case_sensitive)
            scores.append(1.0 if correct else 0.0)
            samples.append({"id": it["id"], "prompt": prompt, "output": text, "extracted": answer,
                            "reference": it["reference"], "parsed": answer is not None, "correct": correct})
        metric = proportion(scores, unparsed=unparsed, extractor=kind, sample_field="correct")
        return {"exact_match": metric}, samples


def reference_answer(text: str) -> str:
    """GSM8K references hold the worked solution then '#### 42': keep what follows '####'."""
    if "####" in text:
        return text.split("####")[-1].strip()
    return text.strip()
