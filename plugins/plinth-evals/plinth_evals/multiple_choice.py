"""`multiple-choice`: pick the option with the highest log-likelihood (MMLU / CMMLU / C-Eval layouts).

Two scorings, as in lm-evaluation-harness:
- `letter` (default, MMLU style): options are listed in the prompt, and the model scores " A", " B", ...
  after "Answer:" — one short continuation per option;
- `text`: the option texts themselves are scored as continuations; `acc_norm` divides by their length in
  characters so long options are not penalised.
Zero-shot by default; `few_shot` examples come from `dev_file` (MMLU/C-Eval ship a dev split) or the first rows.

Options carry labels: A, B, C, ... for a list or columns, the file's own for ARC's `{"text": [...], "label": [...]}`
(e.g. "1".."4"). An answer key that is an option's label is that option; only otherwise is an integer key an
index (base `answer_index_base`, 0 by default, as MMLU's Hugging Face files), and then an option's text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from plinth import ConfigError, StageContext
from plinth.fileparams import file_field

from .base import ModelEvalConfig, ModelEvaluator
from .lm import EvalModel
from .results import Metric, ModelRef, proportion
from .tasks import field_of, read_rows

LETTERS = "ABCDEFGHIJ"


class MultipleChoiceConfig(ModelEvalConfig):
    task_file: str = file_field(..., description="JSONL/JSON (question, choices list or A..D, answer) or CSV (MMLU "
                                            "header-less, C-Eval/CMMLU with header)")
    dev_file: str | None = file_field(None, description="few-shot examples file (default: the first rows of task_file)")
    few_shot: int = Field(0, ge=0, description="worked examples before each question (0 = zero-shot)")
    subject: str | None = Field(None, description="subject for the MMLU header 'The following are multiple choice "
                                                  "questions (with answers) about {subject}.'")
    score: Literal["letter", "text"] = Field("letter", description="score option letters or option texts")
    chat_template: bool = Field(False, description="wrap the prompt in the model's chat template (paper: C-Eval / "
                                                   "CMMLU zero-shot chat prompt)")
    system_prompt: str | None = Field(None, description="system message when chat_template is on")
    question_field: list[str] = Field(["question", "Question", "prompt"], description="question field names")
    choices_field: str = Field("choices", description="field holding a list of options, or ARC's {text, label} "
                                                      "lists (else columns A, B, C, ...)")
    answer_field: list[str] = Field(["answer", "Answer", "answerKey", "label"],
                                    description="answer: an option label (A.. or the file's labels), else an index "
                                                "(see answer_index_base), else the option text")
    answer_index_base: Literal[0, 1] = Field(0, description="base of integer answer keys that are not a label")


@dataclass
class Item:
    id: Any
    question: str
    choices: list[str]
    answer: int
    labels: list[str] = field(default_factory=list)  # shown before each option and scored with `letter`


@dataclass
class Prepared:
    task: str
    items: list[Item]
    shots: list[Item] = field(default_factory=list)


class MultipleChoice(ModelEvaluator):
    """Log-likelihood accuracy on multiple-choice questions."""

    name = "multiple-choice"
    Config = MultipleChoiceConfig
    task_fields = (("task_file", "question_field"), ("task_file", "answer_field"))

    def prepare(self, ctx: StageContext) -> Prepared:
        c = self.config
        path = Path(c.task_file)
        rows = read_rows(path)
        items = [self._item(r, i, path) for i, r in enumerate(rows)]
        shots: list[Item] = []
        if c.few_shot:
            if c.dev_file:
                dev = [self._item(r, i, c.dev_file) for i, r in enumerate(read_rows(c.dev_file, "dev file"))]
                src = c.dev_file
            else:
                dev, items, src = items[: c.few_shot], items[c.few_shot :], str(path)
            if len(dev) < c.few_shot:
                raise ConfigError(f"few_shot = {c.few_shot} but {src} has only {len(dev)} rows")
            shots = dev[: c.few_shot]
        if c.limit:
            items = items[: c.limit]
        if not items:
            raise ConfigError(f"task file {path}: no questions to evaluate")
        return Prepared(task=self.task_name(path), items=items, shots=shots)

    def _item(self, row: dict[str, Any], index: int, path: Path | str) -> Item:
        c = self.config
        question = str(field_of(row, c.question_field, path, "question"))
        where = f"task file {path}, line {row.get('_line', index + 1)}"
        labels: list[str] | None = None
        if c.choices_field in row:
            choices = row[c.choices_field]
            if isinstance(choices, dict):  # ARC / Hugging Face layout: {"text": [...], "label": [...]}
                labels = choices.get("label")
                choices = choices.get("text")
                if not isinstance(labels, list) or not isinstance(choices, list) or len(labels) != len(choices):
                    raise ConfigError(f"{where}: field '{c.choices_field}' as an object needs lists 'text' and "
                                      "'label' of the same length")
                labels = [str(x).strip() for x in labels]
                if len(set(labels)) != len(labels) or not all(labels):
                    raise ConfigError(f"{where}: option labels {labels} must be distinct and non-empty")
            if not isinstance(choices, list) or len(choices) < 2:
                raise ConfigError(f"{where}: field '{c.choices_field}' must be a list of at least 2 options")
            choices = [str(x) for x in choices]
        else:
            lower = {k.lower(): k for k in row}
            choices = []
            for letter in LETTERS:
                key = lower.get(letter.lower())
                if key is None:
                    break
                choices.append(str(row[key]))
            if len(choices) < 2:
                raise ConfigError(f"{where}: no options — give a '{c.choices_field}' list or columns A, B, C, ...")
        if labels is None:
            if len(choices) > len(LETTERS):
                raise ConfigError(f"{where}: {len(choices)} options; at most {len(LETTERS)} (A-J)")
            labels = list(LETTERS[: len(choices)])
        raw = field_of(row, c.answer_field, path, "answer")
        answer = answer_index(raw, choices, labels, c.answer_index_base)
        if answer is None:
            base = c.answer_index_base
            raise ConfigError(f"{where}: answer {raw!r} is neither a label ({', '.join(labels)}), "
                              f"an index {base}-{len(choices) - 1 + base}, nor one of the options")
        return Item(id=row.get("id", index), question=question, choices=choices, answer=answer, labels=labels)

    # -- prompts ----------------------------------------------------------------------------------------
    def _block(self, item: Item, with_answer: bool) -> str:
        text = item.question.strip() + "\n"
        if self.config.score == "letter":
            text += "".join(f"{label}. {opt}\n" for label, opt in zip(item.labels, item.choices))
        text += "Answer:"
        if with_answer:
            text += " " + (item.labels[item.answer] if self.config.score == "letter" else item.choices[item.answer])
        return text

    def context(self, model: EvalModel, item: Item, shots: list[Item]) -> str:
        c = self.config
        header = ""
        if c.subject:
            header = f"The following are multiple choice questions (with answers) about {c.subject}.\n\n"
        body = header + "".join(self._block(s, True) + "\n\n" for s in shots) + self._block(item, False)
        if c.chat_template:
            messages = []
            if c.system_prompt:
                messages.append({"role": "system", "content": c.system_prompt})
            messages.append({"role": "user", "content": body})
            return model.format_chat(messages)
        return body

    def continuations(self, item: Item) -> list[str]:
        if self.config.score == "letter":
            prefix = "" if self.config.chat_template else " "
            return [prefix + label for label in item.labels]
        return [" " + opt for opt in item.choices]

    # -- scoring ----------------------------------------------------------------------------------------
    def evaluate_model(self, model: EvalModel, prepared: Prepared, ref: ModelRef, ctx: StageContext
                       ) -> tuple[dict[str, Metric], list[dict[str, Any]]]:
        pairs, owners = [], []
        for k, item in enumerate(prepared.items):
            ctx_text = self.context(model, item, prepared.shots)
            for cont in self.continuations(item):
                pairs.append((ctx_text, cont))
                owners.append(k)
        with ctx.progress(len(pairs), f"{self.name} {prepared.task} [{ref.label}]") as p:
            scored = model.loglikelihood(pairs, progress=p)
        per_item: list[list[float]] = [[] for _ in prepared.items]
        for k, (pair, (ll, _ntok, _greedy)) in zip(owners, zip(pairs, scored)):
            per_item[k].append(ll)
        acc, acc_norm, samples = [], [], []
        for item, lls in zip(prepared.items, per_item):
            conts = self.continuations(item)
            pred = max(range(len(lls)), key=lambda i: lls[i])
            norm = [ll / max(1, len(cont.strip())) for ll, cont in zip(lls, conts)]
            pred_norm = max(range(len(norm)), key=lambda i: norm[i])
            acc.append(1.0 if pred == item.answer else 0.0)
            acc_norm.append(1.0 if pred_norm == item.answer else 0.0)
            samples.append({"id": item.id, "question": item.question, "choices": item.choices,
                            "answer": item.labels[item.answer], "predicted": item.labels[pred],
                            "loglikelihoods": [round(x, 4) for x in lls], "correct": pred == item.answer})
            if self.config.score == "text":
                samples[-1]["correct_norm"] = pred_norm == item.answer
        metrics = {"accuracy": proportion(acc, sample_field="correct")}
        if self.config.score == "text":
            metrics["accuracy_norm"] = proportion(acc_norm, sample_field="correct_norm")
        return metrics, samples


def answer_index(raw: Any, choices: list[str], labels: list[str], base: int = 0) -> int | None:
    """The option an answer key names: a label first (case-insensitive), then an integer index from `base`,
    then an option's exact text; None when it names none."""
    if isinstance(raw, bool) or raw is None:
        return None
    text = str(raw).strip()
    folded = [label.casefold() for label in labels]
    if text.casefold() in folded:
        return folded.index(text.casefold())
    if isinstance(raw, int) or text.isdigit():
        k = int(text) - base
        return k if 0 <= k < len(choices) else None
    if text in choices:
        return choices.index(text)
    return None
