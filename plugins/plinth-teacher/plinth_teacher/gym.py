"""reasoning-gym tasks: offline seed prompts with exact answers, the oracle teacher, and a verifier.

Entries are regenerated from (task, size, seed) — reasoning-gym is deterministic — so items carry only
(task, index) and a verifier can be rebuilt in any process.

reasoning-gym builds item i of seed s from s + i, so seeds 0 and 1 would share all items but one: plinth's seed k
becomes reasoning-gym seed k * SEED_STRIDE (+ the task's position), and different k never share an item."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from plinth.errors import ConfigError
from plinth.lm.gym_scoring import score_in_sandbox

from .answers import extract_answer
from .items import Item


SEED_STRIDE = 1_000_000  # more items than any seed set draws per task


def gym_seed(seed: int, task_index: int = 0) -> int:
    """The reasoning-gym seed of plinth seed `seed` for the task at `task_index` (0 stays 0)."""
    return seed * SEED_STRIDE + task_index


@lru_cache(maxsize=64)
def _dataset(task: str, size: int, seed: int, options: str = "{}") -> Any:
    """`options` is a JSON object of the task's own settings (e.g. basic_arithmetic's max_digits)."""
    import reasoning_gym

    try:
        return reasoning_gym.create_dataset(task, size=size, seed=seed, **json.loads(options))
    except Exception as exc:  # noqa: BLE001 - reasoning-gym raises various errors for unknown names
        raise ConfigError(f"teacher: seeds.tasks: reasoning-gym cannot build task {task!r}: {exc}") from exc


def gym_items(
    tasks: list[str], size: int, seed: int, task_options: dict[str, dict[str, Any]] | None = None
) -> list[Item]:
    """`size` prompts per task, interleaved across tasks so any prefix covers them all."""
    per_task = []
    for t_i, task in enumerate(tasks):
        options = json.dumps((task_options or {}).get(task, {}), sort_keys=True)
        s = gym_seed(seed, t_i)
        ds = _dataset(task, size, s, options)
        rows = []
        for i in range(size):
            entry = ds[i]
            meta = {"task": task, "index": i, "size": size, "seed": s, "options": options}
            cot = entry.get("metadata", {}).get("answer_cot")
            if cot:
                meta["answer_cot"] = cot
            rows.append(Item(id=f"gym:{task}:{s}:{i}", prompt=entry["question"], source="gym", group=task,
                             reference=str(entry["answer"]), verifier="gym", meta=meta))
        per_task.append(rows)
    out = []
    for i in range(size):
        for rows in per_task:
            out.append(rows[i])
    return out


def gym_verify(item: Item, response: str) -> bool:
    """reasoning-gym's exact scorer on the response's extracted final answer (score 1.0 = correct), run in the
    core sandbox (one child per call: batch with `gym_verify_many`)."""
    return gym_verify_many([(item, response)])[0]


def gym_verify_many(pairs: list[tuple[Item, str]]) -> list[bool]:
    """`gym_verify` for many (item, response) pairs in one sandbox run (`plinth.lm.gym_scoring`): the scorers
    eval answer text, so they never run in this process. The child rebuilds each item's dataset from its meta
    (task, size, seed, options) as `_dataset` does. A scorer that chokes on odd text, or an answer that stops
    the child, means "not correct"."""
    answers = [extract_answer(response) for _, response in pairs]
    todo = [k for k, a in enumerate(answers) if a is not None]
    requests = []
    for k in todo:
        m = pairs[k][0].meta
        requests.append((m["task"], m["size"], m["seed"], m.get("options", "{}"), m["index"], answers[k]))
    out = [False] * len(pairs)
    if requests:
        for k, score in zip(todo, score_in_sandbox(requests)):
            out[k] = score is not None and score >= 1.0
    return out


def oracle_answer(item: Item, with_reasoning: bool = True) -> str:
    """The oracle teacher's answer: reasoning-gym's worked solution when it has one, ending in `Answer: x`."""
    cot = item.meta.get("answer_cot") if with_reasoning else None
    if cot:
        body = cot.split("####")[0].rstrip()
        return f"{body}\nAnswer: {item.reference}"
    return f"Answer: {item.reference}"
