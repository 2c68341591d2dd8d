"""A rank that dies or hangs makes every rank of the pipeline exit within the timeout, with an error naming it.

Three stages on three real processes, timeout_s = 5. One launch (one torch import) runs both scenarios:
- `die` (GPipe): rank 2 exits with code 3 inside its third forward;
- `hang` (1F1B): rank 1 sleeps for an hour inside its third forward.
"""

from __future__ import annotations

import pytest

from .pipe_harness import explain, folder_of, launch

TIMEOUT_S = 5.0
DIE, HANG = f"fault:die:gpipe:{TIMEOUT_S:g}", f"fault:hang:1f1b:{TIMEOUT_S:g}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("faults")
    procs = launch([DIE, HANG], 3, out, deadline_s=240)
    return out, procs


def errors(out, scenario) -> dict[int, str]:
    folder = folder_of(out, scenario)
    return {r: (folder / f"error-{r}.txt").read_text().splitlines()[0]
            for r in range(3) if (folder / f"error-{r}.txt").exists()}


def started(out, scenario) -> float:
    return max(float((folder_of(out, scenario) / f"started-{r}.txt").read_text()) for r in range(3))


def test_a_dead_rank_stops_every_rank_with_its_name(runs):
    out, procs = runs
    ranks = procs[DIE]
    assert [p.returncode for p in ranks] == [1, 1, 3], explain(ranks)
    err = errors(out, DIE)
    # its neighbour names it, and says it is gone (the connection closed: no need to wait for the timeout)
    assert err[1].startswith("PipelineFault: rank 1 (stage 1, conv2..fault1)"), err[1]
    assert "rank 2 (stage 2, fault2..fc) is gone" in err[1]
    # rank 0 never talks to rank 2: it sees rank 1 go, and quotes what rank 1 reported before it went
    assert err[0].startswith("PipelineFault: rank 0 (stage 0, conv1..pool1)") and "rank 1 (stage 1" in err[0]
    log0 = (folder_of(out, DIE) / "error-0.txt").read_text()
    assert "the other ranks report:\nrank 1 (stage 1, conv2..fault1) failed: PipelineFault:" in log0
    assert "rank 2 (stage 2, fault2..fc) is gone" in log0.split("the other ranks report:")[1]
    # nobody waited for the timeout: the death is seen at once
    assert max(p.seconds for p in ranks) - min(p.seconds for p in ranks) < TIMEOUT_S


def test_a_hung_rank_stops_every_rank_within_the_timeout(runs):
    out, procs = runs
    ranks = procs[HANG]
    assert all(p.returncode not in (0, None) for p in ranks), explain(ranks)
    err = errors(out, HANG)
    assert "rank 1 (stage 1, conv2..fault1) hangs" in err[0] and "timed out" not in err[0].lower()
    assert "within timeout_s = 5 s" in err[0] or "nothing came within" in err[0]
    log0 = (folder_of(out, HANG) / "error-0.txt").read_text()
    # its heartbeat says it is stuck in its own work, not waiting for anyone, and where
    assert "rank 1 (stage 1, conv2..fault1): stuck, not waiting for any peer, for" in log0
    # the hung rank's own watchdog ends it, naming itself and the op it is stuck in
    assert "rank 1 (stage 1, conv2..fault1) made no progress for" in ranks[1].output
    assert "in F(" in ranks[1].output
    # every rank is gone within the timeout plus the watchdog's margin, counted from the last rank's start
    assert max(p.seconds for p in ranks) < min(p.seconds for p in ranks) + TIMEOUT_S + 6
