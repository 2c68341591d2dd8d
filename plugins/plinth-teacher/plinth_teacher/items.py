"""The unit that flows through the construction pipeline: one prompt with what is known about it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Item:
    id: str
    prompt: str
    source: str  # "gym", "file", "humaneval", "topics", "evolved"
    group: str  # task or topic, for coverage
    reference: str | None = None  # exact answer when known (verifier input)
    verifier: str | None = None  # "gym", "match", "humaneval" or None
    meta: dict[str, Any] = field(default_factory=dict)
    answer: str | None = None  # the accepted teacher answer (full text)
    final: str | None = None  # its extracted final answer
    flags: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "Item":
        """An item written by `to_json` (a teacher stage's `items` output); unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in known})
