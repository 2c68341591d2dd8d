"""humaneval: a pass means check() returned (in the core sandbox), and pass@k on known completions."""

from __future__ import annotations

import pytest

from plinth_evals.humaneval import HumanEval, build_program, default_problems_file, run_program
from plinth_evals.tasks import read_rows

from .conftest import context, model_art, read_metrics, read_samples, write_jsonl


def test_canonical_solutions_pass_and_wrong_ones_fail():
    """All 164 reference solutions pass in the sandbox: its refusals do not fail correct code (about 4 s)."""
    problems = read_rows(default_problems_file())
    assert len(problems) == 164
    failed = [p["task_id"] for p in problems
              if not run_program(build_program(p, p["canonical_solution"]), timeout=10).passed]
    assert failed == []
    for prob in problems[:3]:
        assert not run_program(build_program(prob, "    return None\n"), timeout=10).passed


def test_sandbox_kills_and_blocks(tmp_path):
    outside = tmp_path / "escape.txt"
    hang = run_program("while True:\n    pass\n", timeout=1.0)
    assert (hang.passed, hang.status) == (False, "timeout")
    write = run_program(f"open({str(outside)!r}, 'w').write('x')\n", timeout=5)
    assert not write.passed and not outside.exists()
    inside = run_program("open('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'\n")
    assert inside.passed and inside.sandbox in ("bwrap", "rlimits")


EXITS = ["import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n", "raise SystemExit\n",
         "print('all tests passed')\nimport sys\nsys.exit(0)\n",
         "import __main__\nfor _k in list(vars(__main__)):\n    setattr(__main__, _k, None)\nimport os\nos._exit(0)\n"]


def test_exiting_before_check_counts_as_failed(tmp_path, answer42):
    """The model's answer is wrong (42, the tests want 7); a program that leaves before check() must not pass."""
    problems = [{"task_id": f"exit/{i}", "prompt": f"{code}def seven():\n    return ", "entry_point": "seven",
                 "test": "def check(f):\n    assert f() == 7\n"} for i, code in enumerate(EXITS)]
    out = HumanEval({"problems_file": str(write_jsonl(tmp_path / "exits.jsonl", problems)), "max_new_tokens": 4,
                     "timeout": 5.0}).evaluate(context(tmp_path, [model_art(answer42, label="m")]))
    m = read_metrics(out)["models"]["m"]["metrics"]["exits/pass@1"]
    rows = read_samples(out, "m")
    assert [r["passed"] for r in rows] == [False] * len(problems), rows
    assert m["value"] == 0 and m["n"] == len(problems) and m["sandbox"] in ("bwrap", "rlimits")


PROBLEMS = [
    {"task_id": "t/0", "prompt": "def answer():\n    return ", "entry_point": "answer",
     "test": "def check(f):\n    assert f() == 42\n"},
    {"task_id": "t/1", "prompt": "def seven():\n    return ", "entry_point": "seven",
     "test": "def check(f):\n    assert f() == 7\n"},
    {"task_id": "t/2", "prompt": "def loop():\n    return ", "entry_point": "loop",
     "test": "def check(f):\n    while True:\n        pass\n"},
]


def test_pass_at_1_on_known_completions(tmp_path, answer42):
    problems = write_jsonl(tmp_path / "mini_he.jsonl", PROBLEMS)
    out = HumanEval({"problems_file": str(problems), "max_new_tokens": 4, "timeout": 1.0}).evaluate(
        context(tmp_path, [model_art(answer42, label="m")]))
    m = read_metrics(out)["models"]["m"]["metrics"]["mini_he/pass@1"]
    assert m["value"] == pytest.approx(1 / 3) and m["n"] == 3 and m["timeouts"] == 1
    rows = read_samples(out, "m")
    assert [r["completion"] for r in rows] == ["42"] * 3
    assert [r["status"] for r in rows] == ["passed", "failed", "timeout"]


def test_pass_at_k_with_samples(tmp_path, answer42):
    problems = write_jsonl(tmp_path / "he2.jsonl", PROBLEMS[:2])
    out = HumanEval({"problems_file": str(problems), "max_new_tokens": 4, "num_samples": 2, "k": [1, 2],
                     "temperature": 0.01}).evaluate(context(tmp_path, [model_art(answer42, label="m")]))
    metrics = read_metrics(out)["models"]["m"]["metrics"]
    assert metrics["he2/pass@1"]["value"] == pytest.approx(0.5)
    assert metrics["he2/pass@2"]["value"] == pytest.approx(0.5)
    assert metrics["he2/pass@1"]["ci_method"] == "bootstrap"
    assert len(read_samples(out, "m")) == 4


def test_bad_config_and_problems(tmp_path, answer42):
    with pytest.raises(ValueError, match="between 1 and num_samples"):
        HumanEval({"k": [5]})
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"task_id": "x", "prompt": "def f():"}])
    from plinth import ConfigError

    with pytest.raises(ConfigError, match=r"bad\.jsonl, line 1: missing \['test', 'entry_point'\]"):
        HumanEval({"problems_file": str(bad)}).evaluate(context(tmp_path, [model_art(answer42, label="m")]))
