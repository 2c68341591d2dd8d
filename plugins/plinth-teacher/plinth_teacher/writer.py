"""Dataset files that `datasets.load_dataset("json" | "parquet", ...)` opens, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from plinth.rundir import atomic_path, open_atomic


def write_rows(path: Path, rows: Iterable[dict[str, Any]], file_format: str = "jsonl") -> int:
    rows = list(rows)
    with atomic_path(path) as tmp:
        if file_format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), tmp)
        else:
            with open(tmp, "w", encoding="utf-8") as fh:
                for r in rows:
                    fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return len(rows)


def write_json(path: Path, data: Any) -> None:
    with open_atomic(path) as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False, default=str)


def append_rows(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
