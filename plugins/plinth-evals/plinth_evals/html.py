"""The report as one self-contained HTML page: the table, the chart embedded as base64, the Markdown source.

No external resources (works offline and as an e-mail attachment). A few lines of script set
`data-chart-ok` on <body> once the embedded image decodes, which the headless-browser test checks.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .report import Table

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.baseline { font-weight: bold; }
.sig-better { color: #11772b; } .sig-worse { color: #b3261e; }
.ci { color: #666; font-size: 12px; }
img { max-width: 100%; margin-top: 1em; }
"""


def to_html(table: "Table", markdown: str, png: Path | None) -> str:
    from .report import LEGEND, better, cell_delta, delta_text, fmt, higher_is_better

    rows = []
    head = "".join(f"<th>{html.escape(m)} {'↑' if higher_is_better(table, m) else '↓'}</th>" for m in table.metrics)
    for model in table.models:
        cls = ' class="baseline"' if model == table.baseline else ""
        tds = [f"<td{cls}>{html.escape(model)}{' (baseline)' if cls else ''}</td>"]
        for metric in table.metrics:
            cell = table.get(model, metric)
            if cell is None:
                tds.append("<td>—</td>")
                continue
            text = (f"{fmt(cell.value)} <span class=ci>[{fmt(cell.ci_low)}, {fmt(cell.ci_high)}] "
                    f"n={cell.n}</span>")
            dl = cell_delta(table, model, metric)
            if dl is not None:
                klass = ("sig-better" if better(cell, dl) else "sig-worse") if dl.significant else ""
                text += f' <span class="{klass}">({html.escape(delta_text(dl))})</span>'
            tds.append(f"<td>{text}</td>")
        rows.append("<tr>" + "".join(tds) + "</tr>")
    img = ""
    if png is not None and png.exists():
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        img = f'<img id="chart" alt="grouped bars with 95% intervals" src="data:image/png;base64,{data}">'
    script = """
<script>
(function () {
  var img = document.getElementById('chart');
  function done() { document.body.setAttribute('data-chart-ok', img && img.naturalWidth > 0 ? 'true' : 'false'); }
  if (!img) { document.body.setAttribute('data-chart-ok', 'none'); }
  else if (img.complete) { done(); } else { img.addEventListener('load', done); img.addEventListener('error', done); }
})();
</script>"""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>plinth report: {html.escape(table.name)}</title>
<style>{STYLE}</style></head>
<body>
<h1>plinth report: {html.escape(table.name)}</h1>
<p>{html.escape(LEGEND)}</p>
<table id="metrics"><thead><tr><th>model</th>{head}</tr></thead>
<tbody>{''.join(rows)}</tbody></table>
{img}
<details><summary>Markdown</summary><pre>{html.escape(markdown)}</pre></details>
{script}
</body></html>
"""

