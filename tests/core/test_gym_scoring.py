"""plinth.lm.gym_scoring: reasoning-gym scores from the sandbox equal the in-process scores, and an answer that
runs code has no effect outside the sandbox and costs only itself."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from plinth.lm.gym_scoring import GymScoringError, score_in_sandbox

reasoning_gym = pytest.importorskip("reasoning_gym")

QUICKSTART = ("basic_arithmetic", json.dumps({"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2},
                                             sort_keys=True))
SPECS = [QUICKSTART, ("countdown", "{}"), ("spiral_matrix", "{}")]
SIZE = 20


def in_process(requests):
    datasets, out = {}, []
    for task, size, seed, options, index, answer in requests:
        key = (task, size, seed, options)
        if key not in datasets:
            datasets[key] = reasoning_gym.create_dataset(task, size=size, seed=seed, **json.loads(options))
        ds = datasets[key]
        try:
            out.append(float(ds.score_answer(answer=answer, entry=ds[index])))
        except Exception:  # noqa: BLE001 - the verifiers' rule: a scorer error is "not correct"
            out.append(0.0)
    return out


def test_sandboxed_scores_equal_in_process_scores():
    requests = []
    for t, (task, options) in enumerate(SPECS):
        seed = 1_000_000 * 3 + t
        ds = reasoning_gym.create_dataset(task, size=SIZE, seed=seed, **json.loads(options))
        for i in range(SIZE):
            right, other = str(ds[i]["answer"]), str(ds[(i + 1) % SIZE]["answer"])
            for answer in (right, f" {right} ", right + "1", right[:-1], other, "", "1/0", "(("):
                requests.append((task, SIZE, seed, options, i, answer))
    want = in_process(requests)
    got = score_in_sandbox(requests)
    assert len(requests) == 480 and sum(w >= 1.0 for w in want) >= len(SPECS) * SIZE
    assert got == want


def test_answers_that_run_code_have_no_effect_and_cost_only_themselves(tmp_path):
    marker = f"/tmp/pwned-{uuid.uuid4().hex}"
    written = tmp_path / "written"
    ds = reasoning_gym.create_dataset("spiral_matrix", size=4, seed=0)
    right = str(ds[1]["answer"])
    evil = [f"__import__('os').system('touch {marker}')",
            f"open({str(written)!r}, 'w').write('x')",
            f"__import__('subprocess').run(['touch', {marker!r}])",
            "__import__('os')._exit(0)",  # stops the child: this answer is None, the rest runs again
            "__import__('sys').exit(0)",
            "print('9 1.0\\n' * 100000)"]
    requests = [(task, 4, 0, "{}", 1, answer) for task in ("spiral_matrix", "countdown") for answer in evil]
    requests.insert(3, ("spiral_matrix", 4, 0, "{}", 1, right))
    requests.append(("spiral_matrix", 4, 0, "{}", 1, right))
    got = score_in_sandbox(requests)
    assert got[3] == 1.0 and got[-1] == 1.0
    assert all(s is None or s < 1.0 for k, s in enumerate(got) if k not in (3, len(got) - 1)), got
    assert got[4] is None and got[10] is None  # the two os._exit answers
    assert not os.path.exists(marker) and not written.exists()


def test_a_task_reasoning_gym_cannot_build_is_an_error():
    with pytest.raises(GymScoringError, match="no_such_task"):
        score_in_sandbox([("no_such_task", 4, 0, "{}", 0, "1")])
