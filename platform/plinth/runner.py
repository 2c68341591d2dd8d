"""Running a validated plan: one stage after another, recorded in the manifest, resumable at any point.

A stage is skipped when its manifest record is complete with the same config hash and the same input hashes,
and its outputs still exist. Otherwise it runs again in a fresh `out/`; the outputs of its last complete attempt
wait beside it in `out.previous/` and come back if the new attempt fails or is interrupted (so a re-run whose
inputs went bad never costs the good model), and are deleted only once the new attempt is complete. Its work
folder (trainer checkpoints, teacher caches) is kept when the hashes match the interrupted attempt, so a killed
stage resumes mid-way, and wiped when they do not or when the stage is forced (`--force` trains from scratch),
so stale checkpoints never leak into a changed stage.

Ctrl-C and SIGTERM are recorded as `interrupted` (the stage and the run), never `failed` or left `running`.
A run directory belongs to one pipeline file: a second file with the same `[run] name` is refused.

A stage whose strategy asks for more than one process is launched through torchrun (`python -m plinth.worker`);
the runner itself stays a single process that owns the manifest and the lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from .artifacts import Artifact, content_hash
from .context import StageContext
from .errors import PlinthError, RunInterrupted, StageFailedError
from .failures import failure_message
from .pipeline import Plan, PlannedStage, resolve_inputs
from .plugins import PluginManager
from .rundir import MANIFEST, RunLock, load_manifest, read_json, write_json_atomic, write_text_atomic


class Run:
    """One execution of a plan in its run directory. Event hooks receive this object."""

    def __init__(self, plan: Plan, plugins: PluginManager, force: list[str] | None = None, echo: bool = True):
        self.plan = plan
        self.plugins = plugins
        self.run_dir = plan.run_dir
        self.force = set(force or [])
        self.echo = echo
        self.manifest: dict[str, Any] = {}
        self.outputs: dict[str, dict[str, Artifact]] = {}
        self.statuses: dict[str, str] = {}

    # -- public -----------------------------------------------------------------------------------------
    def execute(self) -> str:
        hook = self.plugins.hook
        with RunLock(self.run_dir), _sigterm_interrupts():
            self._prepare()
            hook.plinth_run_started(run=self)
            status = "complete"
            try:
                for i, stage in enumerate(self.plan.stages, 1):
                    self._stage(stage, i)
            except KeyboardInterrupt:
                status = "interrupted"
                raise
            except BaseException:
                status = "failed"
                raise
            finally:
                self.manifest["status"] = status
                self.manifest["finished"] = time.time()
                self._save()
                hook.plinth_run_finished(run=self, status=status)
        return status

    # -- internals --------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        owner = load_manifest(self.run_dir).get("pipeline")
        if owner and Path(owner) != self.plan.path.resolve():
            raise PlinthError(
                f"run directory {self.run_dir} belongs to {owner}, not {self.plan.path.resolve()} (the same "
                "[run] name?); give this pipeline another [run] name or --run-dir, or delete the folder to start over"
            )
        write_text_atomic(self.run_dir / "pipeline.toml", self.plan.path.read_text(encoding="utf-8"))
        write_json_atomic(
            self.run_dir / "resolved.json",
            {"pipeline": str(self.plan.path), "stages": [s.to_json() for s in self.plan.stages]},
        )
        self.manifest = load_manifest(self.run_dir)
        self.manifest.update(
            {"pipeline": str(self.plan.path.resolve()), "status": "running", "started": time.time(), "pid": os.getpid()}
        )
        self._save()

    def _save(self) -> None:
        write_json_atomic(self.run_dir / MANIFEST, self.manifest)

    def _log(self, text: str, detail: str = "") -> None:
        """`text` to stderr (unless quiet) and run.log; `detail` (a traceback) to run.log only."""
        line = f"[plinth] {text}"
        if self.echo:
            print(line, file=sys.stderr, flush=True)
        with open(self.run_dir / "run.log", "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n{detail}")

    def _stage(self, stage: PlannedStage, index: int) -> None:
        total = len(self.plan.stages)
        hook = self.plugins.hook
        inputs = resolve_inputs(stage, self.outputs, self.plan.path.parent)
        config_hash = stage.config_hash()
        input_hash = self._input_hash(stage, inputs)
        rec = self.manifest["stages"].get(stage.id, {})
        same = rec.get("config_hash") == config_hash and rec.get("input_hash") == input_hash
        stage_dir = self.run_dir / "stages" / stage.id
        out_dir, work_dir = stage_dir / "out", stage_dir / "work"
        forced = stage.id in self.force or stage.name in self.force
        _restore_previous(out_dir, rec)  # after a kill -9 mid-attempt
        kept = rec.get("kept")  # the last complete attempt, whose outputs are in out/ after a failed one
        if kept and rec.get("status") != "complete" and not forced and kept.get("config_hash") == config_hash \
                and kept.get("input_hash") == input_hash:
            rec, same = {**kept, "attempts": rec.get("attempts", 1)}, True
        if same and rec.get("status") == "complete" and not forced:
            outputs = {k: Artifact.from_json(v, self.run_dir) for k, v in rec.get("outputs", {}).items()}
            if all(a.exists() for a in outputs.values()):
                if self.manifest["stages"].get(stage.id) is not rec:  # the kept attempt is current again
                    self.manifest["stages"][stage.id] = rec
                    self._save()
                self.outputs[stage.id] = outputs
                self.statuses[stage.id] = "skipped"
                self._log(f"stage {index}/{total} {stage.id} ({stage.component_name}): unchanged, skipped")
                hook.plinth_stage_finished(run=self, stage=stage.id, status="skipped", outputs=outputs)
                return

        if (forced or not same) and work_dir.exists():
            shutil.rmtree(work_dir)  # a changed or forced stage must not resume from earlier checkpoints
        previous = _set_aside(out_dir, rec)
        out_dir.mkdir(parents=True)
        work_dir.mkdir(parents=True, exist_ok=True)
        attempt = (rec.get("attempts", 0) + 1) if same else 1
        resuming = same and not forced and rec.get("status") != "complete" and attempt > 1
        rec = {
            "status": "running",
            "slot": stage.slot,
            "component": stage.component_name,
            "distribution": stage.distribution,
            "version": stage.version,
            "round": stage.round,
            "strategy": stage.strategy_name,
            "config_hash": config_hash,
            "input_hash": input_hash,
            "inputs": {k: [a.to_json(self.run_dir) for a in v] if isinstance(v, list) else v.to_json(self.run_dir)
                       for k, v in inputs.items()},
            "attempts": attempt,
            "started": time.time(),
            "pid": os.getpid(),
        }
        if previous is not None:
            rec["previous"] = previous
        self.manifest["stages"][stage.id] = rec
        self._save()
        resumed = " (resuming)" if resuming else " (forced, from scratch)" if forced else ""
        self._log(f"stage {index}/{total} {stage.id} ({stage.component_name}): running{resumed}")
        hook.plinth_stage_started(run=self, stage=stage.id)
        t0 = time.time()
        try:
            spec = stage.strategy.launch_spec()
            if spec.world_size > 1:
                outputs = self._launch(stage, inputs, out_dir, work_dir, spec)
            else:
                outputs = run_in_process(stage, inputs, self.run_dir, out_dir, work_dir, self.plugins, attempt)
            _check_outputs(stage, outputs)
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            kept = _restore_previous(out_dir, rec)
            rec.update(status=status, seconds=round(time.time() - t0, 3), error=f"{type(exc).__name__}: {exc}")
            self._save()
            self.statuses[stage.id] = status
            hook.plinth_stage_finished(run=self, stage=stage.id, status=status, outputs={})
            note = f"; the outputs of its last complete attempt are kept in {out_dir}" if kept else ""
            self._log(f"stage {stage.id} {status} after {time.time() - t0:.1f}s: {type(exc).__name__}: {exc}{note}",
                      detail="".join(traceback.format_exception(exc)))
            if isinstance(exc, (PlinthError, KeyboardInterrupt)):
                raise
            raise StageFailedError(
                failure_message(stage.id, stage.component_name, exc, self.run_dir / "run.log")
            ) from exc

        recorded = {}
        for name, art in outputs.items():
            meta = dict(art.meta)
            meta["hash"] = content_hash(art.path)
            recorded[name] = Artifact(art.kind, art.path, meta)
        rec.update(
            status="complete",
            seconds=round(time.time() - t0, 3),
            finished=time.time(),
            outputs={k: a.to_json(self.run_dir) for k, a in recorded.items()},
        )
        rec.pop("error", None)
        rec.pop("previous", None)
        rec.pop("kept", None)
        self._save()
        shutil.rmtree(out_dir.parent / PREVIOUS, ignore_errors=True)  # only now is the older model no longer needed
        self.outputs[stage.id] = recorded
        self.statuses[stage.id] = "complete"
        ctx = _context(stage, inputs, self.run_dir, out_dir, work_dir, self.plugins)
        for name, art in recorded.items():
            hook.plinth_artifact_written(ctx=ctx, name=name, artifact=art)
        hook.plinth_stage_finished(run=self, stage=stage.id, status="complete", outputs=recorded)
        self._log(f"stage {stage.id}: complete in {time.time() - t0:.1f}s -> {', '.join(recorded) or 'no outputs'}")

    def _input_hash(self, stage: PlannedStage, inputs: dict[str, Any]) -> str:
        h = hashlib.sha256()
        for name in sorted(inputs):
            arts = inputs[name] if isinstance(inputs[name], list) else [inputs[name]]
            for art in arts:
                digest = art.meta.get("hash") or content_hash(art.path)
                h.update(f"{name}:{art.kind}:{digest}\n".encode())
        return h.hexdigest()

    def _launch(self, stage: PlannedStage, inputs: dict[str, Any], out_dir: Path, work_dir: Path, spec: Any) -> dict:
        stage_dir = out_dir.parent
        port = spec.master_port or _free_port()
        launch = {
            "stage": stage.to_json(),
            "inputs": {k: [a.to_json() for a in v] if isinstance(v, list) else v.to_json() for k, v in inputs.items()},
            "run_dir": str(self.run_dir),
            "out_dir": str(out_dir),
            "work_dir": str(work_dir),
            "spec": {**spec.model_dump(), "master_port": port},
            "written": time.time(),
            "attempt": self.manifest["stages"][stage.id]["attempts"],
        }
        result_path = stage_dir / "result.json"
        result_path.unlink(missing_ok=True)
        write_json_atomic(stage_dir / "launch.json", launch)
        if spec.nnodes > 1:
            self._log(f"stage {stage.id}: waiting for {spec.nnodes - 1} more node(s): on each, run "
                      f"`plinth join {self.run_dir} {stage.id} --node-rank K`")
        self._log(f"stage {stage.id}: launching {spec.world_size} processes ({spec.nproc_per_node} per node)")
        code = launch_workers(stage_dir / "launch.json", node_rank=spec.node_rank)
        if code != 0:
            tail = (stage_dir / "workers.log").read_text(encoding="utf-8", errors="replace")[-3000:]
            raise StageFailedError(
                f"stage '{stage.id}': {spec.world_size} worker processes exited with code {code}; "
                f"log {stage_dir / 'workers.log'} ends:\n{tail}"
            )
        result = read_json(result_path)
        if result is None:
            raise StageFailedError(f"stage '{stage.id}': workers exited without writing {result_path}")
        return {k: Artifact.from_json(v) for k, v in result["outputs"].items()}


def launch_workers(launch_path: Path, node_rank: int) -> int:
    """Start this node's torchrun for a launch file; returns its exit code. Used by `plinth run` on the first
    node and by `plinth join` on the others (the run directory must be on a shared file system)."""
    spec = read_json(launch_path)["spec"]
    cmd = [
        sys.executable, "-m", "torch.distributed.run",
        f"--nproc_per_node={spec['nproc_per_node']}", f"--nnodes={spec['nnodes']}", f"--node_rank={node_rank}",
        f"--master_addr={spec['master_addr']}", f"--master_port={spec['master_port']}",
        "-m", "plinth.worker", str(launch_path),
    ]
    log_name = "workers.log" if node_rank == spec["node_rank"] else f"workers-node{node_rank}.log"
    with open(launch_path.parent / log_name, "a", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_worker_env())
        try:
            return proc.wait()
        except BaseException:  # Ctrl-C or SIGTERM: let torchrun stop its workers (SIGKILL would orphan them)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise


def join(run_dir: Path, stage_id: str, node_rank: int, timeout: float = 3600.0) -> int:
    """Wait for the first node's `plinth run` to reach `stage_id`, then start this node's workers."""
    launch_path = Path(run_dir) / "stages" / stage_id / "launch.json"
    started = time.time()
    while True:
        data = read_json(launch_path)
        stale = _stale_launch(Path(run_dir), stage_id, data)
        if data is not None and stale is None:
            break
        if time.time() - started > timeout:
            why = f"; the launch there is stale: {stale}" if data is not None else ""
            raise PlinthError(
                f"no launch of the current attempt of stage '{stage_id}' appeared in {launch_path} within "
                f"{timeout:.0f}s{why}"
            )
        time.sleep(0.5)
    with _sigterm_interrupts():
        return launch_workers(launch_path, node_rank)


def _stale_launch(run_dir: Path, stage_id: str, launch: dict | None) -> str | None:
    """Why `launch` is not the stage attempt now running (None when it is): it must carry the attempt number
    the manifest shows running and be written after that attempt started, whenever that was."""
    if launch is None:
        return "none written yet"
    rec = load_manifest(run_dir)["stages"].get(stage_id, {})
    if rec.get("status") != "running":
        return f"stage '{stage_id}' is not running (manifest: {rec.get('status', 'not started')})"
    if launch.get("attempt") != rec.get("attempts") or launch.get("written", 0) < rec.get("started", 0):
        return (f"it is from an earlier attempt ({launch.get('attempt')}) of stage '{stage_id}', "
                f"which is now at attempt {rec.get('attempts')}")
    return None


PREVIOUS = "out.previous"


def _set_aside(out_dir: Path, rec: dict[str, Any]) -> dict[str, Any] | None:
    """Before an attempt: move the outputs of the last complete attempt to out.previous/ and return the record
    that describes them (None when there are none: a failed attempt's leftovers are simply cleared)."""
    if rec.get("status") == "complete":
        previous = {k: v for k, v in rec.items() if k not in ("previous", "kept")}
    else:
        previous = rec.get("kept")
    if out_dir.exists():
        if previous is None:
            shutil.rmtree(out_dir)
        else:
            shutil.rmtree(out_dir.parent / PREVIOUS, ignore_errors=True)
            os.replace(out_dir, out_dir.parent / PREVIOUS)
    return previous if (out_dir.parent / PREVIOUS).exists() else None


def _restore_previous(out_dir: Path, rec: dict[str, Any]) -> bool:
    """Put out.previous/ back as out/ when the attempt that replaced it did not complete (it failed, was
    interrupted, or the process was killed); the record then keeps the complete one as `kept`."""
    previous = out_dir.parent / PREVIOUS
    if "previous" not in rec or not previous.exists():
        return False
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(previous, out_dir)
    rec["kept"] = rec.pop("previous")
    return True


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM (a scheduler's kill, `kill PID`) stops the run like Ctrl-C, so it is recorded, not left `running`."""
    def handler(signum, _frame):
        raise RunInterrupted(signum)

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _context(stage, inputs, run_dir, out_dir, work_dir, plugins, attempt: int = 1) -> StageContext:
    return StageContext(
        run_dir=run_dir, stage=stage.id, output_dir=out_dir, work_dir=work_dir, inputs=inputs,
        strategy=stage.strategy, round=stage.round, attempt=attempt, hook=plugins.hook, params=stage.params,
    )


def run_in_process(stage, inputs, run_dir, out_dir, work_dir, plugins, attempt: int = 1) -> dict[str, Artifact]:
    ctx = _context(stage, inputs, run_dir, out_dir, work_dir, plugins, attempt)
    stage.strategy.setup(ctx)
    return stage.component.run(ctx) or {}


def _check_outputs(stage: PlannedStage, outputs: Any) -> None:
    if not isinstance(outputs, dict) or not all(isinstance(v, Artifact) for v in outputs.values()):
        raise StageFailedError(
            f"stage '{stage.id}': component '{stage.component_name}' returned {type(outputs).__name__}; "
            "it must return a dict of name -> plinth.Artifact"
        )
    for name, art in outputs.items():
        if not art.path.exists():
            raise StageFailedError(f"stage '{stage.id}': output '{name}' points to {art.path}, which does not exist")


def summary_rows(run: Run) -> list[tuple[str, str, str, str, str]]:
    """(stage, component, status this run, seconds, outputs) per stage, for the table `plinth run` prints."""
    rows = []
    for st in run.plan.stages:
        rec = run.manifest["stages"].get(st.id, {})
        status = run.statuses.get(st.id, rec.get("status", "not run"))
        seconds = f"{rec['seconds']:.1f}" if "seconds" in rec and status != "skipped" else "-"
        rows.append((st.id, st.component_name, status, seconds, ", ".join(rec.get("outputs", {})) or "-"))
    return rows
