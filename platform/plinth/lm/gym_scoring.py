"""reasoning-gym scoring of model-written answers in the core sandbox (the teacher's verifier and exact-match).

Why: reasoning-gym scorers evaluate the answer text — countdown and puzzle24 through sympy's `parse_expr` (an
`eval`), spiral_matrix, binary_matrix, n_queens and string_insertion through `eval(answer)` — so an answer such as
`__import__('os').system(...)` would run with the user's rights in plinth's process.

`score_in_sandbox(requests)` scores a whole batch in one `plinth.sandbox.run_python` child: `reasoning_gym` is
imported before the audit hook (its imports need ctypes), each dataset is rebuilt once per (task, size, seed,
options) with `reasoning_gym.create_dataset(task, size=size, seed=seed, **options)` — the call the in-process
verifiers make, so entry `index` is the same entry — and `score_answer(answer=..., entry=...)` runs under the hook
for each answer. One result per request: the scorer's float, 0.0 where the scorer raised (as in-process: a scorer
that chokes on odd text means "not correct"), None where the answer was never scored because it stopped the child
(exit, crash, time or memory limit): the caller counts None as not correct.

Cost: one child per batch (about 1-1.5 s to start Python and import reasoning_gym on this laptop's CPU), then
what the scorers cost in-process. A child that stops early has streamed the results it had; the answer it was
scoring is marked None and the rest of the batch runs again in a new child, so one poisonous answer costs one
restart (plus the batch timeout if it hangs inside C code, where the per-answer alarm cannot interrupt it).

What it does not protect: the answers of one batch share one process, so an answer that runs code can alter
what the child reports for the other answers of its batch (a deliberate attack on the reported scores; it
still cannot write outside the sandbox, open sockets or start processes — see `plinth.sandbox`).
"""

from __future__ import annotations

import json
import os
import site
import sys
from functools import lru_cache
from typing import NamedTuple

from ..errors import PlinthError
from ..sandbox import run_python


class GymRequest(NamedTuple):
    """One answer to score against entry `index` of reasoning-gym dataset (task, size, seed, options)."""

    task: str
    size: int
    seed: int
    options: str  # a JSON object of the task's own settings, "{}" for none
    index: int
    answer: str


class GymScoringError(PlinthError):
    """The sandboxed scorer could not start at all (reasoning_gym not importable in the child, a bad task)."""


SETUP_S = 30.0  # start Python, import reasoning_gym, build the datasets (1-1.5 s alone; 2 shared cores)
PER_ANSWER_S = 0.25  # added to the batch timeout per answer (scorers take milliseconds)
ALARM_S = 5  # one answer's own limit inside the child (Python code only: C code runs on to the batch timeout)
MEMORY_MB = 2048

# The child. REQUESTS is a JSON string literal (repr), never code. Results go to a duplicate of fd 1 taken before
# any answer runs; sys.stdout/stderr are replaced by sinks, so an answer that prints cannot flood the results.
CHILD = r'''
import json, os, signal, sys
import reasoning_gym

REQUESTS = json.loads(%s)
out = os.dup(1)
write, dumps = os.write, json.dumps


class Sink:
    def write(self, s):
        return len(s)

    def flush(self):
        pass


def alarm(*_):
    raise TimeoutError("answer took too long")


datasets = {}
for spec in sorted({tuple(r[:4]) for r in REQUESTS}):
    task, size, seed, options = spec
    try:
        datasets[spec] = reasoning_gym.create_dataset(task, size=size, seed=seed, **json.loads(options))
    except Exception as exc:
        write(out, ("error " + dumps(f"reasoning-gym cannot build task {task!r}: {exc}") + "\n").encode())
        os._exit(3)
write(out, b"ready\n")
sys.stdout = sys.stderr = Sink()
signal.signal(signal.SIGALRM, alarm)
for i, (task, size, seed, options, index, answer) in enumerate(REQUESTS):
    ds = datasets[(task, size, seed, options)]
    entry = ds[index]
    signal.alarm(%d)
    try:
        score = float(ds.score_answer(answer=answer, entry=entry))
    except BaseException:
        score = 0.0
    signal.alarm(0)
    write(out, ("%%d %%s\n" %% (i, dumps(score))).encode())
'''


def score_in_sandbox(requests: list[GymRequest] | list[tuple], *, timeout: float | None = None) -> list[float | None]:
    """Scores of `requests` (GymRequest or plain tuples in its field order), in order; see the module docstring.

    Raises GymScoringError when the child cannot even build the datasets (an environment or config problem, not
    an answer's fault)."""
    todo = [GymRequest(str(r[0]), int(r[1]), int(r[2]), str(r[3]), int(r[4]), str(r[5])) for r in requests]
    results: list[float | None] = [None] * len(todo)
    start = 0
    while start < len(todo):
        batch = todo[start:]
        got, why = _run_batch(batch, timeout)
        for k, score in got.items():
            results[start + k] = score
        done = 0
        while done in got:
            done += 1
        if done == len(batch):
            break
        if why is not None and not got and why[0] == "setup":
            raise GymScoringError(f"reasoning-gym scoring in the sandbox did not start: {why[1]}")
        start += done + 1  # the answer being scored when the child stopped stays None
    return results


def _run_batch(batch: list[GymRequest], timeout: float | None) -> tuple[dict[int, float], tuple[str, str] | None]:
    source = CHILD % (repr(json.dumps([list(r) for r in batch])), ALARM_S)
    limit = timeout if timeout is not None else SETUP_S + PER_ANSWER_S * len(batch)
    res = run_python(source, timeout=limit, memory_mb=MEMORY_MB, preload=("reasoning_gym",),
                     paths=_library_paths(), output_limit=64 * len(batch) + 4096)
    got: dict[int, float] = {}
    ready, error = False, None
    for line in res.stdout.decode("utf-8", "replace").splitlines():
        if line == "ready":
            ready = True
        elif line.startswith("error "):
            error = line[6:]
        elif ready:
            k, _, value = line.partition(" ")
            try:
                got[int(k)] = float(json.loads(value))
            except (ValueError, TypeError):
                break
    if res.finished and len(got) == len(batch):
        return got, None
    if not ready:
        detail = json.loads(error) if error else (res.detail or res.status)
        return got, ("setup", str(detail))
    return got, ("answer", res.detail or res.status)


@lru_cache(maxsize=1)
def _library_paths() -> tuple[str, ...]:
    """Folders the child needs on sys.path: this Python's site-packages and wherever reasoning_gym lives."""
    found = [*site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        found.append(site.getusersitepackages())
    try:
        import reasoning_gym
        found.append(os.path.dirname(os.path.dirname(os.path.abspath(reasoning_gym.__file__))))
    except ImportError:
        pass
    out: list[str] = []
    for p in found:
        if os.path.isdir(p) and os.path.realpath(p) not in out:
            out.append(os.path.realpath(p))
    return tuple(out)


if __name__ == "__main__":  # pragma: no cover - a manual check: python -m plinth.lm.gym_scoring task index answer
    print(score_in_sandbox([(sys.argv[1], 10, 0, "{}", int(sys.argv[2]), sys.argv[3])]))
