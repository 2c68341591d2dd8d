"""The comparison report: every model of a run against every metric, with intervals and deltas to the baseline.

`build_report(run_dir, compare=None, out_dir=None)` reads RUN_DIR/manifest.json, collects the `metrics`
artifacts of complete stages (metrics.json files in plinth.metrics/v1 form, see results.py), and writes
report.md (Markdown table), report.png (grouped bars with 95% error bars) and report.html (self-contained: the
table and the chart embedded as base64). It needs no runner, so `plinth report` works on any run folder.

Columns are decided per evaluator stage: when two stages score the same metric name, every column of those
stages is named "<stage>:<metric>", and each column's deltas are taken against the baseline of the stage that
produced it. A delta is marked `*` when its 95% interval excludes 0, and says which interval it is: `paired`
(plinth.stats.paired_bootstrap_interval over the items both models were scored on, from the per-sample files
the metric names with `sample_field`) or, when those are missing or do not align, `unpaired`
(plinth.stats.difference_interval from the two intervals). Comparing two runs puts both runs' models in one
table (labels suffixed " @<run>") and adds a B − A table for the (model, metric) pairs both runs share.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from plinth import ConfigError
from plinth.stats import difference_interval, paired_bootstrap_interval

from .results import SCHEMA


@dataclass
class Cell:
    value: float
    n: int
    ci_low: float
    ci_high: float
    higher_is_better: bool = True
    ci_method: str = ""
    samples: Path | None = None  # the model's per-sample file, for paired deltas
    sample_field: str | None = None  # the per-sample value whose mean is `value`

    @classmethod
    def from_json(cls, d: dict[str, Any], samples: Path | None = None) -> "Cell":
        return cls(float(d["value"]), int(d.get("n", 0)), float(d.get("ci_low", d["value"])),
                   float(d.get("ci_high", d["value"])), bool(d.get("higher_is_better", True)),
                   str(d.get("ci_method", "")), samples, d.get("sample_field"))


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
    column_baseline: dict[str, str | None] = field(default_factory=dict)  # metric column -> its stage's baseline

    def put(self, model: str, metric: str, cell: Cell) -> None:
        if model not in self.models:
            self.models.append(model)
        if metric not in self.metrics:
            self.metrics.append(metric)
        self.cells.setdefault(model, {})[metric] = cell

    def get(self, model: str | None, metric: str) -> Cell | None:
        return self.cells.get(model, {}).get(metric) if model is not None else None

    def baseline_of(self, metric: str) -> str | None:
        """The baseline this column's deltas are taken against: the producing stage's, else the table's."""
        return self.column_baseline.get(metric, self.baseline)


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
    found: list[tuple[str, Path, dict[str, Any]]] = []
    for stage, record in (manifest.get("stages") or {}).items():
        if record.get("status") not in ("complete", "skipped"):
            continue
        outs = [(name, o) for name, o in (record.get("outputs") or {}).items() if o.get("kind") == "metrics"]
        for name, out in outs:
            path = Path(out["path"])
            path = path if path.is_absolute() else run_dir / path
            doc = read_metrics_doc(path)
            if doc is not None:
                found.append((stage if len(outs) == 1 else f"{stage}.{name}", path, doc))
    seen: dict[str, set[str]] = {}  # metric name -> the stages that report it
    for source, _path, doc in found:
        for metric in metric_names(doc):
            seen.setdefault(metric, set()).add(source)
    for source, path, doc in found:
        shared = {m for m in metric_names(doc) if len(seen[m]) > 1}
        add_metrics_file(table, path, source, qualify=shared, doc=doc)
    return table


def read_metrics_doc(path: Path) -> dict[str, Any] | None:
    """A plinth.metrics/v1 document, or None for a metrics artifact another plugin wrote in another shape."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == SCHEMA else None


def metric_names(doc: dict[str, Any]) -> set[str]:
    return {m for entry in (doc.get("models") or {}).values() for m in (entry.get("metrics") or {})}


def add_metrics_file(table: Table, path: Path, stage: str = "", qualify: set[str] | None = None,
                     doc: dict[str, Any] | None = None) -> None:
    """Add one stage's metrics.json; metric names in `qualify` (scored by other stages too) become columns
    "<stage>:<metric>" for every model of this stage — decided once per stage, never per cell."""
    doc = doc if doc is not None else read_metrics_doc(path)
    if doc is None:
        return
    table.sources.append(str(path))
    note = task_note(doc)
    if note and note not in table.notes:
        table.notes.append(note)
    models = doc.get("models") or {}
    baseline = doc.get("baseline") if doc.get("baseline") in models else None
    if baseline and table.baseline is None:
        table.baseline = baseline
    qualify = qualify or set()
    for label, entry in models.items():
        if label not in table.models:
            table.models.append(label)
        samples = path.parent / entry["samples"] if isinstance(entry.get("samples"), str) else None
        for metric, d in (entry.get("metrics") or {}).items():
            name = f"{stage}:{metric}" if metric in qualify and stage else metric
            try:
                table.put(label, name, Cell.from_json(d, samples))
            except (KeyError, TypeError, ValueError):
                continue
            table.column_baseline[name] = baseline
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
    for t in (b, a):  # a's column baselines win: deltas are measured against run A's baseline
        for metric in t.metrics:
            base = t.baseline_of(metric)
            out.column_baseline[metric] = f"{base} @{t.name}" if base else None
    out.sources = a.sources + b.sources
    return out


# -- formatting -----------------------------------------------------------------------------------------------
def fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"


@dataclass
class Delta:
    value: float  # cell - base
    low: float
    high: float
    test: str  # "paired" (bootstrap over the same items), "unpaired" (from the two intervals), "one measurement"

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def delta(cell: Cell, base: Cell) -> Delta:
    """cell - base with its 95% interval: paired over items when both per-sample files align, else unpaired."""
    d = cell.value - base.value
    if cell.n < 2 or base.n < 2:  # one measurement (a peak memory, a wall time): no interval, nothing to test
        return Delta(d, -math.inf, math.inf, "one measurement")
    pair = paired_values(cell, base)
    if pair is not None:
        lo, hi = paired_bootstrap_interval(*pair)
        return Delta(d, lo, hi, "paired")
    lo, hi = difference_interval(cell.value, (cell.ci_low, cell.ci_high), base.value, (base.ci_low, base.ci_high))
    return Delta(d, lo, hi, "unpaired")


def better(cell: Cell, dl: Delta) -> bool:
    return dl.value > 0 if cell.higher_is_better else dl.value < 0


def paired_values(cell: Cell, base: Cell) -> tuple[list[float], list[float]] | None:
    """Both models' per-item values in one item order, or None when a file or field is missing, the item ids
    differ, or a file's mean is not its metric's value (then the samples are not what the metric measured)."""
    if not (cell.sample_field and cell.sample_field == base.sample_field and cell.samples and base.samples):
        return None
    a = _sample_values(str(cell.samples), cell.sample_field, _mtime(cell.samples))
    b = _sample_values(str(base.samples), base.sample_field, _mtime(base.samples))
    if a is None or b is None or set(a) != set(b) or len(a) < 2:
        return None
    ids = list(a)
    xs, ys = [a[i] for i in ids], [b[i] for i in ids]
    for values, c in ((xs, cell), (ys, base)):
        if len(values) != c.n or abs(sum(values) / len(values) - c.value) > 1e-9 * max(1.0, abs(c.value)):
            return None
    return xs, ys


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


@lru_cache(maxsize=256)
def _sample_values(path: str, sample_field: str, _mtime_ns: int) -> dict[str, float] | None:
    """{item id: value} from a samples JSONL; None if unreadable, an id repeats, or a value is not a number."""
    out: dict[str, float] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                row = json.loads(line)
                key, value = json.dumps(row.get("id"), sort_keys=True), row.get(sample_field)
                if row.get("id") is None or key in out or not isinstance(value, (bool, int, float)):
                    return None
                out[key] = float(value)
    except (OSError, ValueError, AttributeError):
        return None
    return out


def delta_text(dl: Delta) -> str:
    return f"{'+' if dl.value >= 0 else ''}{fmt(dl.value)}{'*' if dl.significant else ''} {dl.test}"


def cell_delta(table: Table, model: str, metric: str) -> Delta | None:
    """The delta of a cell to its column's baseline, or None (no cell, no baseline cell, or the baseline itself)."""
    cell = table.get(model, metric)
    base_label = table.baseline_of(metric)
    base = table.get(base_label, metric)
    if cell is None or base is None or model == base_label:
        return None
    return delta(cell, base)


def cell_text(table: Table, model: str, metric: str) -> str:
    cell = table.get(model, metric)
    if cell is None:
        return "—"
    text = f"{fmt(cell.value)} [{fmt(cell.ci_low)}, {fmt(cell.ci_high)}] n={cell.n}"
    dl = cell_delta(table, model, metric)
    if dl is not None:
        text += f" ({delta_text(dl)})"
    return text


LEGEND = ("Each cell: value [95% interval] n=samples (delta to its column's baseline; * = the delta's 95% interval "
          "excludes 0; paired = bootstrap over the items both models were scored on, unpaired = from the two "
          "intervals, used when per-sample files are missing or do not align; one measurement = a single value such as a "
          "peak memory, never marked).")


def to_markdown(table: Table, compare: tuple[Table, Table] | None = None) -> str:
    lines = [f"# plinth report: {table.name}", ""]
    if not table.metrics:
        lines.append("No plinth-evals metrics found in this run.")
        return "\n".join(lines) + "\n"
    lines.append(LEGEND)
    arrows = {m: ("↑" if higher_is_better(table, m) else "↓") for m in table.metrics}
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
                lines.append(f"| {model} | {metric} | {fmt(ca.value)} | {fmt(cb.value)} | "
                             f"{delta_text(delta(cb, ca))} |")
    return "\n".join(lines) + "\n"


def higher_is_better(table: Table, metric: str) -> bool:
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
