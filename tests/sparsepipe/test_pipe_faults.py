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
    # whichever comes first: its own watchdog, rank 0's timeout, or the launcher stopping it after rank 2's timeout
    assert "within timeout_s = 5 s" in err[0] or "nothing came within" in err[0] or "(timeout_s = 5 s)" in err[0]
    log0 = (folder_of(out, HANG) / "error-0.txt").read_text()
    # its heartbeat says it is stuck in its own work, not waiting for anyone, and where
    assert "rank 1 (stage 1, conv2..fault1): stuck, not waiting for any peer, for" in log0
    # the hung rank's own watchdog ends it, naming itself and the op it is stuck in
    assert "rank 1 (stage 1, conv2..fault1) made no progress for" in ranks[1].output
    assert "in F(" in ranks[1].output
    # every rank is gone within the timeout plus the watchdog's margin, counted from the last rank's start
    assert max(p.seconds for p in ranks) < min(p.seconds for p in ranks) + TIMEOUT_S + 6


HUNG_CHILD = """
import sys, time
from datetime import timedelta
import torch.distributed as dist
from plinth_sparsepipe.pipe.faults import Liveness
store = dist.PrefixStore("plinth-sparsepipe/heartbeat/", dist.TCPStore("127.0.0.1", int(sys.argv[1]), is_master=False,
                         timeout=timedelta(seconds=10), wait_for_workers=False))
live = Liveness(1, 2, lambda r: f"rank {r}", timeout_s=0.5, store=store, interval_s=0.2)
live.start("F(3)")
time.sleep(60)  # stuck in its own work: the watchdog must end it
"""


def test_a_rank_ended_by_its_watchdog_is_reported_as_hung_not_just_gone():
    """The order CI once hit: the hung rank's watchdog ends it before its neighbour's receive times out, so the
    neighbour sees a closed connection; it must still say the peer hung, and where."""
    import subprocess
    import sys
    from datetime import timedelta

    import torch.distributed as dist

    from plinth_sparsepipe.pipe.faults import Liveness

    master = dist.TCPStore("127.0.0.1", 0, is_master=True, timeout=timedelta(seconds=10), wait_for_workers=False)
    child = subprocess.run([sys.executable, "-c", HUNG_CHILD, str(master.port)], capture_output=True, text=True,
                           timeout=60)
    assert child.returncode == 1, child.stderr
    assert "rank 1 made no progress for" in child.stderr and "in F(3): it hangs" in child.stderr
    store = dist.PrefixStore("plinth-sparsepipe/heartbeat/", master)
    watcher = Liveness(0, 2, lambda r: f"rank {r}", timeout_s=0.5, store=store, interval_s=0.2)
    try:
        hung = watcher.hung(1)
        assert hung is not None and hung["what"] == "F(3)" and hung["stuck_s"] > 0.5
        assert watcher.hung(0) is None
        # its last heartbeat, read on its own (a rank the launcher stops while hung leaves only this)
        beat = watcher.stuck(1)
        assert beat is not None and beat["what"] == "F(3)" and not beat["waiting"]
        assert watcher.stuck(0) is None
        assert "rank 1: stuck, not waiting for any peer, for" in watcher.diagnose()
        assert "its watchdog ended it" in watcher.diagnose()
    finally:
        watcher.close()


SEND_TO_DEAD = """
import os, sys, time
from datetime import timedelta
import torch, torch.distributed as dist
import torch.multiprocessing as mp

def rank(r, port):
    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=20))
    dist.init_process_group("gloo", store=store, rank=r, world_size=2, timeout=timedelta(seconds=20))
    t = torch.ones(1000)
    if r == 1:
        dist.recv(t, 0)
        os._exit(3)  # dies after one message
    dist.send(t, 1)
    time.sleep(1.0)  # its connection is closed by now
    from plinth_sparsepipe.pipe.comm import DENSE, Outbox, PeerFailure
    try:
        Outbox(5.0).send(1, 7, DENSE, 0, t, what="activations")
    except PeerFailure as exc:
        print("PeerFailure", exc.peer, exc.reason, exc.detail, flush=True)
        os._exit(0)
    except BaseException as exc:
        print("raw", type(exc).__name__, exc, flush=True)
        os._exit(1)
    print("sent", flush=True)  # posting may succeed; then the wait must fail
    os._exit(2)

if __name__ == "__main__":
    master = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    ps = [mp.get_context("spawn").Process(target=rank, args=(r, master.port)) for r in range(2)]
    [p.start() for p in ps]
    [p.join(60) for p in ps]
    sys.exit(ps[0].exitcode)
"""


def test_a_send_to_a_peer_that_died_is_a_peer_failure(tmp_path):
    """gloo refuses to post a send on a pair the peer closed, raising from isend itself, not from the wait: CI
    once saw that raw error reach the user instead of "rank 2 ... is gone"."""
    import subprocess
    import sys

    script = tmp_path / "send_to_dead.py"
    script.write_text(SEND_TO_DEAD)
    child = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stdout + child.stderr
    assert "PeerFailure 1 closed Connection closed by peer" in child.stdout, child.stdout
