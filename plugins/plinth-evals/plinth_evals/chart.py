"""The report chart: grouped bars (one colour per model) with 95% error bars.

Metrics on a 0..1 scale (accuracy, pass@k, win rate) share one panel of grouped bars; any other metric
(perplexity, ...) gets its own panel so scales never squash each other. Returns the number of bars drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .report import Table


def _unit(table: "Table", metric: str) -> bool:
    cells = [table.get(m, metric) for m in table.models]
    cells = [c for c in cells if c is not None]
    return bool(cells) and all(-1e-9 <= c.ci_low and c.ci_high <= 1 + 1e-9 and 0 <= c.value <= 1 for c in cells)


def draw_chart(table: "Table", path: Path) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = [m for m in table.metrics if _unit(table, m)]
    other = [m for m in table.metrics if m not in unit]
    panels: list[list[str]] = ([unit] if unit else []) + [[m] for m in other]
    widths = [max(2.0, 1.2 * len(p) * max(1, len(table.models)) * 0.35 + 1.0) for p in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(sum(widths) + 2.5, 4.2),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    colours = plt.get_cmap("tab10")
    n_models = max(1, len(table.models))
    width = 0.8 / n_models
    bars = 0
    handles = {}
    for ax, metrics in zip(axes[0], panels):
        for i, model in enumerate(table.models):
            xs, ys, err_lo, err_hi = [], [], [], []
            for j, metric in enumerate(metrics):
                cell = table.get(model, metric)
                if cell is None:
                    continue
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(cell.value)
                err_lo.append(max(0.0, cell.value - cell.ci_low))
                err_hi.append(max(0.0, cell.ci_high - cell.value))
            if not xs:
                continue
            h = ax.bar(xs, ys, width=width, color=colours(i % 10), yerr=[err_lo, err_hi], capsize=3,
                       ecolor="black", label=model)
            handles[model] = h
            bars += len(xs)
        ax.set_xticks(range(len(metrics)))
        ax.set_xticklabels(metrics, rotation=15, ha="right", fontsize=8)
        ax.set_ylim(bottom=0)
        if metrics is unit:
            ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    fig.legend([handles[m] for m in table.models if m in handles], [m for m in table.models if m in handles],
               loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.suptitle(f"{table.name}: 95% intervals", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Title": f"plinth report {table.name}"})
    plt.close(fig)
    return bars
