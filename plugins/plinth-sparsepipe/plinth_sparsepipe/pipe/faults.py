"""Faults: a rank that dies or hangs makes every rank exit within the timeout, with an error naming it.

Three mechanisms, each covering what the others cannot:
- every receive and collective waits at most `timeout_s`; a peer whose process is gone is seen at once (gloo
  reports the closed connection), a peer that hangs after `timeout_s`. The waiting rank raises `PipelineFault`
  naming itself, the peer and what it waited for, and exits; its own peers then see it gone, and so on.
- heartbeats: a thread publishes this rank's progress (the op it is in, since when) to the rendezvous store
  every second; a rank that detects a fault reads them to say which ranks stopped and where.
- a watchdog: a rank stuck in one op for longer than the timeout (a hung kernel, a deadlock in user code) prints
  an error naming itself and exits, and `faulthandler` kills the process if even that cannot run.
When a fault is raised the process is also given a few seconds to exit on its own before faulthandler ends it,
since interpreter shutdown can block on a transport whose peer is gone. Under torchrun the agent then stops every
remaining worker and `plinth run` reports the stage failed with the workers' log.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import threading
import time
from datetime import timedelta
from typing import Callable

from plinth.errors import PlinthError

EXIT_GRACE_S = 10.0


class PipelineFault(PlinthError):
    """A pipeline rank could not go on: a peer died, hung, or sent something unexpected."""


def arm_exit(grace_s: float = EXIT_GRACE_S) -> None:
    """After a fault: if the process is still alive in `grace_s` (stuck in shutdown), dump the stacks and exit 1."""
    faulthandler.dump_traceback_later(grace_s, repeat=False, file=sys.stderr, exit=True)


def connect_store(timeout_s: float = 10.0):
    """A client of the rendezvous store torchrun (or init_process_group's env://) set up, or None."""
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not addr or not port:
        return None
    try:
        import torch.distributed as dist

        store = dist.TCPStore(addr, int(port), is_master=False, timeout=timedelta(seconds=timeout_s),
                              wait_for_workers=False)
        return dist.PrefixStore("plinth-sparsepipe/heartbeat/", store)
    except Exception:  # noqa: BLE001 - heartbeats are a diagnosis aid; the timeouts work without them
        return None


class Liveness:
    """This rank's heartbeat, its watchdog, and the diagnosis of the others' heartbeats."""

    def __init__(self, rank: int, world_size: int, describe: Callable[[int], str], timeout_s: float,
                 store=None, interval_s: float = 1.0):
        self.rank, self.world_size, self.describe = rank, world_size, describe
        self.timeout_s, self.interval_s, self.store = timeout_s, interval_s, store
        self.what = "starting"
        self.since = time.monotonic()
        self.active = False
        self.waiting = False  # blocked on a peer (set by the runtime around receives and collectives)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="pipeline-heartbeat", daemon=True)
        self._thread.start()

    # -- this rank ------------------------------------------------------------------------------------------
    def mark(self, what: str) -> None:
        self.what, self.since = what, time.monotonic()

    def start(self, what: str = "pipeline") -> None:
        self.mark(what)
        self.active = True

    def stop(self) -> None:
        with self._lock:
            self.active = False
            self.mark("between epochs")
            faulthandler.cancel_dump_traceback_later()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            stuck = time.monotonic() - self.since
            if self.store is not None:
                try:
                    self.store.set(str(self.rank), json.dumps({"beat": time.time(), "stuck_s": stuck, "what": self.what,
                                                               "active": self.active, "waiting": self.waiting}))
                except Exception:  # noqa: BLE001 - the store's host may be gone; the timeouts still work
                    self.store = None
            if self.active and stuck > self.timeout_s + 2 * self.interval_s:
                self._abort(stuck)
            with self._lock:
                if self.active:  # the backstop if this thread cannot run at all (the GIL held forever)
                    faulthandler.dump_traceback_later(self.timeout_s + 30, file=sys.stderr, exit=True)

    def _abort(self, stuck: float) -> None:
        if self.store is not None:  # so a neighbour that sees this process go can say it hung, not just died
            try:
                self.store.set(f"hung-{self.rank}", json.dumps({"stuck_s": stuck, "what": self.what}))
            except Exception:  # noqa: BLE001
                pass
        print(f"plinth-sparsepipe: {self.describe(self.rank)} made no progress for {stuck:.0f} s "
              f"(timeout_s = {self.timeout_s:g}) in {self.what}: it hangs; exiting so that every rank stops",
              file=sys.stderr, flush=True)
        faulthandler.dump_traceback(file=sys.stderr)
        os._exit(1)

    def report(self, error: str) -> None:
        """Tell the other ranks why this one stops (they quote it when they see it go)."""
        if self.store is not None:
            try:
                self.store.set(f"fault-{self.rank}", error)
            except Exception:  # noqa: BLE001
                pass

    # -- the others -----------------------------------------------------------------------------------------
    def stuck(self, rank: int) -> dict | None:
        """`rank`'s last heartbeat if it said the rank was stuck in its own work (active, not waiting for a peer,
        for over half the timeout) — what a hung rank looks like before its watchdog or the launcher stops it."""
        if self.store is None:
            return None
        try:
            if not self.store.check([str(rank)]):
                return None
            beat = json.loads(self.store.get(str(rank)))
        except Exception:  # noqa: BLE001
            return None
        if beat["active"] and not beat.get("waiting") and beat["stuck_s"] > self.timeout_s / 2:
            return beat
        return None

    def hung(self, rank: int) -> dict | None:
        """What `rank`'s watchdog recorded before it ended that rank for hanging ({stuck_s, what}), or None."""
        if self.store is None:
            return None
        try:
            if self.store.check([f"hung-{rank}"]):
                return json.loads(self.store.get(f"hung-{rank}"))
        except Exception:  # noqa: BLE001
            return None
        return None

    def diagnose(self) -> str:
        """What the other ranks reported: their faults, and which look dead (no heartbeat) or hung (stuck in one
        op while not waiting for a peer); '' if nothing is known."""
        if self.store is None:
            return ""
        lines, now = [], time.time()
        for r in range(self.world_size):
            if r == self.rank:
                continue
            try:
                hung = self.hung(r)
                if hung is not None:
                    lines.append(f"{self.describe(r)}: stuck, not waiting for any peer, for {hung['stuck_s']:.0f} s "
                                 f"in {hung['what']}; its watchdog ended it")
                    continue
                if self.store.check([f"fault-{r}"]):
                    lines.append(f"{self.describe(r)} failed: {self.store.get(f'fault-{r}').decode()}")
                    continue
                if not self.store.check([str(r)]):
                    continue
                beat = json.loads(self.store.get(str(r)))
            except Exception:  # noqa: BLE001
                return "(the rendezvous store is unreachable)"
            age = now - beat["beat"]
            if age > 3 * self.interval_s + 1:
                lines.append(f"{self.describe(r)}: no heartbeat for {age:.0f} s (its process died or is frozen)")
            elif beat["active"] and beat["stuck_s"] > self.timeout_s / 2:
                doing = "waiting for a peer" if beat.get("waiting") else "stuck, not waiting for any peer,"
                lines.append(f"{self.describe(r)}: {doing} for {beat['stuck_s']:.0f} s in {beat['what']}")
        return "\n".join(lines)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * self.interval_s + 1)
        with self._lock:
            self.active = False
            faulthandler.cancel_dump_traceback_later()
