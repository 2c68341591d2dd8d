"""The ranks of multi-process pipeline tests: `python pipe_scenarios.py OUT N SCENARIO [SCENARIO...]`.

The process imports torch once, then for each scenario (e.g. `suite3`, `fault:die:gpipe:5`) forks N ranks
(`plinth_sparsepipe.pipe.forked`). A scenario writes what the test checks to OUT/<scenario> (torch.save files); a
failing rank's error is in OUT/<scenario>/error-<rank>.txt, how each rank ended in ranks.json.
"""

from __future__ import annotations

import os
import sys
import time
from collections import OrderedDict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from pipe_harness import expected_messages, step_micro_batches, tiny_blocks  # noqa: E402
from plinth_sparsepipe.pipe.comm import DENSE, GRAD, SPARSE, TAG_BACKWARD, TAG_FORWARD, Inbox, Outbox  # noqa: E402
from plinth_sparsepipe.pipe.faults import Liveness, connect_store  # noqa: E402
from plinth_sparsepipe.pipe.forked import run_forked  # noqa: E402
from plinth_sparsepipe.pipe.runtime import StageRuntime  # noqa: E402
from plinth_sparsepipe.pipe.schedules import Layout  # noqa: E402
from plinth_sparsepipe.sparse import nn as spnn  # noqa: E402

RANK, WORLD = -1, 0  # set in each forked rank
OUT = Path(".")  # the scenario's folder, set before forking


def save(name: str, obj) -> None:
    torch.save(obj, OUT / f"{name}-rank{RANK}.pt")


def stage_module(blocks, names) -> nn.Sequential:
    return nn.Sequential(OrderedDict((n, blocks[n]) for n in names))  # state-dict keys keep the block names


def loss_fn(out, y):
    return F.cross_entropy(out, y)


def metrics_fn(out, y):
    return {"correct": float((out.argmax(1) == y).sum()), "count": float(len(y))}


def source(layout: Layout, rank: int, steps: int, per_reader: int, first: int = 0, seed: int = 100):
    """Stage-0 replica `rank`'s micro-batches: every n-th of each step's list, n = replicas(0) * per_reader."""
    n = layout.replicas(0) * per_reader
    r = layout.replica_of(rank)
    for t in range(first, first + steps):
        mbs = step_micro_batches(t, n, seed=seed)
        for j, mb in enumerate(mbs):
            if j % layout.replicas(0) == r:
                yield mb


def pipeline(layout: Layout, splits: list[list[str]], schedule: str, per_reader: int, *, bn: bool = True,
             lr: float = 0.1, momentum: float = 0.9, timeout_s: float = 20.0, liveness=None, extra=None):
    blocks = tiny_blocks(bn=bn)
    if extra:
        blocks.update(extra)
    module = stage_module(blocks, splits[layout.stage_of(RANK)])
    opt = torch.optim.SGD(module.parameters(), lr=lr, momentum=momentum, weight_decay=1e-3 if momentum else 0.0)
    return StageRuntime(module, layout, RANK, optimizer=opt, loss_fn=loss_fn, metrics_fn=metrics_fn,
                        schedule=schedule, per_reader=per_reader, timeout_s=timeout_s, liveness=liveness,
                        labels=["..".join((s[0], s[-1])) for s in splits])


# -- sub-scenarios of the 3-rank suite ------------------------------------------------------------------------
def comm_check() -> None:
    msgs = expected_messages()
    big = torch.ones(2_000_000)
    if RANK == 0:
        out = Outbox(timeout_s=20)
        t0 = time.perf_counter()
        out.send(1, TAG_FORWARD, DENSE, 99, big)
        send_s = time.perf_counter() - t0  # the receiver sleeps 1 s before it takes it: isend must not wait
        for g, (kind, value, target) in enumerate(msgs):
            out.send(1, TAG_FORWARD, kind, g, value, target)
        grads = Inbox(1, TAG_BACKWARD, len(msgs) - 1, 20)  # every message but the object has a gradient
        got = [grads.get(g).value for g in range(len(msgs) - 1)]
        out.flush()
        save("comm", {"send_s": send_s, "grads": got, "bytes": out.bytes_sent})
    elif RANK == 1:
        time.sleep(1.0)
        box = Inbox(0, TAG_FORWARD, len(msgs) + 1, 20)
        time.sleep(1.5)  # the inbox thread receives meanwhile
        t0 = time.perf_counter()
        first = box.get(99)
        wait_s = time.perf_counter() - t0
        received = [box.get(g) for g in range(len(msgs))]
        out = Outbox(timeout_s=20)
        conv = spnn.Conv3d(1, 2, 3)
        checks = []
        for g, ((kind, value, target), msg) in enumerate(zip(msgs, received)):
            if kind == SPARSE:
                v = msg.value
                same = (torch.equal(v.coords, value.coords) and torch.equal(v.feats, value.feats)
                        and v.stride == value.stride and v.batch_size == value.batch_size
                        and torch.equal(v.batch_offsets(), value.batch_offsets()))
                if len(v) and v.num_channels == 1:  # kernel maps rebuilt on arrival: the conv matches the original
                    same = same and torch.allclose(conv(v).feats, conv(value).feats)
                out.send(0, TAG_BACKWARD, GRAD, g, v.feats * 2)
            elif kind == DENSE:
                same = torch.equal(msg.value, value)
                out.send(0, TAG_BACKWARD, GRAD, g, msg.value * 2)
            else:
                same = msg.value == value
            tgt_same = (target is None and msg.target is None) or (
                target is not None and msg.target is not None and torch.equal(target, msg.target))
            checks.append((g, msg.kind == kind, bool(same), bool(tgt_same)))
        out.flush()
        save("comm", {"checks": checks, "first_ok": bool(torch.equal(first.value, big)), "wait_s": wait_s,
                      "bytes": box.bytes_received})


def gpipe_exact(name: str, layout: Layout, splits, per_reader: int, steps: int = 3) -> None:
    if RANK >= layout.world_size:
        return
    losses = []
    rt = pipeline(layout, splits, "gpipe", per_reader)
    rt.run(steps, 0, source(layout, RANK, steps, per_reader) if rt.stage == 0 else None,
           lambda rep: losses.append(rep["loss"]))
    result = {"state": rt.module.state_dict(), "stage": rt.stage, "losses": losses, "metrics": rt.metrics()}
    if RANK == 0:  # one process, the same micro-batches in order, accumulated: written without the runtime
        model = nn.Sequential(tiny_blocks())
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        n = layout.replicas(0) * per_reader
        ref_losses = []
        for t in range(steps):
            opt.zero_grad()
            total = 0.0
            for x, y in step_micro_batches(t, n):
                loss = F.cross_entropy(model(x), y)
                (loss / n).backward()
                total += float(loss.detach())
            opt.step()
            ref_losses.append(total / n)
        result["reference"] = model.state_dict()
        result["reference_losses"] = ref_losses
    save(name, result)


def one_f_one_b(name: str, layout: Layout, splits, per_reader: int, steps: int = 4) -> None:
    if RANK >= layout.world_size:
        return
    reports = []
    rt = pipeline(layout, splits, "1f1b", per_reader, lr=0.05)
    rt.run(steps, 0, source(layout, RANK, steps, per_reader) if rt.stage == 0 else None, reports.append)
    save(name, {"stage": rt.stage, "metrics": rt.metrics(), "reports": reports, "state": rt.module.state_dict(),
                "links": sorted(rt.links), "inbox_groups": [box.group is rt.links.get((box.src, RANK, box.tag))
                                                             for box in [*rt.act_in.values(), *rt.grad_in.values()]]})


def stash_reference(steps: int = 6, lr: float = 0.05) -> None:
    """Two stages, 1F1B, plain SGD. Stage 0 (warm-up 1): F(k) and B(k) use version max(k - 1, 0); stage 1
    (warm-up 0) uses version k; each stage updates after every backward. Computed directly from those rules."""
    layout = Layout.from_replicas([1, 1])
    splits = [["conv1", "pool1", "conv2"], ["gpool", "fc"]]
    if RANK < 2:
        rt = pipeline(layout, splits, "1f1b", 1, bn=False, lr=lr, momentum=0.0)
        rt.run(steps, 0, source(layout, RANK, steps, 1) if rt.stage == 0 else None)
        save("stash", {"state": rt.module.state_dict(), "metrics": rt.metrics(), "stage": rt.stage,
                       "links": sorted(rt.links)})
    if RANK == 0:
        blocks = tiny_blocks(bn=False)
        f0, f1 = stage_module(blocks, splits[0]), stage_module(blocks, splits[1])
        save("stash-reference", {"stash": run_rules(f0, f1, steps, lr, lambda j: max(j - 1, 0)),
                                 "live": run_rules(f0, f1, steps, lr, lambda j: j)})


def run_rules(f0, f1, steps: int, lr: float, version_of) -> dict:
    """Stage 0's micro-batch j runs with weight version version_of(j), stage 1's with version j."""
    w0 = [{k: v.detach().clone() for k, v in f0.named_parameters()}]
    w1 = [{k: v.detach().clone() for k, v in f1.named_parameters()}]
    for j in range(steps):
        x, y = step_micro_batches(j, 1)[0]
        p0 = {k: v.clone().requires_grad_() for k, v in w0[version_of(j)].items()}
        p1 = {k: v.clone().requires_grad_() for k, v in w1[j].items()}
        h = torch.func.functional_call(f0, p0, (x,))
        loss = F.cross_entropy(torch.func.functional_call(f1, p1, (h,)), y)
        g0 = torch.autograd.grad(loss, list(p0.values()), retain_graph=True)
        g1 = torch.autograd.grad(loss, list(p1.values()))
        w0.append({k: w0[j][k] - lr * g for k, g in zip(p0, g0)})
        w1.append({k: w1[j][k] - lr * g for k, g in zip(p1, g1)})
    return {"stage0": w0[-1], "stage1": w1[-1]}


def suite3() -> None:
    t0 = time.perf_counter()

    def done(what):  # timings in the rank's log
        print(f"{time.perf_counter() - t0:7.2f}s {what}", flush=True)

    comm_check()
    done("comm")
    dist.barrier()
    three = [["conv1", "pool1"], ["conv2"], ["gpool", "fc"]]
    gpipe_exact("gpipe-1-1-1", Layout.from_replicas([1, 1, 1]), three, per_reader=3)
    done("gpipe")
    dist.barrier()
    two = [["conv1", "pool1", "conv2", "gpool"], ["fc"]]  # a dense [B, C] boundary
    gpipe_exact("gpipe-2-1", Layout.from_replicas([2, 1]), two, per_reader=2)
    done("gpipe")
    dist.barrier()
    one_f_one_b("1f1b-1-1-1", Layout.from_replicas([1, 1, 1]), three, per_reader=1, steps=6)
    done("1f1b")
    dist.barrier()
    one_f_one_b("1f1b-1-2", Layout.from_replicas([1, 2]), [["conv1", "pool1", "conv2"], ["gpool", "fc"]],
                per_reader=2, steps=4)
    done("1f1b")
    dist.barrier()
    stash_reference()
    done("stash")
    dist.barrier()
    resume_check("resume-1f1b", Layout.from_replicas([1, 2]), [["conv1", "pool1", "conv2"], ["gpool", "fc"]],
                 "1f1b", per_reader=2)
    done("resume")
    dist.barrier()
    resume_check("resume-gpipe", Layout.from_replicas([2, 1]), [["conv1", "pool1"], ["conv2", "gpool", "fc"]],
                 "gpipe", per_reader=1)
    done("resume")
    dist.barrier()


# -- faults -----------------------------------------------------------------------------------------------------
class Fault(nn.Module):
    """Passes its input through; on rank `rank` at call `at` it kills the process or hangs in it."""

    def __init__(self, rank: int, at: int, action: str):
        super().__init__()
        self.rank, self.at, self.action, self.calls = rank, at, action, 0

    def forward(self, x):
        self.calls += 1
        if RANK == self.rank and self.calls == self.at:
            if self.action == "die":
                os._exit(3)
            time.sleep(3600)
        return x


def fault(action: str, schedule: str, timeout_s: float) -> None:
    layout = Layout.from_replicas([1, 1, 1])
    splits = [["conv1", "pool1"], ["conv2", "fault1"], ["fault2", "gpool", "fc"]]
    victim = 2 if action == "die" else 1
    live = Liveness(RANK, WORLD, lambda r: f"rank {r} (stage {layout.stage_of(r)})", timeout_s, connect_store())
    rt = pipeline(layout, splits, schedule, 2, timeout_s=timeout_s, liveness=live,
                  extra={"fault1": Fault(victim, 3, action), "fault2": Fault(victim, 3, action)})
    live.describe = rt.describe
    (OUT / f"started-{RANK}.txt").write_text(str(time.time()))
    rt.run(50, 0, source(layout, RANK, 50, 2) if rt.stage == 0 else None)


def resume_check(name: str, layout: Layout, splits, schedule: str, per_reader: int) -> None:
    """Run a: 2 steps then 2 more. Run b: 2 steps, state_dict to a file; a fresh runtime c loads it and runs the
    2 more (what a killed and resumed rank does). c must end where a ends."""
    def fresh():
        return pipeline(layout, splits, schedule, per_reader, lr=0.05)

    def src(rt, first):
        return source(layout, RANK, 2, per_reader, first=first) if rt.stage == 0 else None

    a = fresh()
    a.run(2, 0, src(a, 0))
    a.run(2, 2, src(a, 2))
    b = fresh()
    b.run(2, 0, src(b, 0))
    path = OUT / f"{name}-checkpoint-rank{RANK}.pt"
    torch.save(b.state_dict(), path)
    c = fresh()
    c.load_state_dict(torch.load(path, weights_only=True))
    c.run(2, 2, src(c, 2))
    save(name, {"a": a.module.state_dict(), "c": c.module.state_dict(), "b": b.module.state_dict(),
                "updates": (a.updates, c.updates)})


def scenario_rank(scenario: str, folder: Path, rank: int) -> None:
    global RANK, OUT
    RANK, OUT = rank, folder
    torch.set_num_threads(1)
    name, *args = scenario.split(":")
    if name == "suite3":
        suite3()
    elif name == "fault":
        fault(args[0], args[1], float(args[2]))
    else:
        raise SystemExit(f"unknown scenario {name}")


def main() -> int:
    global WORLD
    out, WORLD, scenarios = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)  # the first optimizer imports torch._dynamo: once
    for scenario in scenarios:
        folder = out / scenario.replace(":", "-")
        run_forked(WORLD, lambda rank: scenario_rank(scenario, folder, rank), folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
