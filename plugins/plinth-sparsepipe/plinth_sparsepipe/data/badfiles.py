"""Bad input files: counted, reported with their paths and skipped, so one broken mesh never stops a run."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("plinth.sparsepipe.data")


class BadFileError(ValueError):
    """A file that cannot be used as a sample (empty, degenerate, NaN, wrong format); the reader skips it."""


@dataclass
class BadFiles:
    """The files a reader skipped, each with why. `summary()` is what a run prints; `to_json()` what it stores."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: Any, reason: str) -> None:
        self.items.append((str(path), reason))
        log.warning("skipped %s: %s", path, reason)

    def __len__(self) -> int:
        return len(self.items)

    def summary(self, limit: int = 10) -> str:
        if not self.items:
            return "no bad files"
        lines = [f"{len(self.items)} bad file(s) skipped:"] + [f"  {p}: {r}" for p, r in self.items[:limit]]
        if len(self.items) > limit:
            lines.append(f"  ... and {len(self.items) - limit} more")
        return "\n".join(lines)

    def to_json(self) -> list[dict[str, str]]:
        return [{"path": p, "reason": r} for p, r in self.items]
