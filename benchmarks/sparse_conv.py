"""Sparse convolution engine vs dense Conv3d, torch.mm, spconv and ocnn: ratios measured in the same run.

The cloud: the surfaces of a sphere and a torus sampled with 1.5M points in the unit cube and voxelised at 32^3,
64^3, 128^3 and 256^3 (~113k active voxels at 256^3, ~1.5M neighbour pairs for a 3^3 kernel): surface-like, as
a scanned or mesh-sampled shape is. Every case runs in its own fresh subprocess with `--threads` torch threads:
time is the best of the repeats around the op only, with OpenMP's wait policy as the environment leaves it (what
a user gets; run alone under `flock -x`). `--omp-wait-policy PASSIVE` is for a loaded machine, where threads
spinning at barriers slowed our many-op conv 6x and torch.mm 2x in one measurement; on a quiet one PASSIVE costs
the conv 1.5x (64 channels: 0.59 s vs 0.38 s), each op paying a thread wake-up; peak memory is the rise of the process's peak RSS (VmHWM,
reset through /proc/self/clear_refs just before the inputs are created) over one forward + backward, so it counts
the input features, the kernel map or dense grid, outputs, gradients and every temporary buffer. The dense
baseline gets `--dense-cap-gb` of address space beyond what the process holds before its inputs; a case that needs
more is reported as out of memory (on this shared 24 GB machine nothing larger is safe).

Sections (all by default): dense (sparse vs dense Conv3d), gemm (achieved GFLOP/s vs torch.mm of the same shapes,
for each of --gemm-dataflows), baselines (vs spconv's CPU build and ocnn, 3^3 64->64 on the 256^3 cloud), kmap
(kernel-map build vs one conv), dataflow (per-offset vs fused vs compiled at several layer sizes: the measurements
behind torch_conv.choose_dataflow). Our conv runs through torch_conv.conv with its default rule except where a
section names a dataflow; the compiled kernel builds on first use (PLINTH_SPARSE_KERNEL=torch measures without it).

    flock -x /tmp/plinth-cpu.lock .venv/bin/python benchmarks/sparse_conv.py          # ~10 min on 2 busy cores
    .venv/bin/python benchmarks/sparse_conv.py --quick                                # smoke run, ~1-2 min
    .venv/bin/python benchmarks/sparse_conv.py --sections gemm,baselines --json out.json

spconv comes with the `bench` extra (`pip install -e 'plugins/plinth-sparsepipe[bench]'`); ocnn must be installed
without its dependencies (`pip install --no-deps ocnn==2.3.3`: its torchvision requirement pulls a CUDA build that
breaks a CPU torch). A missing baseline is reported as such and the rest still runs.

Floors (issue 10): sparse >= 10x faster and >= 10x less memory than dense at 64^3 and above; >= 0.6 of torch.mm's
GFLOP/s at >= 64 channels; at least as fast as spconv CPU and ocnn.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()


# -- the cloud ----------------------------------------------------------------------------------------------------
def surface_cloud(res: int, seed: int = 0, n_points: int = 1_500_000):
    """int32 [N, 3] voxel coordinates (sorted) of a sphere and a torus surface voxelised at res^3."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n = n_points // 2
    v = torch.randn(n, 3, generator=g)
    sphere = v / v.norm(dim=1, keepdim=True) * 0.24 + torch.tensor([0.33, 0.5, 0.5])
    a, b = torch.rand(n, generator=g) * 2 * math.pi, torch.rand(n, generator=g) * 2 * math.pi
    R, r = 0.215, 0.07
    torus = torch.stack([(R + r * b.cos()) * a.cos(), (R + r * b.cos()) * a.sin(), r * b.sin()], 1)
    torus = torus + torch.tensor([0.68, 0.5, 0.5])
    p = (torch.cat([sphere, torus]).clamp(0, 1 - 1e-6) * res).long()
    key = torch.unique((p[:, 0] * res + p[:, 1]) * res + p[:, 2])
    return torch.stack([key // (res * res), (key // res) % res, key % res], 1).to(torch.int32)


# -- measurement helpers (worker side) ----------------------------------------------------------------------------
def _status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> float:
    """Reset VmHWM to the current RSS (Linux >= 4.0) and return that RSS in MB."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _sparse_input(res: int, channels: int):
    import torch

    from plinth_sparsepipe.sparse import sparse_collate

    coords = surface_cloud(res)
    g = torch.Generator().manual_seed(1)
    return sparse_collate([(coords, torch.randn(len(coords), channels, generator=g))])


def _weight(k: int, c_in: int, c_out: int):
    import torch

    g = torch.Generator().manual_seed(2)
    return (torch.randn(k**3, c_in, c_out, generator=g) / math.sqrt(k**3 * c_in)).requires_grad_(True)


# -- workers ------------------------------------------------------------------------------------------------------
def work_sparse(res: int, channels: int, repeats: int, **_):
    """Our 3^3 submanifold conv: peak memory of kernel map + fwd + bwd from nothing; times of each part."""
    import torch

    from plinth_sparsepipe.sparse import SparseTensor
    from plinth_sparsepipe.sparse import functional as spF
    from plinth_sparsepipe.sparse.functional.maps import op_map

    coords = surface_cloud(res)
    coords4 = torch.cat([torch.zeros(len(coords), 1, dtype=torch.int32), coords], 1)
    w = _weight(3, channels, channels)
    # both dataflows once on a tiny input first: the first backward's one-off allocations (thread pool, the GEMM
    # library's packing buffers: 20-35 MB here) are start-up, not the op's memory; a training step after the first
    # pays none of it
    from plinth_sparsepipe.sparse.backends import torch_conv

    tiny = SparseTensor(coords4[:64], torch.randn(64, channels).requires_grad_(True))
    tiny_map = op_map(tiny, 3).kmap
    for flow in ("per_offset", "fused", "compiled"):  # "compiled" runs per_offset where it did not build
        torch_conv.conv(tiny.feats, w, tiny_map, flow).sum().backward()
    base = _reset_peak()
    x = SparseTensor(coords4, torch.randn(len(coords), channels).requires_grad_(True))
    y = spF.conv3d(x, w, kernel_size=3)
    y.feats.backward(torch.ones_like(y.feats))
    peak = _status("VmHWM") - base
    kmap = op_map(x, 3).kmap

    def build():
        op_map(SparseTensor(coords4, x.feats), 3)

    def step():
        out = spF.conv3d(x, w, kernel_size=3)
        out.feats.backward(torch.ones_like(out.feats))

    t_kmap = _best(build, repeats)
    t_conv = _best(step, repeats)
    return {"voxels": len(coords), "pairs": kmap.num_pairs, "peak_mb": peak, "kmap_s": t_kmap, "conv_s": t_conv,
            "total_s": t_kmap + t_conv}


def work_dense(res: int, channels: int, repeats: int, cap_gb: float, **_):
    """nn.Conv3d 3^3 (padding 1) fwd + bwd on the densified grid, under an address-space cap."""
    import resource

    import torch

    coords = surface_cloud(res)
    conv = torch.nn.Conv3d(channels, channels, 3, padding=1, bias=False)
    conv(torch.zeros(1, channels, 4, 4, 4, requires_grad=True)).sum().backward()  # start-up memory, as work_sparse
    limit = int((_status("VmSize") + cap_gb * 1024) * 1024 * 1024)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    base = _reset_peak()
    try:
        grid = torch.zeros(1, channels, res, res, res)
        grid[0, :, coords[:, 0].long(), coords[:, 1].long(), coords[:, 2].long()] = torch.randn(channels, len(coords))
        grid.requires_grad_(True)

        def step():
            out = conv(grid)
            out.backward(torch.ones_like(out))

        t0 = time.perf_counter()
        step()
        first = time.perf_counter() - t0
        peak = _status("VmHWM") - base
        t = min(first, _best(step, repeats - 1)) if repeats > 1 else first
    except (RuntimeError, MemoryError) as e:
        need = 5 * channels * res**3 * 4 / 2**30
        return {"oom": True, "error": str(e).splitlines()[0][:120], "estimated_gb": round(need, 1)}
    return {"peak_mb": peak, "conv_s": t}


def _per_offset_shapes(kmap):
    return [n for n in kmap.sizes if n]


PEAK_N = 2048  # square GEMM for the machine's peak


def work_gemm(res: int, channels: int, repeats: int, dataflow: str = "compiled", **_):
    """Achieved GFLOP/s of our conv (kernel map cached) vs torch.mm on the same shapes, interleaved in one process."""
    import torch

    from plinth_sparsepipe.sparse.backends import compiled, torch_conv
    from plinth_sparsepipe.sparse.functional.maps import op_map

    x = _sparse_input(res, channels)
    kmap = op_map(x, 3).kmap
    w = _weight(3, channels, channels)
    f = x.feats.requires_grad_(True)
    grad = torch.ones(kmap.n_out, channels)
    shapes = _per_offset_shapes(kmap)
    a = [torch.randn(n, channels) for n in shapes]
    b, out = torch.randn(channels, channels), torch.empty(max(shapes), channels)
    wg = torch.empty(channels, channels)

    if dataflow == "compiled" and not compiled.available():
        return {"missing": f"compiled kernel unavailable: {compiled.error()}"}

    def ours():
        torch_conv.conv(f, w, kmap, dataflow).backward(grad)

    ours()  # the compiled path sorts and checks the map once (cached on it, as in training)

    def mm():  # forward, grad-input and grad-weight GEMMs of every offset
        for m in a:
            torch.mm(m, b, out=out[: len(m)])
            torch.mm(m, b.t(), out=out[: len(m)])
            torch.mm(m.t(), m, out=wg)

    # the machine's GEMM limit: a square, compute-bound torch.mm (the per-offset shapes above are tall and thin,
    # so memory-bound: a cache-blocked kernel can beat them, not this)
    sq_a, sq_b, sq_out = torch.randn(PEAK_N, PEAK_N), torch.randn(PEAK_N, PEAK_N), torch.empty(PEAK_N, PEAK_N)

    def peak():
        torch.mm(sq_a, sq_b, out=sq_out)

    peak()
    t_ours, t_mm, t_peak = float("inf"), float("inf"), float("inf")
    for _ in range(repeats):
        t_mm = min(t_mm, _best(mm, 1))
        t_ours = min(t_ours, _best(ours, 1))
        t_peak = min(t_peak, _best(peak, 1))
    flop = 3 * 2 * kmap.num_pairs * channels * channels
    return {"voxels": kmap.n_in, "pairs": kmap.num_pairs, "dataflow": dataflow, "ours_s": t_ours, "mm_s": t_mm,
            "ours_gflops": flop / t_ours / 1e9, "mm_gflops": flop / t_mm / 1e9,
            "peak_gflops": 2 * PEAK_N ** 3 / t_peak / 1e9}


def work_spconv(res: int, channels: int, repeats: int, **_):
    """spconv's own SubMConv3d (ConvAlgo.Native, its own pairs, cached by indice_key) fwd + bwd; checks its output."""
    import torch

    from plinth_sparsepipe.sparse import functional as spF
    from plinth_sparsepipe.sparse.backends import spconv_conv  # applies the CPU stream patch

    import spconv.pytorch as spconv

    del spconv_conv
    x = _sparse_input(res, channels)
    w = _weight(3, channels, channels)
    conv = spconv.SubMConv3d(channels, channels, 3, bias=False, indice_key="b", algo=spconv.ConvAlgo.Native)
    with torch.no_grad():
        conv.weight.copy_(w.detach().permute(2, 0, 1).reshape(channels, 3, 3, 3, channels))
    f = x.feats.clone().requires_grad_(True)
    st = spconv.SparseConvTensor(f, x.coords, [res] * 3, 1)

    def step():
        out = conv(st)
        out.features.backward(torch.ones_like(out.features))
        return out

    t0 = time.perf_counter()
    first = step()
    t_first = time.perf_counter() - t0
    t = _best(step, repeats)
    with torch.no_grad():
        ref = spF.conv3d(x, w.detach(), kernel_size=3).feats
        wrong = sum(not torch.allclose(conv(st).features, ref, rtol=1e-4, atol=1e-4) for _ in range(5))
    del first
    return {"voxels": len(x), "conv_s": t, "first_call_s": t_first, "wrong_of_5": wrong}


def _import_ocnn():
    """ocnn without its package __init__ (which imports torchvision for an image model we do not use)."""
    import importlib.util
    import types

    spec = importlib.util.find_spec("ocnn")
    if spec is None:
        raise ImportError("ocnn is not installed (pip install --no-deps ocnn==2.3.3)")
    package = types.ModuleType("ocnn")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["ocnn"] = package
    import ocnn.nn
    import ocnn.octree

    return ocnn


def work_ocnn(res: int, channels: int, repeats: int, **_):
    """ocnn's OctreeConv (3^3, non-empty nodes) at octree depth log2(res) on the same voxels, fwd + bwd."""
    import torch

    ocnn = _import_ocnn()
    coords = surface_cloud(res)
    depth = int(round(math.log2(res)))
    points = (coords.float() + 0.5) / res * 2 - 1
    octree = ocnn.octree.Octree(depth=depth, full_depth=2)
    octree.build_octree(ocnn.octree.Points(points))
    octree.construct_all_neigh()
    n = int(octree.nnum_nempty[depth])
    conv = ocnn.nn.OctreeConv(channels, channels, [3], nempty=True)
    data = torch.randn(n, channels).requires_grad_(True)

    def step():
        out = conv(data, octree, depth)
        out.backward(torch.ones_like(out))

    step()
    return {"voxels": n, "conv_s": _best(step, repeats)}


def work_kmap(res: int, channels: int, repeats: int, **_):
    """Kernel-map build (submanifold 3^3, strided 2^3) vs one 3^3 conv fwd + bwd on the cached map."""
    import torch

    from plinth_sparsepipe.sparse import kmap as km
    from plinth_sparsepipe.sparse.backends import torch_conv

    x = _sparse_input(res, channels)
    subm = km.submanifold_map(x.coords, 3)
    w = _weight(3, channels, channels)
    f = x.feats.requires_grad_(True)
    grad = torch.ones(len(x), channels)
    return {
        "voxels": len(x),
        "subm_kmap_s": _best(lambda: km.submanifold_map(x.coords, 3), repeats),
        "down_kmap_s": _best(lambda: km.downsample_map(x.coords, 2, 2), repeats),
        "conv_s": _best(lambda: torch_conv.conv(f, w, subm).backward(grad), repeats),
        "dataflow": torch_conv.choose_dataflow(subm, 64, 64, feats=f),
    }


def work_naive(res: int, channels: int, repeats: int, impl: str = "naive", **_):
    """One 3^3 conv fwd + bwd on a cached map, either as plain autograd through a 27-offset gather - mm - index_add
    loop (what autograd then saves) or through our Function; one implementation per process, so VmHWM is its own."""
    import torch

    from plinth_sparsepipe.sparse.backends import torch_conv
    from plinth_sparsepipe.sparse.functional.maps import op_map

    x = _sparse_input(res, channels)
    kmap = op_map(x, 3).kmap
    w = _weight(3, channels, channels)
    f = x.feats.requires_grad_(True)
    grad = torch.ones(kmap.n_out, channels)
    pieces = list(torch_conv._offsets(kmap))

    def naive():
        out = f @ w[kmap.identity]
        for k, i_in, i_out in pieces:
            out = out.index_add(0, i_out, f[i_in] @ w[k])
        out.backward(grad)

    def ours():
        torch_conv.conv(f, w, kmap).backward(grad)

    fn = naive if impl == "naive" else ours
    base = _reset_peak()
    fn()
    peak = _status("VmHWM") - base
    return {"voxels": len(x), "s": _best(fn, repeats), "peak_mb": peak}


DATAFLOW_LAYERS = [  # (cloud resolution, tensor stride the layer runs at, kernel, conv stride)
    (32, 1, 3, 1), (64, 1, 3, 1), (128, 1, 3, 1), (64, 2, 3, 1), (64, 4, 3, 1), (128, 8, 3, 1), (128, 16, 3, 1),
    (64, 1, 2, 2), (128, 4, 2, 2),
]


def work_dataflow(channels: int, repeats: int, **_):
    """fwd + bwd of each dataflow at several layer sizes; which one the rule picks."""
    import torch

    from plinth_sparsepipe.sparse import functional as spF
    from plinth_sparsepipe.sparse.backends import compiled, torch_conv
    from plinth_sparsepipe.sparse.functional.maps import op_map

    rows = []
    for res, t, k, s in DATAFLOW_LAYERS:
        x = _sparse_input(res, channels)
        while x.stride < t:
            x = spF.max_pool3d(x, 2)
        kmap = op_map(x, k, s).kmap
        w = _weight(k, channels, channels)
        f = x.feats.detach().clone().requires_grad_(True)
        grad = torch.ones(kmap.n_out, channels)
        times = {}
        for flow in ("per_offset", "fused") + (("compiled",) if compiled.available() else ()):
            torch_conv.conv(f, w, kmap, flow).backward(grad)  # warm-up (the compiled path's one-off map sort)
            times[flow] = _best(lambda: torch_conv.conv(f, w, kmap, flow).backward(grad), repeats)
        rows.append({
            "layer": f"{res}^3 cloud, stride {t}, k{k}s{s}", "n_out": kmap.n_out,
            "density": round(kmap.num_pairs / (kmap.n_out * kmap.kernel_volume), 3),
            "per_offset_s": times["per_offset"], "fused_s": times["fused"], "compiled_s": times.get("compiled"),
            "work": kmap.n_out * channels * channels,
            "rule": torch_conv.choose_dataflow(kmap, channels, channels, feats=f),
        })
    return {"rows": rows}


WORKERS = {name[5:]: fn for name, fn in globals().items() if name.startswith("work_")}


def worker_main(spec: dict) -> None:
    import torch

    torch.set_num_threads(spec["threads"])
    try:
        result = WORKERS[spec["kind"]](**spec)
    except ImportError as e:
        result = {"missing": str(e)}
    print("RESULT " + json.dumps(result), flush=True)


# -- orchestration ------------------------------------------------------------------------------------------------
WAIT_POLICY = ["default"]


def run_case(kind: str, timeout: float = 1800, **spec) -> dict:
    spec = {"kind": kind, **spec}
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), MKL_NUM_THREADS=str(spec["threads"]))
    if WAIT_POLICY[0] != "default":
        env["OMP_WAIT_POLICY"] = WAIT_POLICY[0]
    proc = subprocess.run(
        [sys.executable, str(HERE), "--worker", json.dumps(spec)], capture_output=True, text=True, env=env,
        timeout=timeout,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    if proc.returncode < 0 or "MemoryError" in proc.stderr or "memory" in proc.stderr.lower():
        return {"oom": True, "error": " | ".join(tail)[:200]}
    return {"failed": True, "error": " | ".join(tail)[:300]}


def _fmt(v, digits=3):
    return "-" if v is None else f"{v:.{digits}f}"


def _header(title: str, columns: list[str]) -> None:
    print(f"\n## {title}")
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))


def section_dense(a, out):
    _header(
        f"Sparse vs dense Conv3d (3^3, {a.dense_channels}->{a.dense_channels}, fwd + bwd, threads={a.threads})",
        ['grid', 'active voxels', 'sparse s (map + conv)', 'dense s', 'speed-up', 'sparse peak MB', 'dense peak MB',
         'memory ratio'],
    )
    rows = []
    for res in a.grids:
        s = run_case("sparse", res=res, channels=a.dense_channels, repeats=a.repeats, threads=a.threads)
        reps = a.repeats if res <= 64 else 1
        d = run_case("dense", res=res, channels=a.dense_channels, repeats=reps, threads=a.threads,
                     cap_gb=a.dense_cap_gb)
        if d.get("oom"):
            dense_s = dense_mb = speed = mem = None
            note = f"out of memory (cap {a.dense_cap_gb} GB, needs ~{d.get('estimated_gb', '?')} GB)"
        else:
            dense_s, dense_mb = d["conv_s"], d["peak_mb"]
            speed, mem = dense_s / s["total_s"], dense_mb / max(s["peak_mb"], 1e-3)
            note = None
        rows.append({"grid": res, "sparse": s, "dense": d, "speedup": speed, "memory_ratio": mem})
        print(f"| {res}^3 | {s['voxels']} | {_fmt(s['total_s'])} | {note or _fmt(dense_s)} | "
              f"{_fmt(speed, 1)} | {_fmt(s['peak_mb'], 1)} | {_fmt(dense_mb, 1)} | {_fmt(mem, 1)} |", flush=True)
    out["dense"] = rows


def section_gemm(a, out):
    _header(
        f"Achieved GFLOP/s vs torch.mm of the same shapes ({a.big}^3 cloud, 3^3 conv fwd + bwd, threads={a.threads})",
        ['dataflow', 'channels', 'voxels', 'pairs', 'ours s', 'ours GFLOP/s', 'torch.mm GFLOP/s', 'ratio',
         f'peak GFLOP/s ({PEAK_N}^3 mm)', 'ratio to peak'],
    )
    rows = []
    for flow in a.gemm_dataflows.split(","):
        for c in a.channels:
            r = run_case("gemm", res=a.big, channels=c, repeats=a.repeats, threads=a.threads, dataflow=flow)
            if "missing" in r or r.get("failed"):
                print(f"| {flow} | {c} | {r.get('missing') or r.get('error')} |", flush=True)
                continue
            r["channels"], r["ratio"] = c, r["ours_gflops"] / r["mm_gflops"]
            r["peak_ratio"] = r["ours_gflops"] / r["peak_gflops"]
            rows.append(r)
            print(f"| {flow} | {c} | {r['voxels']} | {r['pairs']} | {_fmt(r['ours_s'])} | {_fmt(r['ours_gflops'], 1)} "
                  f"| {_fmt(r['mm_gflops'], 1)} | {_fmt(r['ratio'], 2)} | {_fmt(r['peak_gflops'], 1)} "
                  f"| {_fmt(r['peak_ratio'], 2)} |", flush=True)
    out["gemm"] = rows


def section_baselines(a, out):
    c = 64
    _header(
        f"vs spconv (CPU build) and ocnn: 3^3 {c}->{c} fwd + bwd on the {a.big}^3 cloud (kernel maps cached)",
        ['implementation', 'threads', 'voxels', 's', 'ours / it (speed-up)', 'note'],
    )
    rows = []
    for threads in sorted({a.threads, 1}, reverse=True):
        ours = run_case("kmap", res=a.big, channels=c, repeats=a.repeats, threads=threads)
        sp = run_case("spconv", res=a.big, channels=c, repeats=a.repeats, threads=threads)
        oc = run_case("ocnn", res=a.big, channels=c, repeats=a.repeats, threads=threads)
        nv = {impl: run_case("naive", res=a.big, channels=c, repeats=a.repeats, threads=threads, impl=impl)
              for impl in ("naive", "ours")}
        base = ours["conv_s"]
        print(f"| plinth torch back end | {threads} | {ours['voxels']} | {_fmt(base)} | 1.00 | |")
        if all("s" in r for r in nv.values()):
            print(f"| same loop, plain autograd through index ops | {threads} | {nv['naive']['voxels']} | "
                  f"{_fmt(nv['naive']['s'])} | {nv['naive']['s'] / nv['ours']['s']:.2f} | peak MB fwd + bwd "
                  f"(a process each): {nv['naive']['peak_mb']:.0f} vs ours {nv['ours']['peak_mb']:.0f} |", flush=True)
        for name, r in (("spconv 2.3.8 SubMConv3d (Native)", sp), ("ocnn 2.3.3 OctreeConv", oc)):
            if "missing" in r or r.get("failed"):
                print(f"| {name} | {threads} | - | - | - | {r.get('missing') or r.get('error')} |")
                continue
            note = ""
            if "wrong_of_5" in r:
                note = f"output wrong in {r['wrong_of_5']}/5 calls" if r["wrong_of_5"] else "output correct"
            print(f"| {name} | {threads} | {r['voxels']} | {_fmt(r['conv_s'])} | {r['conv_s'] / base:.2f} | {note} |",
                  flush=True)
        rows.append({"threads": threads, "ours": ours, "spconv": sp, "ocnn": oc, "naive": nv})
    out["baselines"] = rows


def section_kmap(a, out):
    _header(
        f"Kernel-map build vs one conv (3^3 64->64 fwd + bwd on the cached map, threads={a.threads})",
        ['grid', 'voxels', 'submanifold 3^3 map s', 'strided 2^3 map s', 'conv s', 'map / conv'],
    )
    rows = []
    for res in a.grids:
        r = run_case("kmap", res=res, channels=64, repeats=a.repeats, threads=a.threads)
        r["grid"] = res
        rows.append(r)
        print(f"| {res}^3 | {r['voxels']} | {_fmt(r['subm_kmap_s'], 4)} | {_fmt(r['down_kmap_s'], 4)} | "
              f"{_fmt(r['conv_s'], 4)} | {r['subm_kmap_s'] / r['conv_s']:.2f} |", flush=True)
    out["kmap"] = rows


def section_dataflow(a, out):
    _header(
        f"Dataflow: per-offset vs fused vs compiled, fwd + bwd (threads={a.threads}); "
        "the rule's pick in the last column",
        ['channels', 'layer', 'n_out', 'pair density', 'per-offset s', 'fused s', 'compiled s', 'faster',
         'rule picks'],
    )
    rows = []
    for c in a.flow_channels:
        r = run_case("dataflow", channels=c, repeats=a.repeats, threads=a.threads)
        for row in r["rows"]:
            times = {f: row[f"{f}_s"] for f in ("per_offset", "fused", "compiled") if row.get(f"{f}_s") is not None}
            faster = min(times, key=times.get)
            row.update(channels=c, faster=faster)
            rows.append(row)
            print(f"| {c} | {row['layer']} | {row['n_out']} | {row['density']} | {_fmt(row['per_offset_s'], 4)} | "
                  f"{_fmt(row['fused_s'], 4)} | {_fmt(row['compiled_s'], 4)} | {faster} | {row['rule']} |",
                  flush=True)
    agree = sum(r["faster"] == r["rule"] for r in rows)
    print(f"rule agrees with the faster dataflow on {agree}/{len(rows)} layers")
    out["dataflow"] = rows


SECTIONS = {"dense": section_dense, "gemm": section_gemm, "baselines": section_baselines, "kmap": section_kmap,
            "dataflow": section_dataflow}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="small grids and channels, one repeat (smoke run)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of: {', '.join(SECTIONS)}")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dense-channels", type=int, default=32)
    p.add_argument("--dense-cap-gb", type=float, default=6.0)
    p.add_argument(
        "--omp-wait-policy", default="default", choices=["PASSIVE", "ACTIVE", "default"],
        help="OMP_WAIT_POLICY for every case ('default' leaves the environment as it is; PASSIVE on a loaded "
        "machine, where threads spinning at OpenMP barriers burn the cores the other threads wait for)",
    )
    p.add_argument(
        "--gemm-dataflows", default="compiled,per_offset",
        help="gemm section: comma list of torch_conv dataflows to measure (compiled, per_offset, fused)",
    )
    p.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    a = p.parse_args()
    if a.worker:
        worker_main(json.loads(a.worker))
        return
    a.grids = [32, 64] if a.quick else [32, 64, 128, 256]
    a.big = 64 if a.quick else 256
    a.channels = [16, 64] if a.quick else [16, 32, 64, 128]
    a.flow_channels = [16] if a.quick else [16, 64]
    if a.quick:
        a.repeats = 1
    WAIT_POLICY[0] = a.omp_wait_policy
    out = {"threads": a.threads, "repeats": a.repeats, "omp_wait_policy": a.omp_wait_policy,
           "command": " ".join(sys.argv)}
    out["load_average_start"] = os.getloadavg()
    print(f"threads={a.threads} repeats={a.repeats} OMP_WAIT_POLICY={a.omp_wait_policy} "
          f"load average {os.getloadavg()[0]:.1f} (machine cores: {os.cpu_count()})")
    t0 = time.time()
    for name in a.sections.split(","):
        SECTIONS[name.strip()](a, out)
    out["load_average_end"] = os.getloadavg()
    print(f"\n(total {time.time() - t0:.0f} s; load average at the end {os.getloadavg()[0]:.1f})")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
