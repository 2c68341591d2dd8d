"""Reading record files (JSONL, gzipped JSONL, a JSON list, Parquet) with errors that name the file and line.

One reader for the core and every plugin: trainers' datasets, the teacher's seed files, evaluators' task files.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Iterator

from .errors import ConfigError

SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".json", ".parquet")


def iter_records(
    path: str | Path, what: str = "file", error: type[ConfigError] = ConfigError
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line or row number, record) for each record; `what` starts every error message ("dataset", "task file")."""
    path = Path(path)
    name = path.name.lower()
    if not path.is_file():
        raise error(f"{what} {path} does not exist")
    if name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise error(f"{what} {path}: reading Parquet needs pyarrow (pip install pyarrow)") from exc
        yield from enumerate(pq.read_table(path).to_pylist(), 1)
        return
    opener = gzip.open if name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
            if name.endswith(".json"):
                data = json.load(fh)
                if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                    raise error(f"{what} {path}: a .json file must hold a list of objects")
                yield from enumerate(data, 1)
                return
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise error(f"{what} {path}, line {n}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise error(f"{what} {path}, line {n}: expected a JSON object, got {type(row).__name__}")
                yield n, row
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path}: not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{what} {path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
