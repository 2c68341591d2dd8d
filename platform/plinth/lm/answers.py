"""Reading a final answer as a number or a string: the one normaliser behind training labels and eval scores.

The teacher's verifier (which labels KTO rows) and the `exact-match` evaluator (which scores models) both
compare answers through `answers_match`, so an answer the teacher counts correct is one the evaluator counts
correct. The rules:

- a number is digits with an optional decimal part (`12`, `12.50`, `.5`); commas are thousands separators only
  in groups of three (`1,234,567`; `4,5` is the two numbers 4 and 5, never 45);
- a minus (`-` or `−`) or plus belongs to a number only when attached to it and not following a word or a
  number (`-5`, `= -5`, `(-5)`; `10 - 5` and `10-5` hold 10 and 5); a `$` before the digits is dropped;
- a whole answer is numeric if it is one number, optionally with a unit word or `%` after it (`12 apples`)
  and a trailing full stop; NaN, infinity and scientific notation are not numbers (they compare as text);
- numbers are held as exact decimals (any number of digits, no float overflow) and written canonically
  (`1,000.0` -> `1000`, `-0.50` -> `-0.5`); two integers match only when equal; otherwise two numbers match
  when they differ by at most 1e-6 relative (1e-6 absolute below 1), so round-off such as
  0.30000000000000004 still matches 0.3;
- anything else is text: outer `*` and `$` and a trailing full stop removed, whitespace collapsed, lower-cased
  unless case-sensitive.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# a sign only at a number's start and not after a word, digit, full stop or closing bracket ("10 - 5", "10-5");
# commas only in groups of three, all the way ("1,234" yes; "4,5" and "1,2345" are two numbers each)
NUMBER = re.compile(
    r"(?:(?<![\w.)\]])[-+\u2212])?\$?"
    r"(?:(?:\d{1,3}(?:,\d{3})+(?!,?\d)|\d+)(?:\.\d+)?|(?<![\d.])\.\d+)"
)
# a whole answer that is one number, optionally with one unit word or % and a full stop: "12 apples", "$5."
_WHOLE = re.compile(r"\s*(" + NUMBER.pattern + r")\s*[a-zA-Z%]*\.?\s*")
TOLERANCE = Decimal("1e-6")


def number_value(text: str | None) -> Decimal | None:
    """The exact value of a whole answer that is one number (see the module rules), else None. Never raises."""
    if text is None:
        return None
    m = _WHOLE.fullmatch(text.strip().strip("*"))
    if m is None:
        return None
    return _decimal(m.group(1))


def _decimal(token: str) -> Decimal | None:
    t = token.replace("\u2212", "-").replace("$", "").replace(",", "")
    if t in ("", "-", "+"):
        return None
    try:
        return Decimal(t)
    except InvalidOperation:  # not reachable for NUMBER tokens; kept so a bad token is text, not a crash
        return None


def canonical_number(value: Decimal) -> str:
    """'1000' for 1,000.0, '-0.5' for -0.50, '0' for -0: one spelling per value, no exponent."""
    if value == 0:
        return "0"
    text = format(value, "f")  # exact digits; Decimal.normalize would round to the context's 28 digits
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def numbers(text: str) -> list[str]:
    """Canonical forms of every number in free text, in order of appearance."""
    out = []
    for m in NUMBER.finditer(text or ""):
        value = _decimal(m.group(0))
        if value is not None:
            out.append(canonical_number(value))
    return out


def last_number(text: str) -> str | None:
    """The last number in free text (canonical), or None."""
    found = numbers(text)
    return found[-1] if found else None


def first_number(text: str) -> str | None:
    found = numbers(text)
    return found[0] if found else None


def hashes_answer(text: str) -> str | None:
    """GSM8K's final line '#### 42': the last number on the last such line, else its text; None without one.

    Both the teacher's extraction and the evaluator's `gsm8k` extractor read this format through here."""
    found = [s.strip() for s in re.findall(r"####[ \t]*([^\n]*)", text or "")]
    if not found or not found[-1]:
        return None
    return last_number(found[-1]) or found[-1]


def boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (nested braces allowed), or None."""
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


def normalize_text(answer: str, case_sensitive: bool = False) -> str:
    a = answer.strip().strip("*").strip()
    a = re.sub(r"^\$|\$$", "", a).strip()
    a = re.sub(r"\s+", " ", a.rstrip(".").strip())
    return a if case_sensitive else a.lower()


def normalize(answer: str | None, numeric: bool = True, case_sensitive: bool = False) -> str | None:
    """Canonical form for comparison and voting: a canonical number when the answer is one (and `numeric`),
    else normalised text; None for None."""
    if answer is None:
        return None
    if numeric:
        value = number_value(answer)
        if value is not None:
            return canonical_number(value)
    return normalize_text(answer, case_sensitive)


def answers_match(predicted: str | None, reference: str | None, numeric: bool = True,
                  case_sensitive: bool = False) -> bool:
    """Whether a predicted answer equals the reference under the module's rules; False when either is None."""
    if predicted is None or reference is None:
        return False
    if numeric:
        a, b = number_value(predicted), number_value(reference)
        if a is not None and b is not None:
            if a == b:
                return True
            if _is_integer(a) and _is_integer(b):
                return False  # counts are exact: 10000005 is not 10000000
            return abs(a - b) <= TOLERANCE * max(Decimal(1), abs(b))
    return normalize_text(predicted, case_sensitive) == normalize_text(reference, case_sensitive)


def _is_integer(value: Decimal) -> bool:
    return value == value.to_integral_value()
