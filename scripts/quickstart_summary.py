"""Summarise quickstart runs for docs/quickstart.md: per run, each model's exact match with its Wilson interval,
paired differences on the same held-out items (paired bootstrap, 95%), stage times and the decontamination count.

    python scripts/quickstart_summary.py runs/qs-seed0 runs/qs-seed1 runs/qs-seed2

Paired: every model answered the same items, so a difference is the mean of per-item differences and its interval
resamples items (10,000 resamples, seeded), which is much tighter than comparing two independent intervals.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
from plinth.stats import paired_bootstrap_interval, wilson_interval  # noqa: E402

PAIRS = [("sft", "baseline"), ("kto", "baseline"), ("sft_kto", "baseline"), ("merge", "baseline"),
         ("sft_kto", "sft"), ("merge", "sft"), ("merge", "sft_kto")]


def scores(eval_dir: Path) -> dict[str, dict]:
    doc = json.loads((eval_dir / "metrics.json").read_text())
    out = {}
    for label, entry in doc["models"].items():
        rows = [json.loads(line) for line in (eval_dir / entry["samples"]).read_text().splitlines()]
        out[label.split(".")[0]] = {str(r["id"]): 1.0 if r["correct"] else 0.0 for r in rows}
    return out


def summarise(run: Path) -> str:
    manifest = json.loads((run / "manifest.json").read_text())
    stages = manifest["stages"]
    per_model = scores(run / "stages" / "eval" / "out")
    ids = sorted(set.intersection(*(set(v) for v in per_model.values())))
    lines = [f"### {run.name}", "", "| model | exact match [95% Wilson] |", "|---|---|"]
    for label, s in per_model.items():
        k, n = sum(s[i] for i in ids), len(ids)
        lo, hi = wilson_interval(k, n)
        lines.append(f"| {label} | {k / n:.3f} [{lo:.3f}, {hi:.3f}] ({int(k)}/{n}) |")
    lines += ["", "| paired difference (same items) | value [95% paired bootstrap] |", "|---|---|"]
    for a, b in PAIRS:
        if a in per_model and b in per_model:
            xs, ys = [per_model[a][i] for i in ids], [per_model[b][i] for i in ids]
            d = (sum(xs) - sum(ys)) / len(ids)
            lo, hi = paired_bootstrap_interval(xs, ys, n_resamples=10_000)
            mark = " *" if lo > 0 or hi < 0 else ""
            lines.append(f"| {a} − {b} | {d:+.3f} [{lo:+.3f}, {hi:+.3f}]{mark} |")
    eval_in = stages["eval"]["inputs"]["task"]
    decon = (eval_in.get("meta") or {}).get("decontamination") or {}
    times = ", ".join(f"{sid} {rec.get('seconds', 0):.0f} s" for sid, rec in stages.items())
    total = sum(rec.get("seconds", 0) for rec in stages.values())
    lines += ["", f"Stages: {times} (sum {total:.0f} s = {total / 60:.1f} min)."]
    if decon:
        lines.append(f"Decontamination: {decon['training_prompts_removed']} of {decon['training_prompts_checked']} "
                     f"training prompts removed for matching one of the {decon['held_out']} held-out problems.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print("\n".join(summarise(Path(p)) for p in sys.argv[1:]))
