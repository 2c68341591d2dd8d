"""Reading model output: final answers (for agreement and verifiers), and tolerant parsing of JSON answers.

Teachers are asked to end with `Answer: <final answer>`; extraction also accepts GSM8K's `#### x`,
`\\boxed{x}`, and falls back to the last number, then the last line. Numbers and comparison follow
`plinth.lm.answers` (the rules the `exact-match` evaluator scores with), so labels and eval scores agree.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Sequence

from plinth.lm.answers import answers_match, boxed, hashes_answer, last_number, normalize

__all__ = ["agreement", "answers_match", "extract_answer", "normalize", "parse_json", "parse_score"]

_PATTERNS = [
    re.compile(r"(?:final answer|answer)\s*(?:is)?\s*[:=]\s*(.+)", re.IGNORECASE),
    re.compile(r"(?:final answer|answer) is\s+(.+)", re.IGNORECASE),
]


def extract_answer(text: str | None) -> str | None:
    """The final answer in a response, or None for an empty one."""
    if not text or not text.strip():
        return None
    hashes = hashes_answer(text)
    if hashes is not None:
        return hashes
    box = boxed(text)
    if box:
        return box.splitlines()[0].strip() or None
    for pat in _PATTERNS:
        found = pat.findall(text)
        if found:
            ans = found[-1].strip().splitlines()[0].strip()
            if ans:
                return ans
    num = last_number(text)
    if num is not None:
        return num
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else None


def agreement(samples: Sequence[str]) -> tuple[str | None, float, int]:
    """Self-consistency: (majority normalised answer, its share of all k samples, index of a sample giving it).

    Unparseable samples count against agreement (they are in the denominator)."""
    answers = [normalize(extract_answer(s)) for s in samples]
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, 0.0, -1
    best, votes = max(counts.items(), key=lambda kv: (kv[1], -answers.index(kv[0])))
    return best, votes / len(samples), answers.index(best)


def parse_json(text: str | None) -> Any:
    """The first JSON object or array in a model's answer, tolerating code fences, prose around it, single
    quotes, trailing commas and Python literals. Raises ValueError when nothing parses."""
    if text is None:
        raise ValueError("empty answer")
    t = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", t, re.DOTALL)
    candidates = [fence.group(1).strip()] if fence else []
    for opener, closer in (("{", "}"), ("[", "]")):
        start = t.find(opener)
        while start != -1:
            depth, in_str, quote, esc = 0, False, "", False
            for i in range(start, len(t)):
                ch = t[i]
                if in_str:
                    if esc:
                        esc = False
                    elif ch == "\\":
                        esc = True
                    elif ch == quote:
                        in_str = False
                elif ch in "\"'":
                    in_str, quote = True, ch
                elif ch == opener:
                    depth += 1
                elif ch == closer:
                    depth -= 1
                    if depth == 0:
                        candidates.append(t[start : i + 1])
                        break
            start = t.find(opener, start + 1) if not candidates else -1
    candidates.append(t)
    for cand in candidates:
        for attempt in (cand, _repair(cand)):
            try:
                return json.loads(attempt)
            except ValueError:
                continue
        try:
            import ast

            return ast.literal_eval(cand)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
    raise ValueError(f"no JSON found in answer: {text[:200]!r}")


def _repair(s: str) -> str:
    s = re.sub(r",\s*([}\]])", r"\1", s)
    s = re.sub(r"\bTrue\b", "true", re.sub(r"\bFalse\b", "false", re.sub(r"\bNone\b", "null", s)))
    if "'" in s and '"' not in s:
        s = s.replace("'", '"')
    return s


def parse_score(text: str | None, low: float = 1, high: float = 10) -> float | None:
    """A judge's score: JSON {"score": x} first, then `score: x` / `x/10` / a lone number in range."""
    try:
        data = parse_json(text)
        if isinstance(data, dict):
            for key in ("score", "rating", "grade"):
                if key in data:
                    v = float(data[key])
                    return v if low <= v <= high else None  # NaN compares False: out of range
    except (ValueError, TypeError, OverflowError):  # OverflowError: a 400-digit JSON integer
        pass
    if not text:
        return None
    # a minus sign is kept so "score: -3" is out of range, not 3
    for pat in (r"score\s*[:=]?\s*(-?\d+(?:\.\d+)?)", r"(-?\d+(?:\.\d+)?)\s*/\s*10", r"^\s*(-?\d+(?:\.\d+)?)\s*$"):
        m = re.search(pat, text, re.IGNORECASE | re.MULTILINE)
        if m:
            v = float(m.group(1))
            if low <= v <= high:
                return v
    return None
