"""Streaming merge vs the naive load-everything merge: wall time and peak resident memory, same run, same inputs.

Builds a base and three "fine-tuned" models of ~300 MB each (a Qwen2 architecture scaled up from the tiny test
model, float32, random weights; the base is sharded, the fine-tunes are single files, so layouts differ), then
merges them with `plinth_ties.merge` (streaming) and with `plinth_ties.reference.merge_in_memory` (load every
model, merge, save). Each merge runs in its own fresh subprocess so peak RSS (VmHWM) is its own; time is measured
inside the worker around the merge call only (Python/torch start-up excluded), as wall time and as the process's
CPU seconds (user + sys, all threads: the streaming engine's input hashing thread included). Both use one torch
thread: on a shared machine wall time swings with other jobs, CPU seconds much less; best of the repeats is kept.

    .venv/bin/python benchmarks/merge.py            # ~1.5-2.5 min on 2 cores, ~1.3 GB of temporary files
    .venv/bin/python benchmarks/merge.py --small    # a quick smoke run (~80 MB models)

Targets (issue 5): time ratio streaming/naive <= 1.0, peak-memory ratio <= 0.3.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build_models(root: Path, small: bool) -> None:
    """base (sharded ~100 MB files) + ft1..ft3 (single file each) = base + seeded noise of scale 0.002."""
    import torch
    from safetensors.torch import save_file
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from plinth.lm.testing import tiny_tokenizer

    hidden, layers = (512, 4) if small else (1024, 6)
    config = Qwen2Config(
        vocab_size=8192, hidden_size=hidden, intermediate_size=int(hidden * 2.75), num_hidden_layers=layers,
        num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=1024, tie_word_embeddings=True,
    )
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in Qwen2ForCausalLM(config).state_dict().items() if k != "lm_head.weight"}
    g = torch.Generator().manual_seed(0)
    base = {k: torch.randn(s, generator=g) * 0.02 for k, s in shapes.items()}
    tok = tiny_tokenizer()
    for name in ("base", "ft1", "ft2", "ft3"):
        d = root / name
        d.mkdir(parents=True)
        config.save_pretrained(d)
        GenerationConfig(do_sample=False).save_pretrained(d)
        tok.save_pretrained(str(d))
        if name == "base":
            shard, size, n, weight_map = {}, 0, 0, {}
            files = []
            for k, v in base.items():
                shard[k] = v
                size += v.numel() * 4
                if size > 100_000_000:
                    files.append(shard)
                    shard, size = {}, 0
            files.append(shard)
            for i, s in enumerate(files):
                fname = f"model-{i + 1:05d}-of-{len(files):05d}.safetensors"
                save_file(s, str(d / fname), metadata={"format": "pt"})
                weight_map.update({k: fname for k in s})
            total = sum(v.numel() * 4 for v in base.values())
            (d / "model.safetensors.index.json").write_text(
                json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
        else:
            gi = torch.Generator().manual_seed(int(name[-1]))
            ft = {k: v + 0.002 * torch.randn(v.shape, generator=gi) for k, v in base.items()}
            save_file(ft, str(d / "model.safetensors"), metadata={"format": "pt"})
            del ft


def worker(impl: str, root: Path, method: str, trim: str, hash_inputs: bool = True) -> None:
    t_start = time.perf_counter()
    from plinth_ties import ModelRef, merge
    from plinth_ties.reference import merge_in_memory

    import resource

    import torch

    # One intra-op thread for both: on a shared machine CPU seconds are then comparable between runs, and wall
    # time is not inflated by OpenMP threads spinning while another job holds the cores.
    torch.set_num_threads(1)
    startup_mb = vm_hwm_mb()
    models = [ModelRef(root / f"ft{i}", f"ft{i}", 1.0, 0.2) for i in (1, 2, 3)]
    out = root / f"out-{impl}"
    t_import = time.perf_counter() - t_start
    def cpu() -> float:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime

    t0, c0 = time.perf_counter(), cpu()
    if impl == "stream":
        merge(method, models, out, root / "base", trim=trim, overwrite=True, hash_inputs=hash_inputs)
    else:
        merge_in_memory(method, models, out, root / "base", trim=trim)
    seconds, cpu_s = time.perf_counter() - t0, cpu() - c0
    print(json.dumps({"seconds": seconds, "cpu_s": cpu_s, "peak_mb": vm_hwm_mb(), "startup_mb": startup_mb,
                      "import_s": t_import}))


def run_worker(impl: str, root: Path, method: str, trim: str, hash_inputs: bool) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, "--root", str(root), "--method", method, "--trim", trim]
    cmd += [] if hash_inputs else ["--no-hash"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode:
        raise SystemExit(f"{impl} worker failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def tensors_equal(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    def load(p: Path) -> dict:
        out = {}
        for f in sorted(p.glob("*.safetensors")):
            out.update(load_file(str(f)))
        return out

    x, y = load(a), load(b)
    return sorted(x) == sorted(y) and all(torch.equal(x[k], y[k]) for k in x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="~80 MB models: a quick smoke run")
    ap.add_argument("--worker", choices=["stream", "naive"], help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--method", default="ties")
    ap.add_argument("--trim", default="per_tensor", choices=["per_tensor", "global"])
    ap.add_argument("--repeats", type=int, default=2, help="runs of each implementation (best time, max memory)")
    ap.add_argument("--no-hash", action="store_true", help="streaming: skip the sha256 of the inputs for merge.json")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.root, args.method, args.trim, not args.no_hash)
        return

    root = Path(tempfile.mkdtemp(prefix="plinth-merge-bench-"))
    try:
        t0 = time.perf_counter()
        build_models(root, args.small)
        size_mb = sum(f.stat().st_size for f in (root / "ft1").glob("*.safetensors")) / 1e6
        print(f"built base + 3 models of {size_mb:.0f} MB each (float32) in {time.perf_counter() - t0:.1f} s")
        print(f"method={args.method} trim={args.trim} density=0.2 hash_inputs={not args.no_hash}, {args.repeats} "
              "alternating runs each, fresh process per run")
        results: dict[str, list[dict]] = {"naive": [], "stream": []}
        for _ in range(args.repeats):
            for impl in ("naive", "stream"):
                r = run_worker(impl, root, args.method, args.trim, not args.no_hash)
                results[impl].append(r)
                print(f"  {impl:6s} wall {r['seconds']:6.2f} s  cpu {r['cpu_s']:6.2f} s  peak RSS {r['peak_mb']:7.0f} MB "
                      f"(after imports {r['startup_mb']:.0f} MB)")
        same = tensors_equal(root / "out-naive", root / "out-stream")
        best = {k: min(r["seconds"] for r in v) for k, v in results.items()}
        cpu = {k: min(r["cpu_s"] for r in v) for k, v in results.items()}
        peak = {k: max(r["peak_mb"] for r in v) for k, v in results.items()}
        start = {k: max(r["startup_mb"] for r in v) for k, v in results.items()}
        print(f"identical output tensors: {same}")
        print(f"time ratio   streaming/naive = {cpu['stream'] / cpu['naive']:.2f}x CPU seconds "
              f"({cpu['stream']:.2f} s vs {cpu['naive']:.2f} s; target <= 1.0x), "
              f"{best['stream'] / best['naive']:.2f}x wall ({best['stream']:.2f} s vs {best['naive']:.2f} s)")
        print(f"memory ratio streaming/naive = {peak['stream'] / peak['naive']:.2f}x  "
              f"({peak['stream']:.0f} MB vs {peak['naive']:.0f} MB peak RSS; target <= 0.3x)")
        above = {k: peak[k] - start[k] for k in peak}
        print(f"  above the ~{start['stream']:.0f} MB import baseline: {above['stream']:.0f} MB vs {above['naive']:.0f} MB "
              f"= {above['stream'] / max(above['naive'], 1):.2f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
