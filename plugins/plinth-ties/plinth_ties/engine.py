"""The streaming merge engine shared by every method.

A merge runs in three steps, and nothing is written before the first two succeed:
1. plan: open every input's headers (no weights), check architectures, tensor names, shapes, vocab sizes, and
   decide per tensor whether it is merged or copied from the reference model, and its output dtype and shard;
2. (global trim only) a sample of every tensor, then one streaming pass (two if the sample misled it), find
   each model's exact top-k magnitude;
3. stream: tensor by tensor, read the inputs, merge, and append to the output shard in a hidden temporary folder;
   copy config/tokenizer files, write `merge.json`, then rename the folder into place.
At any moment only one tensor name is in flight: its N task vectors plus about two float32 buffers of its size.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from plinth.rundir import replace_folder

from . import methods
from .checkpoint import DTYPES, INDEX_NAME, PICKLE_SUFFIXES, Checkpoint, TensorInfo
from .errors import MergeInputError
from .threshold import MagnitudeSelector
from .writer import OutTensor, ShardedWriter, parse_size


@dataclass(frozen=True)
class Method:
    """A merge method as a combination of steps (mergekit's "generalized task arithmetic")."""

    sparsify: str | None  # "magnitude" (TIES trim), "random" (DARE) or None
    sign_consensus: bool
    normalize: bool  # default for `normalize`
    uses_base: bool  # merges task vectors against a base (False: averages the weights themselves)
    doc: str


METHODS: dict[str, Method] = {
    "ties": Method("magnitude", True, True, True, "trim by magnitude, elect sign, disjoint mean (TIES)"),
    "dare_ties": Method("random", True, True, True, "random drop + rescale, elect sign, disjoint mean (DARE-TIES)"),
    "dare_linear": Method("random", False, False, True, "random drop + rescale, weighted sum of task vectors"),
    "task_arithmetic": Method(None, False, False, True, "base + λ·Σ w_i τ_i"),
    "linear": Method(None, False, True, False, "weighted average of the models' weights (the paper's fusion)"),
}
OUT_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}
#: names an untied lm_head may be read from when a model ties it to its input embeddings
EMBED_SUFFIXES = ("embed_tokens.weight", "wte.weight", "embed_in.weight", "word_embeddings.weight")
HEAD_NAMES = ("lm_head.weight", "embed_out.weight")
NON_WEIGHT_FILES = (INDEX_NAME, "merge.json", "pytorch_model.bin.index.json")


@dataclass
class ModelRef:
    """One model to merge: a Hugging Face folder, a label for reports/errors, and its per-model parameters."""

    path: str | Path
    label: str | None = None
    weight: float = 1.0
    density: float = 1.0
    #: a content hash already known (e.g. the runner's `meta["hash"]`); recorded instead of hashing again
    content_hash: str | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.label is None:
            self.label = self.path.name


@dataclass
class TensorPlan:
    name: str
    action: str  # "merge" or "copy"
    out: OutTensor
    sources: list[str] = field(default_factory=list)  # per model: the tensor name to read (tied aliases)
    rows: int | None = None  # merge only the first `rows` rows (common vocabulary)


@dataclass
class MergeResult:
    path: Path
    method: str
    record: dict[str, Any]

    @property
    def thresholds(self) -> dict[str, float]:
        return self.record.get("thresholds", {})


ProgressFn = Callable[[int, int, str], None]


# -- validation ---------------------------------------------------------------------------------------------
def check_params(method: str, models: Sequence[ModelRef], base: Any, lambda_: float, trim: str, dtype: str,
                 vocab: str) -> Method:
    """Check everything that needs no file: raised first, before headers are even opened."""
    if method not in METHODS:
        raise MergeInputError(f"unknown merge method '{method}'; known: {sorted(METHODS)}")
    m = METHODS[method]
    if not models:
        raise MergeInputError(f"merge '{method}': the model list is empty; give at least one model to merge")
    if m.uses_base and base is None:
        raise MergeInputError(f"merge '{method}': needs a base model (task vectors are differences from it)")
    labels = [r.label for r in models]
    for r in models:
        if not math.isfinite(r.weight):
            raise MergeInputError(f"merge '{method}': model '{r.label}': weight {r.weight} is not a finite number")
        if not (0.0 < r.density <= 1.0) or math.isnan(r.density):
            raise MergeInputError(f"merge '{method}': model '{r.label}': density {r.density} is outside (0, 1]")
    if len(set(labels)) != len(labels):
        raise MergeInputError(f"merge '{method}': model labels must be unique, got {labels}")
    if not math.isfinite(lambda_):
        raise MergeInputError(f"merge '{method}': lambda {lambda_} is not a finite number")
    if trim not in ("per_tensor", "global"):
        raise MergeInputError(f"merge '{method}': trim must be 'per_tensor' or 'global', got '{trim}'")
    if dtype != "base" and dtype not in OUT_DTYPES:
        raise MergeInputError(f"merge '{method}': dtype must be 'base' or one of {sorted(OUT_DTYPES)}, got '{dtype}'")
    if vocab not in ("error", "common"):
        raise MergeInputError(f"merge '{method}': vocab_mismatch must be 'error' or 'common', got '{vocab}'")
    return m


def _compile(patterns: Sequence[str], what: str) -> list[re.Pattern[str]]:
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p))
        except re.error as e:
            raise MergeInputError(f"merge: `{what}` pattern '{p}' is not a valid regular expression: {e}") from e
    return out


def _alias(ck: Checkpoint, name: str) -> str | None:
    """The tensor to read for `name` from a model that ties its head to its embeddings and stores no head."""
    if name in HEAD_NAMES and ck.tied_embeddings:
        for n in ck.tensors:
            if n.endswith(EMBED_SUFFIXES):
                return n
    return None


def plan_merge(ref: Checkpoint, cks: Sequence[Checkpoint], method: Method, include: Sequence[str],
               copy: Sequence[str], dtype: str, vocab: str) -> list[TensorPlan]:
    """Check the inputs against the reference model and decide what happens to each output tensor."""
    for ck in cks:
        for key in ("model_type", "architectures"):
            a, b = ref.config.get(key), ck.config.get(key)
            if a != b:
                raise MergeInputError(
                    f"model '{ck.label}': different architecture from '{ref.label}' ({key}: {b!r} vs {a!r}); "
                    "only models of one architecture can be merged"
                )
    inc, cop = _compile(include, "include"), _compile(copy, "copy")
    plans: list[TensorPlan] = []
    used: list[set[str]] = [set() for _ in cks]
    order = sorted(ref.tensors.items(), key=lambda kv: (str(kv[1].file), kv[1].start))
    for name, info in order:
        out_code = info.dtype if (dtype == "base" or not info.is_float) else OUT_DTYPES[dtype]
        out = OutTensor(name, out_code, info.shape)
        merge_it = info.is_float and any(p.search(name) for p in inc) and not any(p.search(name) for p in cop)
        if not merge_it:
            plans.append(TensorPlan(name, "copy", out))
            continue
        sources, rows = [], None
        for i, ck in enumerate(cks):
            src = name if name in ck.tensors else _alias(ck, name)
            if src is None:
                raise MergeInputError(
                    f"model '{ck.label}': missing tensor '{name}' (present in '{ref.label}'); "
                    "exclude it with `copy = [...]` to take it from the reference model"
                )
            used[i].add(src)
            other: TensorInfo = ck.tensors[src]
            if not other.is_float:
                raise MergeInputError(f"model '{ck.label}': tensor '{src}' is {other.dtype}, '{ref.label}' has {info.dtype}")
            if other.shape != info.shape:
                is_vocab = (
                    len(other.shape) == len(info.shape) >= 1
                    and other.shape[1:] == info.shape[1:]
                    and other.shape[0] == ck.vocab_size
                    and info.shape[0] == ref.vocab_size
                )
                if not is_vocab:
                    raise MergeInputError(
                        f"model '{ck.label}': tensor '{src}' has shape {list(other.shape)}, "
                        f"'{ref.label}' has {list(info.shape)}"
                    )
                if vocab == "error":
                    raise MergeInputError(
                        f"model '{ck.label}': tensor '{src}' has {other.shape[0]} vocabulary rows, '{ref.label}' has "
                        f"{info.shape[0]} (vocab_size {ck.vocab_size} vs {ref.vocab_size}); set "
                        "`vocab_mismatch = \"common\"` to merge the rows they share and keep the reference's others"
                    )
                rows = min(rows if rows is not None else info.shape[0], other.shape[0])
            sources.append(src)
        plans.append(TensorPlan(name, "merge", out, sources, rows))
    for i, ck in enumerate(cks):
        for n in ck.tensors:
            if n in ref.tensors or n in used[i]:
                continue
            if n in HEAD_NAMES and ref.tied_embeddings and ck.tied_embeddings:
                continue  # a stored copy of a tied head: the embeddings carry it
            hint = (
                " (it unties the output head that the reference ties to its embeddings)" if n in HEAD_NAMES else ""
            )
            raise MergeInputError(f"model '{ck.label}': has tensor '{n}' that '{ref.label}' lacks{hint}")
    return plans


# -- hashing ------------------------------------------------------------------------------------------------
def folder_hash(ck: Checkpoint, stop: threading.Event | None = None) -> str:
    """sha256 over config.json and the weight files (names and contents), read in 1 MiB blocks; gives up
    (returns "") as soon as `stop` is set, so an aborted merge does not wait for it."""
    h = hashlib.sha256()
    for f in [ck.path / "config.json", *sorted(set(ck.files))]:
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                if stop is not None and stop.is_set():
                    return ""
                h.update(block)
    return h.hexdigest()


# -- the merge ----------------------------------------------------------------------------------------------
class _Streamer:
    """Computes one output tensor at a time; also the source of task vectors for the global-trim passes."""

    def __init__(self, method: Method, refs: Sequence[ModelRef], cks: Sequence[Checkpoint], ref: Checkpoint,
                 lambda_: float, normalize: bool, seed: int):
        self.m, self.refs, self.cks, self.ref = method, refs, cks, ref
        self.lambda_, self.normalize, self.seed = lambda_, normalize, seed
        self.thresholds: list[float] | None = None  # global trim: one per model
        self.tie_budget: list[int] = []  # global trim: entries equal to the threshold still to keep, per model
        self.global_passes = 0  # global trim: full passes over the models it took (1, or 2 if a prediction missed)

    def task_vectors(self, plan: TensorPlan, ranges: list[tuple[int, int]] | None = None) -> list[Any]:
        """Per-model float32 task vectors θ_i − θ_ref (or the weights θ_i themselves when not merging against a
        base), limited to the common rows; the reference tensor is released before returning. With `ranges`
        ((start, count) flat element runs inside the merged region) only those entries, concatenated."""
        import torch

        rows = plan.rows

        def load(ck: Checkpoint, name: str) -> Any:
            if ranges is not None:
                return torch.cat([ck.read(name, r).float() for r in ranges])
            x = ck.read(name).float()
            return x[:rows].clone() if rows is not None else x

        base = load(self.ref, plan.name) if self.m.uses_base else None
        xs = []
        for ck, src in zip(self.cks, plan.sources):
            x = load(ck, src)
            if base is not None:
                x.sub_(base)
            xs.append(x)
        return xs

    def compute(self, plan: TensorPlan) -> Any:
        import torch

        if plan.action == "copy":
            out = self.ref.read(plan.name)
        else:
            xs = self.task_vectors(plan)
            for i, (r, x) in enumerate(zip(self.refs, xs)):
                if self.m.sparsify == "magnitude" and r.density < 1.0:
                    if self.thresholds is not None:  # tensors come in plan order: ties kept first-come
                        self.tie_budget[i] -= methods.trim_(x, self.thresholds[i], self.tie_budget[i])
                    else:
                        methods.trim_to_density_(x, r.density)
                elif self.m.sparsify == "random":
                    methods.dare_(x, r.density, methods.dare_seed(self.seed, i, plan.name))
            mixed = methods.combine(xs, [r.weight for r in self.refs], self.m.sign_consensus, self.normalize)
            if self.m.uses_base or plan.rows is not None:
                # re-read the reference (a page-cache hit) rather than keep it alive through the combine
                out = self.ref.read(plan.name).float()
                region = out[: plan.rows] if plan.rows is not None else out
                if self.m.uses_base:
                    region.add_(mixed, alpha=self.lambda_)
                else:
                    region.copy_(mixed)
            else:
                out = mixed
            del mixed
        dtype = getattr(torch, DTYPES[plan.out.dtype][0])
        return out.to(dtype) if out.dtype != dtype else out


SAMPLE_CHUNK = 4096  # elements per sampled run
SAMPLE_CHUNKS = 4  # runs per tensor, evenly spaced


def _region(plan: TensorPlan) -> int:
    """Entries of a merged tensor that take part (all, or the common vocabulary rows)."""
    if not plan.out.shape:
        return 1
    rows = plan.rows if plan.rows is not None else plan.out.shape[0]
    return rows * math.prod(plan.out.shape[1:])


def _sample_ranges(m: int) -> list[tuple[int, int]]:
    if m <= SAMPLE_CHUNK * SAMPLE_CHUNKS:
        return [(0, m)]
    return [(i * (m - SAMPLE_CHUNK) // (SAMPLE_CHUNKS - 1), SAMPLE_CHUNK) for i in range(SAMPLE_CHUNKS)]


def _global_thresholds(streamer: _Streamer, plans: Sequence[TensorPlan], refs: Sequence[ModelRef],
                       progress: ProgressFn | None) -> tuple[list[float], list[int]]:
    """Each model's exact k-th largest |τ| over every merged tensor (k = ⌊density·n⌋), and how many entries equal
    to it the top k holds (kept first in plan order, so exactly k survive).

    A sample of every tensor (a few KB each) predicts which magnitude bins hold the answer; one streaming pass
    then counts all entries and keeps those in the predicted bins. If a prediction missed, a second pass counts
    the right bin. Exact in both cases (see threshold.py)."""
    from .threshold import estimate_window

    merged = [p for p in plans if p.action == "merge"]
    n = sum(_region(p) for p in merged)
    if n == 0 or all(r.density >= 1.0 for r in refs):
        return [0.0 for _ in refs], [0 for _ in refs]
    ks = [methods.keep_count(n, r.density) for r in refs]
    samples: list[list[tuple[Any, float]]] = [[] for _ in refs]
    for j, p in enumerate(merged):
        m = _region(p)
        ranges = _sample_ranges(m)
        xs = streamer.task_vectors(p, ranges)
        weight = m / sum(c for _, c in ranges)
        for i, x in enumerate(xs):
            samples[i].append((x.abs_(), weight))
        if progress:
            progress(j + 1, len(merged), f"global trim sample: {p.name}")
    selectors = [
        MagnitudeSelector(k, estimate_window(smp, k, n)) if r.density < 1.0 else None
        for r, k, smp in zip(refs, ks, samples)
    ]
    del samples
    for pass_ in (1, 2):
        active = [s for s in selectors if s is not None and (pass_ == 1 or s.needs_second_pass)]
        if not active:
            break
        for j, p in enumerate(merged):
            for sel, x in zip(selectors, streamer.task_vectors(p)):
                if sel is not None and sel in active:
                    sel.add(x)
            if progress:
                progress(j + 1, len(merged), f"global trim pass {pass_}: {p.name}")
        if pass_ == 1:
            for sel in active:
                sel.next_pass()
        streamer.global_passes = pass_
    return ([sel.value() if sel is not None else 0.0 for sel in selectors],
            [sel.ties() if sel is not None else 0 for sel in selectors])


def _copy_files(src: Path, dest: Path, dtype: str) -> None:
    """Config, tokenizer, chat template, generation config...: every top-level file that is not weights."""
    for f in sorted(src.iterdir()):
        if not f.is_file() or f.suffix in (".safetensors", ".gguf", *PICKLE_SUFFIXES) or f.name in NON_WEIGHT_FILES:
            continue
        shutil.copy2(f, dest / f.name)
    if dtype != "base":
        cfg_path = dest / "config.json"
        cfg = json.loads(cfg_path.read_text())
        keys = [k for k in ("dtype", "torch_dtype") if k in cfg] or ["dtype"]
        for k in keys:
            cfg[k] = dtype
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


def merge(
    method: str,
    models: Sequence[ModelRef | str | Path],
    out: str | Path,
    base: str | Path | None = None,
    *,
    lambda_: float = 1.0,
    normalize: bool | None = None,
    trim: str = "per_tensor",
    dtype: str = "base",
    seed: int = 0,
    include: Sequence[str] = (".*",),
    copy: Sequence[str] = (),
    vocab_mismatch: str = "error",
    allow_pickle: bool = False,
    files_from: str | None = None,
    max_shard_size: int | str = "2GB",
    hash_inputs: bool = True,
    overwrite: bool = False,
    base_label: str = "base",
    base_hash: str | None = None,
    num_threads: int | None = None,
    progress: ProgressFn | None = None,
) -> MergeResult:
    """Merge `models` (into `base` for task-vector methods) and write a Hugging Face folder at `out`.

    `out` appears only when the merge has completed (written to a hidden `.<name>.partial-*` sibling, then
    renamed); any error leaves no output. See docs/plugins/ties.md for every parameter."""
    t0 = time.perf_counter()
    refs = [r if isinstance(r, ModelRef) else ModelRef(r) for r in models]
    m = check_params(method, refs, base, lambda_, trim, dtype, vocab_mismatch)
    out = Path(out)
    if base is not None and base_label in {r.label for r in refs}:
        raise MergeInputError(f"merge '{method}': label '{base_label}' names both the base and a model")
    for p in [*(r.path for r in refs), *([base] if base is not None else [])]:
        src = Path(p).resolve()
        if out.resolve() == src or src in out.resolve().parents or out.resolve() in src.parents:
            raise MergeInputError(f"merge: output {out} overlaps the input model folder {p}")
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise MergeInputError(f"merge: output {out} already exists and is not empty (pass overwrite=True to replace it)")
    normalize = m.normalize if normalize is None else normalize
    max_bytes = parse_size(max_shard_size)

    if num_threads is not None and num_threads < 1:
        raise MergeInputError(f"merge: num_threads must be at least 1, got {num_threads}")
    import torch

    threads_before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    opened: list[Checkpoint] = []
    hasher: ThreadPoolExecutor | None = None
    stop_hashing = threading.Event()
    try:
        cks = []
        for r in refs:
            opened.append(Checkpoint(r.path, r.label, allow_pickle))
            cks.append(opened[-1])
        base_ck = None
        if base is not None:
            base_ck = Checkpoint(base, base_label, allow_pickle)
            opened.append(base_ck)
        ref = base_ck if base_ck is not None else cks[0]
        plans = plan_merge(ref, cks, m, include, copy, dtype, vocab_mismatch)
        by_label = {c.label: c for c in ([base_ck] if base_ck else []) + cks}
        files_ck = ref if files_from is None else by_label.get(files_from)
        if files_ck is None:
            raise MergeInputError(f"merge: files_from '{files_from}' is not one of the models {sorted(by_label)}")
        if files_ck.vocab_size != ref.vocab_size:
            raise MergeInputError(
                f"merge: files_from '{files_from}' has vocab_size {files_ck.vocab_size}, but the output keeps the "
                f"reference '{ref.label}' shapes (vocab_size {ref.vocab_size}); take files from '{ref.label}'"
            )

        hashes: dict[str, Future[str]] = {}
        known: dict[str, str] = {}
        if hash_inputs:  # overlaps with the merge; its reads hit the same page cache
            hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plinth-ties-hash")
            known = {r.label: r.content_hash for r in refs if r.content_hash}
            if base_ck is not None and base_hash:
                known[base_ck.label] = base_hash
            hashes = {
                c.label: hasher.submit(folder_hash, c, stop_hashing) for c in by_label.values() if c.label not in known
            }

        streamer = _Streamer(m, refs, cks, ref, lambda_, normalize, seed)
        if m.sparsify == "magnitude" and trim == "global":
            streamer.thresholds, streamer.tie_budget = _global_thresholds(streamer, plans, refs, progress)

        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            writer = ShardedWriter(tmp, [p.out for p in plans], max_bytes, {"merge_method": method})
            try:
                for j, p in enumerate(plans):
                    writer.write(p.name, streamer.compute(p))
                    if progress:
                        progress(j + 1, len(plans), p.name)
                writer.finish()
            finally:
                writer.close()
            _copy_files(files_ck.path, tmp, dtype)
            record = {
                "merged_by": "plinth-ties",
                "method": method,
                "parameters": {
                    "lambda": lambda_, "normalize": normalize, "trim": trim if m.sparsify == "magnitude" else None,
                    "dtype": dtype, "seed": seed if m.sparsify == "random" else None, "include": list(include),
                    "copy": list(copy), "vocab_mismatch": vocab_mismatch, "max_shard_size": max_shard_size,
                },
                "base": None if base_ck is None else {"label": base_ck.label, "path": str(base_ck.path.resolve())},
                "models": [
                    {"label": r.label, "path": str(Path(r.path).resolve()), "weight": r.weight, "density": r.density}
                    for r in refs
                ],
                "files_from": files_ck.label,
                "tensors": {
                    "merged": sum(p.action == "merge" for p in plans),
                    "copied": [p.name for p in plans if p.action == "copy"],
                    "common_rows": {p.name: p.rows for p in plans if p.rows is not None},
                },
                "output": {"shards": len(writer.shards), "total_size": writer.total_size},
            }
            if streamer.thresholds is not None:
                record["thresholds"] = {r.label: t for r, t in zip(refs, streamer.thresholds)}
                record["global_trim_passes"] = streamer.global_passes
            if hash_inputs:
                digests = {k: f.result() for k, f in hashes.items()}
                for entry in ([record["base"]] if record["base"] is not None else []) + record["models"]:
                    if entry["label"] in digests:
                        entry["sha256"] = digests[entry["label"]]  # config.json + weight files
                    else:
                        entry["content_hash"] = known[entry["label"]]  # plinth.artifacts.content_hash of the folder
            record["seconds"] = round(time.perf_counter() - t0, 3)
            (tmp / "merge.json").write_text(json.dumps(record, indent=2) + "\n")
            replace_folder(tmp, out)  # fsynced; the old merge is moved aside, never deleted before
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if hasher is not None:
            stop_hashing.set()
            hasher.shutdown(wait=True, cancel_futures=True)
        for c in opened:
            c.close()
        torch.set_num_threads(threads_before)
    return MergeResult(out, method, record)


__all__ = ["METHODS", "MergeResult", "ModelRef", "merge", "plan_merge"]
