"""Artifacts: what stages hand each other, by name, through the run directory.

An artifact is a file or folder on disk in a format other tools open directly (a Hugging Face model folder,
a JSONL/Parquet dataset, a metrics JSON, a PyTorch checkpoint, ...) plus a `kind` string that says which.
The core never interprets the kind; components agree on it. Common kinds are listed in `KINDS` for docs
and for `plinth validate`'s hints, but any string is allowed so new slots (point clouds, plans) fit.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = {
    "model": "Hugging Face model folder (config.json, safetensors, tokenizer files)",
    "dataset": "a JSONL or Parquet file (or folder of them) that datasets.load_dataset opens",
    "metrics": "a JSON file of named scores",
    "checkpoint": "a PyTorch checkpoint file (state dicts, optimizer, step)",
    "samples": "per-sample JSONL outputs (for audits)",
    "report": "a human-facing file (Markdown, PNG, HTML)",
    "profile": "per-layer timing and size measurements",
    "plan": "a partition or schedule plan (JSON)",
}


@dataclass(frozen=True)
class Artifact:
    """A named output of a stage: `kind` says how to read `path`; `meta` holds small facts (counts, hashes)."""

    kind: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self, root: Path | None = None) -> dict[str, Any]:
        path = self.path
        if root is not None:
            try:
                path = self.path.resolve().relative_to(root.resolve())
            except ValueError:
                pass
        return {"kind": self.kind, "path": str(path), "meta": self.meta}

    @classmethod
    def from_json(cls, data: dict[str, Any], root: Path | None = None) -> "Artifact":
        path = Path(data["path"])
        if root is not None and not path.is_absolute():
            path = root / path
        return cls(kind=data["kind"], path=path, meta=dict(data.get("meta", {})))

    def exists(self) -> bool:
        return self.path.exists()


def content_hash(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file, or of a folder's files (names and contents, sorted) — used to skip unchanged stages."""
    h = hashlib.sha256()
    path = Path(path)
    if path.is_file():
        files = [path]
        base = path.parent
    else:
        base = path
        files = sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(base)).encode())
        h.update(b"\0")
        st = os.stat(f)
        h.update(str(st.st_size).encode())
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()
