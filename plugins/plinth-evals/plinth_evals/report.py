"""The comparison report: every model of a run against every metric, with intervals and deltas to the baseline.

`build_report(run_dir, compare=None, out_dir=None)` reads RUN_DIR/manifest.json, collects the `metrics`
artifacts of complete stages (metrics.json files in plinth.metrics/v1 form, see results.py), and writes
report.md (Markdown table), report.png (grouped bars with 95% error bars) and report.html (self-contained: the
table and the chart embedded as base64). It needs no runner, so `plinth report` works on any run folder.

A delta cell is marked `*` when its approximate 95% interval (plinth.stats.difference_interval) excludes 0.
Comparing two runs puts both runs' models in one table (labels suffixed " @<run>") and adds a B − A table for
the (model, metric) pairs both runs share.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plinth import ConfigError
from plinth.stats import difference_interval

from .results import SCHEMA


@dataclass
class Cell:
    value: float
    n: int
    ci_low: float
    ci_high: float
    higher_is_better: bool = True
    ci_method: str = ""

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Cell":
        return cls(float(d["value"]), int(d.get("n", 0)), float(d.get("ci_low", d["value"])),
                   float(d.get("ci_high", d["value"])), bool(d.get("higher_is_better", True)),
                   str(d.get("ci_method", "")))


@dataclass
class Table:
    """models x metrics; `cells[model][metric]`."""

    name: str
    models: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    cells: dict[str, dict[str, Cell]] = field(default_factory=dict)
    baseline: str | None = None
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # one line per task about its items (task_info)

    def put(self, model: str, metric: str, cell: Cell) -> None:
        if model not in self.models:
            self.models.append(model)
        if metric not in self.metrics:
            self.metrics.append(metric)
        self.cells.setdefault(model, {})[metric] = cell

    def get(self, model: str, metric: str) -> Cell | None:
        return self.cells.get(model, {}).get(metric)


def load_run(run_dir: str | Path) -> Table:
    """Collect every metrics.json of a run's complete stages into one Table."""
    run_dir = Path(run_dir)
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.exists():
        raise ConfigError(f"{run_dir} is not a plinth run directory (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{manifest_path}: invalid JSON ({exc})") from exc
    table = Table(name=run_dir.resolve().name)
    for stage, record in (manifest.get("stages") or {}).items():
        if record.get("status") not in ("complete", "skipped"):
            continue
        for out in (record.get("outputs") or {}).values():
            if out.get("kind") != "metrics":
                continue
            path = Path(out["path"])
            path = path if path.is_absolute() else run_dir / path
            add_metrics_file(table, path, stage)
    return table


def add_metrics_file(table: Table, path: Path, stage: str = "") -> None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return  # a metrics artifact another plugin wrote in another shape: not ours to report
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        return
    table.sources.append(str(path))
    note = task_note(doc)
    if note and note not in table.notes:
        table.notes.append(note)
    if doc.get("baseline") and table.baseline is None:
        table.baseline = doc["baseline"]
    for label, entry in (doc.get("models") or {}).items():
        if label not in table.models:
            table.models.append(label)
        for metric, d in (entry.get("metrics") or {}).items():
            name = metric
            if table.get(label, metric) is not None and stage:
                name = f"{stage}:{metric}"  # the same task scored twice by different stages
            try:
                table.put(label, name, Cell.from_json(d))
            except (KeyError, TypeError, ValueError):
                continue
    if table.baseline in table.models:  # baseline first
        table.models.remove(table.baseline)
        table.models.insert(0, table.baseline)


def task_note(doc: dict[str, Any]) -> str | None:
    """'arithmetic: 250 held-out items from stage data; 7 of 1050 training prompts removed as matching one
    (same question text, ...)' — from the evaluator's `task_info`."""
    info = doc.get("task_info") or {}
    decon = info.get("decontamination") or {}
    if not info:
        return None
    text = f"{doc.get('task', '?')}: {info.get('rows', '?')} items"
    if info.get("stage"):
        text += f" from stage {info['stage']}"
    if decon:
        text += (f"; decontamination: {decon.get('training_prompts_removed', 0)} of "
                 f"{decon.get('training_prompts_checked', '?')} training prompts removed for matching one of them "
                 f"({decon.get('rule', '')})")
    return text


def merge_runs(a: Table, b: Table) -> Table:
    out = Table(name=f"{a.name} vs {b.name}")
    for t in (a, b):
        for model in t.models:
            for metric in t.metrics:
                cell = t.get(model, metric)
                if cell is not None:
                    out.put(f"{model} @{t.name}", metric, cell)
                elif f"{model} @{t.name}" not in out.models:
                    out.models.append(f"{model} @{t.name}")
    out.baseline = f"{a.baseline} @{a.name}" if a.baseline else None
    out.sources = a.sources + b.sources
    return out


# -- formatting -----------------------------------------------------------------------------------------------
def fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"


def delta(cell: Cell, base: Cell) -> tuple[float, bool, bool]:
    """(difference, significant, better)."""
    d = cell.value - base.value
    lo, hi = difference_interval(cell.value, (cell.ci_low, cell.ci_high), base.value, (base.ci_low, base.ci_high))
    significant = lo > 0 or hi < 0
    better = d > 0 if cell.higher_is_better else d < 0
    return d, significant, better


def cell_text(table: Table, model: str, metric: str) -> str:
    cell = table.get(model, metric)
    if cell is None:
        return "—"
    text = f"{fmt(cell.value)} [{fmt(cell.ci_low)}, {fmt(cell.ci_high)}] n={cell.n}"
    base = table.get(table.baseline, metric) if table.baseline else None
    if base is not None and model != table.baseline:
        d, sig, _better = delta(cell, base)
        text += f" ({'+' if d >= 0 else ''}{fmt(d)}{'*' if sig else ''})"
    return text


def to_markdown(table: Table, compare: tuple[Table, Table] | None = None) -> str:
    lines = [f"# plinth report: {table.name}", ""]
    if not table.metrics:
        lines.append("No plinth-evals metrics found in this run.")
        return "\n".join(lines) + "\n"
    lines.append("Each cell: value [95% interval] n=samples (delta to the baseline; * = its 95% interval excludes 0).")
    arrows = {m: ("↑" if _hib(table, m) else "↓") for m in table.metrics}
    lines.append("")
    lines.append("| model | " + " | ".join(f"{m} {arrows[m]}" for m in table.metrics) + " |")
    lines.append("|---|" + "---|" * len(table.metrics))
    for model in table.models:
        name = f"{model} (baseline)" if model == table.baseline else model
        lines.append(f"| {name} | " + " | ".join(cell_text(table, model, m) for m in table.metrics) + " |")
    if table.notes:
        lines += [""] + [f"- {note}" for note in table.notes]
    if compare is not None:
        a, b = compare
        lines += ["", f"## {b.name} − {a.name}", "", "| model | metric | " + f"{a.name} | {b.name} | difference |",
                  "|---|---|---|---|---|"]
        for model in a.models:
            for metric in a.metrics:
                ca, cb = a.get(model, metric), b.get(model, metric)
                if ca is None or cb is None:
                    continue
                d, sig, _ = delta(cb, ca)
                lines.append(f"| {model} | {metric} | {fmt(ca.value)} | {fmt(cb.value)} | "
                             f"{'+' if d >= 0 else ''}{fmt(d)}{'*' if sig else ''} |")
    return "\n".join(lines) + "\n"


def _hib(table: Table, metric: str) -> bool:
    for model in table.models:
        cell = table.get(model, metric)
        if cell is not None:
            return cell.higher_is_better
    return True


# -- files ------------------------------------------------------------------------------------------------------
@dataclass
class ReportFiles:
    markdown: Path
    png: Path | None
    html: Path
    bars: int
    text: str


def build_report(run_dir: str | Path, compare: str | Path | None = None, out_dir: str | Path | None = None,
                 chart: bool = True) -> ReportFiles:
    from .chart import draw_chart
    from .html import to_html

    a = load_run(run_dir)
    pair = None
    table = a
    if compare is not None:
        b = load_run(compare)
        if b.name == a.name:
            b.name = f"{b.name} (2)"
        table = merge_runs(a, b)
        pair = (a, b)
    if out_dir is None:
        out_dir = Path(run_dir) / "report"
        if compare is not None:
            out_dir = out_dir / f"compare-{pair[1].name}"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = to_markdown(table, pair)
    md = out_dir / "report.md"
    md.write_text(text, encoding="utf-8")
    png, bars = None, 0
    if chart and table.metrics:
        png = out_dir / "report.png"
        bars = draw_chart(table, png)
    html = out_dir / "report.html"
    html.write_text(to_html(table, text, png), encoding="utf-8")
    return ReportFiles(markdown=md, png=png, html=html, bars=bars, text=text)
