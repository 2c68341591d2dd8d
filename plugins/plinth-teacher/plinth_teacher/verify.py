"""Exact verifiers: reasoning-gym scorers, reference-answer matching, HumanEval unit tests in the core sandbox.

`verify(item, response)` returns True/False, or None when the item has no verifier (then the judge decides);
`verify_many(pairs)` does the same for a list, reasoning-gym scoring in one sandbox run."""

from __future__ import annotations

import re

from plinth.sandbox import run_python

from .answers import answers_match, extract_answer
from .gym import gym_verify, gym_verify_many
from .items import Item


def verify(item: Item, response: str, timeout: float = 10.0) -> bool | None:
    if item.verifier == "gym":
        return gym_verify(item, response)
    if item.verifier == "match":
        return answers_match(extract_answer(response), item.reference)
    if item.verifier == "humaneval":
        return humaneval_passes(item, response, timeout)
    return None


def verify_many(pairs: list[tuple[Item, str]], timeout: float = 10.0) -> list[bool | None]:
    """`verify` for each (item, response), in order; the reasoning-gym ones in one sandbox run (a generator loop
    collects its pairs first: one child instead of one per sample)."""
    out: list[bool | None] = [None] * len(pairs)
    gym = [k for k, (item, _) in enumerate(pairs) if item.verifier == "gym"]
    for k, verdict in zip(gym, gym_verify_many([pairs[k] for k in gym])):
        out[k] = verdict
    for k, (item, response) in enumerate(pairs):
        if item.verifier != "gym":
            out[k] = verify(item, response, timeout)
    return out


def extract_code(response: str) -> str:
    blocks = re.findall(r"```(?:python|py)?\s*\n(.*?)```", response, re.DOTALL)
    return max(blocks, key=len) if blocks else response


def humaneval_passes(item: Item, response: str, timeout: float = 10.0) -> bool:
    """Run the problem's tests against the response's code in the core sandbox (`plinth.sandbox`, the one the
    humaneval evaluator uses, so a label and an eval score mean the same): true only if `check()` returned.

    The candidate is the full function if the response defines `entry_point`, else the prompt + the body."""
    m = item.meta
    code = extract_code(response)
    if not re.search(rf"def\s+{re.escape(m['entry_point'])}\s*\(", code):
        code = m["code_prompt"] + code
    program = f"{code}\n\n{m['test']}\n\ncheck({m['entry_point']})\n"
    return run_python(program, timeout=timeout).finished
