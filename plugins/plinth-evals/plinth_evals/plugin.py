"""Entry point: registers the six evaluators, the `plinth report` command, and prints the report after a run.

Evaluators are registered by lazy reference and imported only when a pipeline uses one, so loading this plugin
keeps `plinth --help` fast.
"""

from __future__ import annotations

import sys

from plinth import hookimpl


@hookimpl
def plinth_register_evaluators(register):
    # lazy "module:Class" references: imported only when a pipeline uses the evaluator
    register("exact-match", "plinth_evals.exact_match:ExactMatch")
    register("multiple-choice", "plinth_evals.multiple_choice:MultipleChoice")
    register("humaneval", "plinth_evals.humaneval:HumanEval")
    register("perplexity", "plinth_evals.perplexity:Perplexity")
    register("judge", "plinth_evals.judge:Judge")
    register("lm-eval", "plinth_evals.lm_eval_adapter:LMEval")


def _report_command(args) -> int:
    from plinth import PlinthError

    from .report import build_report

    try:
        files = build_report(args.run_dir, compare=args.compare, out_dir=args.out, chart=not args.no_chart)
    except PlinthError as exc:
        print(f"plinth report: {exc}", file=sys.stderr)
        return 2
    print(files.text)
    written = [files.markdown, files.png, files.html]
    print("written: " + ", ".join(str(p) for p in written if p is not None))
    return 0


@hookimpl
def plinth_register_commands(subparsers):
    p = subparsers.add_parser("report", help="table, chart and HTML page of every model x metric in a run")
    p.add_argument("run_dir", help="a run directory (holds manifest.json)")
    p.add_argument("--compare", metavar="OTHER_RUN_DIR", help="put a second run beside the first")
    p.add_argument("--out", metavar="DIR", help="where to write report.md/.png/.html (default RUN_DIR/report)")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    p.set_defaults(func=_report_command)


@hookimpl
def plinth_run_finished(run, status):
    """After `plinth run`: write the report and print its table, when the run produced plinth-evals metrics."""
    from .report import build_report, load_run

    try:
        if not load_run(run.run_dir).metrics:
            return
        files = build_report(run.run_dir)
    except Exception as exc:  # noqa: BLE001 - a report problem must never fail a finished run
        print(f"plinth-evals: could not build the report: {type(exc).__name__}: {exc}", file=sys.stderr)
        return
    if getattr(run, "echo", True):
        print("\n" + files.text + f"\nreport: {files.html}", flush=True)
