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


def test_a_full_disk_is_recognised_behind_other_errors(tmp_path, monkeypatch):
    import plinth.failures as failures

    # a library that wraps ENOSPC in its own error, raised `from` it
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("could not write the checkpoint") from inner
    except RuntimeError as exc:
        assert "disk is full" in environment_problem(exc)
    # torch.save's C++ stream writer on a full disk: no errno anywhere, only the free space tells
    torch_error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1234 vs 1200")
    assert environment_problem(torch_error, tmp_path) is None  # plenty of space here: a bug, keep the traceback
    monkeypatch.setattr(failures.shutil, "disk_usage", lambda p: type("U", (), {"free": 10 << 20})())
    line = failure_message("sft", "sft", torch_error, tmp_path / "run.log")
    assert line.startswith(f"stage 'sft' (sft) cannot run: the disk holding {tmp_path} is full (10 MiB free")
    assert "unexpected pos" in line and 'File "' not in line and "run the same command again" in line
    # the folder may not exist yet: its nearest existing parent is checked
    assert "is full" in environment_problem(torch_error, tmp_path / "not" / "yet")


def test_gpu_out_of_memory_is_an_environment_problem():
    class OutOfMemoryError(RuntimeError):  # torch.OutOfMemoryError's name, without importing torch
        pass

    assert "GPU ran out of memory" in environment_problem(OutOfMemoryError("CUDA out of memory. Tried to allocate"))


def test_a_full_disk_outside_any_stage_is_one_line(monkeypatch, capsys):
    import plinth.cli as cli

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/state.json")

    monkeypatch.setattr(cli, "build_parser", full)
    assert cli.main(["plugins"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("plinth: error: the disk is full (/runs/x/state.json)") and "Traceback" not in err

    def bug(*a, **k):
        raise OSError(errno.ENOENT, "No such file")

    monkeypatch.setattr(cli, "build_parser", bug)
    try:
        cli.main(["plugins"])
    except OSError as exc:  # not the environment: a bug's traceback is kept
        assert exc.errno == errno.ENOENT
    else:
        raise AssertionError("a non-environment OSError was swallowed")
