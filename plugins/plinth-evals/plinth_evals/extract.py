"""Answer extraction: turn a model's free text into the answer it commits to.

Each extractor returns the answer string or None when the text holds no parsable answer; the evaluator then
counts the sample as wrong and reports it as unparsed (never crashes). What counts as a number, and when two
answers match, is `plinth.lm.answers` — the same rules the teacher's verifier labels training data with.
"""

from __future__ import annotations

import re
from typing import Callable

from plinth.lm.answers import NUMBER, boxed, first_number, hashes_answer, last_number

_ANSWER_IS = re.compile(r"answer is[:\s]*(" + NUMBER.pattern + ")", flags=re.IGNORECASE)


def gsm8k(text: str) -> str | None:
    """GSM8K's '#### 42' line (its last number, else its text, as the teacher reads it); without one,
    'The answer is 42', then the last number."""
    hashes = hashes_answer(text)
    if hashes is not None:
        return hashes
    m = _ANSWER_IS.search(text)
    if m:
        return first_number(m.group(1))
    return last_number(text)


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
