"""A failed stage ends with one line saying what to do; a broken environment gets no traceback."""

import errno

from plinth.failures import environment_problem, failure_message

PIPE = """
[run]
name = "f"

[stages.data]
slot = "generator"
component = "numbers"
n = 2
"""


def test_missing_package_is_one_line_with_the_fix(tmp_path, plinth_cmd, use_fixture_plugins):
    use_fixture_plugins("good")
    (tmp_path / "p.toml").write_text(PIPE)
    res = plinth_cmd("run", "p.toml", "--set", "data.needs=plinth_no_such_package", cwd=tmp_path)
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("plinth: stage 'data' (numbers) cannot run: the Python package 'plinth_no_such_package'")
    assert "pip install plinth_no_such_package" in last and "run the same command again" in last
    assert "Traceback" not in res.stderr and 'File "' not in res.stderr
    assert "Traceback" in (tmp_path / "runs" / "f" / "run.log").read_text()  # the details are kept for a bug report


def test_bug_keeps_the_traceback_tail_and_says_what_to_do(tmp_path):
    try:
        {}["missing"]
    except KeyError as exc:
        text = failure_message("sft", "sft", exc, tmp_path / "run.log")
    assert text.startswith("stage 'sft' (sft) failed: KeyError: 'missing'")
    assert 'File "' in text and text.splitlines()[-1].startswith(f"-> full traceback in {tmp_path / 'run.log'}")


def test_environment_problems_are_recognised():
    assert "disk is full" in environment_problem(OSError(errno.ENOSPC, "No space left", "/x/model.safetensors"))
    assert "out of memory" in environment_problem(MemoryError())
    assert "does not import" in environment_problem(ImportError("cannot import name 'X' from 'y'"))
    assert environment_problem(ValueError("bad")) is None
    assert environment_problem(OSError(errno.ENOENT, "No such file")) is None  # a missing file is not the machine
