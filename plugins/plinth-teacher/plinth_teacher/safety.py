"""Safety filter: a rule list (regular expressions, cheap, always on when configured) and an optional teacher
judge. Unsafe prompts or answers are dropped, or kept with a flag, by config."""

from __future__ import annotations

import re
from typing import Sequence

from plinth.errors import ConfigError

from .answers import parse_json


class RuleList:
    def __init__(self, rules: Sequence[str]):
        self.rules = []
        for i, r in enumerate(rules):
            try:
                self.rules.append(re.compile(r, re.IGNORECASE | re.DOTALL))
            except re.error as exc:
                raise ConfigError(f"teacher: safety.rules[{i}] {r!r} is not a valid regular expression: {exc}") from exc

    def match(self, text: str) -> str | None:
        """The first rule that matches, or None."""
        for r in self.rules:
            if r.search(text):
                return r.pattern
        return None


def parse_safety_verdict(text: str | None) -> bool | None:
    """True = safe, False = unsafe, None = unparseable (counted; treated as unsafe when failing closed)."""
    try:
        data = parse_json(text)
        if isinstance(data, dict):
            v = data.get("safe", data.get("is_safe"))
            if isinstance(v, bool):
                return v
            if isinstance(v, str) and v.strip().lower() in {"true", "false", "yes", "no"}:
                return v.strip().lower() in {"true", "yes"}
    except ValueError:
        pass
    if text:
        low = text.strip().lower()
        if re.match(r"^(unsafe|no\b|false\b)", low):
            return False
        if re.match(r"^(safe|yes\b|true\b)", low):
            return True
    return None
