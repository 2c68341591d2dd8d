"""Answer extraction: turn a model's free text into the answer it commits to.

Each extractor returns the answer string or None when the text holds no parsable answer; the evaluator then
counts the sample as wrong and reports it as unparsed (never crashes).
"""

from __future__ import annotations

import re
from typing import Callable

NUMBER = re.compile(r"-?\$?\s?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def normalize_number(text: str) -> str | None:
    """'1,234.50' -> '1234.5', '$7' -> '7', '-3.0' -> '-3'; None if not a number."""
    t = text.strip().replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
    try:
        value = float(t)
    except ValueError:
        return None
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def last_number(text: str) -> str | None:
    found = NUMBER.findall(text)
    return normalize_number(found[-1]) if found else None


def gsm8k(text: str) -> str | None:
    """GSM8K's '#### 42' convention; falls back to 'The answer is 42', then to the last number."""
    m = re.search(r"####\s*([^\n]+)", text)
    if m:
        num = last_number(m.group(1))
        if num is not None:
            return num
    m = re.search(r"answer is[:\s]*\$?(-?[\d,]*\.?\d+)", text, flags=re.IGNORECASE)
    if m:
        return normalize_number(m.group(1))
    return last_number(text)


def boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (nested braces allowed)."""
    start = text.rfind("\\boxed{")
    if start == -1:
        return None
    i, depth = start + len("\\boxed{"), 1
    out = []
    while i < len(text):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return "".join(out).strip()
        out.append(ch)
        i += 1
    return None


def first_line(text: str) -> str | None:
    line = text.strip().split("\n", 1)[0].strip()
    return line or None


def make_regex(pattern: str) -> Callable[[str], str | None]:
    rx = re.compile(pattern)

    def extract(text: str) -> str | None:
        m = rx.findall(text)
        if not m:
            return None
        last = m[-1]
        return (last[0] if isinstance(last, tuple) else last).strip()

    return extract


EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "gsm8k": gsm8k,
    "last-number": last_number,
    "boxed": boxed,
    "first-line": first_line,
    "full": lambda t: t.strip() or None,
}


def answers_match(predicted: str, reference: str, numeric: bool, case_sensitive: bool = False) -> bool:
    if numeric:
        a, b = normalize_number(predicted), normalize_number(reference)
        if a is not None and b is not None:
            return float(a) == float(b)
    p, r = predicted.strip(), reference.strip()
    if not case_sensitive:
        p, r = p.lower(), r.lower()
    return p == r
