"""How long `plinth --help` and `plinth plugins` take, against `python -c pass`, measured in the same run.

Target (issue 2): under 0.5 s extra over bare Python start-up, with every installed plugin loaded.
Run: .venv/bin/python benchmarks/cli_startup.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

PLINTH = str(Path(sys.executable).parent / "plinth")


def timed(cmd: list[str], repeat: int) -> float:
    subprocess.run(cmd, capture_output=True, check=True)  # warm the file cache
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    base = timed([sys.executable, "-c", "pass"], args.repeat)
    rows = [("python -c pass (baseline)", base)]
    for label, cmd in [("plinth --help", [PLINTH, "--help"]), ("plinth plugins", [PLINTH, "plugins"]),
                       ("plinth plugins --json", [PLINTH, "plugins", "--json"])]:
        rows.append((label, timed(cmd, args.repeat)))
    print(f"{'command':28} {'median s':>9} {'extra s':>8} {'ratio':>6}")
    worst = 0.0
    for label, t in rows:
        print(f"{label:28} {t:9.3f} {t - base:8.3f} {t / base:6.1f}x")
        worst = max(worst, t - base)
    verdict = "PASS" if worst < 0.5 else "FAIL"
    print(f"worst extra start-up: {worst:.3f} s (target < 0.5 s): {verdict}")
    return 0 if worst < 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
