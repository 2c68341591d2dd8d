"""Reading local task files (JSONL, JSON list, CSV) with errors that name the file, the row and the field.

Every evaluator reads its whole task file and checks every row before loading any model, so a typo on
row 900 fails in a second, not after an hour of generation.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from plinth import ConfigError
from plinth.records import iter_records


def read_rows(path: str | Path, what: str = "task file") -> list[dict[str, Any]]:
    """Rows of a .jsonl / .jsonl.gz / .json (list of objects) / .csv / .tsv file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} {path} does not exist")
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; give a .jsonl, .json or .csv file")
    name = path.name.lower()
    try:
        if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
            return _read_jsonl(path, what)
        if name.endswith(".json"):
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise ConfigError(f"{what} {path}: expected a JSON list of objects")
            return data
        if name.endswith((".csv", ".tsv")):
            return _read_csv(path, delimiter="\t" if name.endswith(".tsv") else ",")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path}: not UTF-8 text ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {path}: invalid JSON: {exc}") from exc
    raise ConfigError(f"{what} {path}: unknown format; use .jsonl, .json, .csv or .tsv")


def _read_jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    rows = []
    for lineno, row in iter_records(path, what):
        row.setdefault("_line", lineno)
        rows.append(row)
    return rows


HEADER_WORDS = {"question", "answer", "a", "b", "c", "d", "id", "prompt", "choices", "text"}


def _read_csv(path: Path, delimiter: str) -> list[dict[str, Any]]:
    """CSV with a header (C-Eval: id,question,A,B,C,D,answer; CMMLU: ,Question,A,B,C,D,Answer) or without
    one (MMLU's raw files: question,A,B,C,D,answer)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        table = list(csv.reader(fh, delimiter=delimiter))
    table = [r for r in table if any(cell.strip() for cell in r)]
    if not table:
        return []
    first = [c.strip().lower() for c in table[0]]
    if "question" in first or ("answer" in first and {"a", "b"} <= set(first)) or "text" in first:
        header = [c.strip() for c in table[0]]
        body = table[1:]
    else:
        width = len(table[0])
        if width < 4:
            raise ConfigError(f"task file {path}: a header-less CSV must be question,A,B,...,answer (MMLU layout); "
                              f"row 1 has {width} columns")
        header = ["question"] + [chr(ord("A") + i) for i in range(width - 2)] + ["answer"]
        body = table
    rows = []
    for lineno, cells in enumerate(body, 2 if body is not table else 1):
        if len(cells) != len(header):
            raise ConfigError(f"task file {path}, row {lineno}: {len(cells)} columns, header has {len(header)}")
        row: dict[str, Any] = dict(zip(header, cells))
        row["_line"] = lineno
        rows.append(row)
    return rows


def field_of(row: dict[str, Any], names: list[str] | str, path: Path | str, what: str) -> Any:
    """The first present field of `names` (case-insensitive), or an error naming the file, line and field."""
    if isinstance(names, str):
        names = [names]
    lower = {k.lower(): k for k in row}
    for name in names:
        key = lower.get(name.lower())
        if key is not None and row[key] is not None and row[key] != "":
            return row[key]
    where = f"line {row.get('_line', '?')}"
    raise ConfigError(f"task file {path}, {where}: missing field {' or '.join(repr(n) for n in names)} ({what}); "
                      f"the row has {sorted(k for k in row if k != '_line')}")
