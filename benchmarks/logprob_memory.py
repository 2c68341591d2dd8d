"""Peak extra memory of log-likelihood scoring: full-vocabulary log_softmax (the old scorer) vs
`plinth_evals.lm.target_logprobs` (target positions only, chunked logsumexp).

    .venv/bin/python benchmarks/logprob_memory.py [--positions 1024] [--vocab 151936]

Each method runs in a fresh CPU process on bf16 logits [positions, vocab] (what a bf16 model returns); the
figure is the process's peak resident memory during the call (VmHWM, reset just before it through
/proc/self/clear_refs) minus its resident memory then, so it counts every temporary the method allocates. Qwen's vocabulary is 151,936;
batch 16 x 2048 is 32,768 positions, where the old path needs 2 x 4 bytes x positions x vocab ≈ 40 GB on top of
the logits (a float32 copy, then the log_softmax output) and the new one two 64 MiB chunks (the float32
slice and logsumexp's temporary).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


def _reset_peak() -> None:
    """Set the process's peak resident memory (VmHWM) to its current size (Linux >= 4.0), so the peak read
    after the call is the call's own, not that of building the logits."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def child(method: str, positions: int, vocab: int) -> dict:
    import torch

    torch.manual_seed(0)
    logits = torch.empty(positions, vocab, dtype=torch.bfloat16)
    for a in range(0, positions, 64):  # filled in slices: no float32 temporary of the whole tensor
        logits[a : a + 64] = torch.randn(min(64, positions - a), vocab)
    targets = torch.randint(0, vocab, (positions,))
    _reset_peak()
    before = _status_bytes("VmRSS")
    if method == "full":
        lp = torch.log_softmax(logits.float(), dim=-1)
        total = lp.gather(1, targets[:, None]).sum().item()
        greedy = bool((lp.argmax(-1) == targets).all().item())
    else:
        from plinth_evals.lm import target_logprobs

        lp, ok = target_logprobs(logits, targets)
        total, greedy = lp.sum().item(), bool(ok.all().item())
    peak = _status_bytes("VmHWM")
    return {"method": method, "positions": positions, "vocab": vocab, "peak_extra_bytes": max(0, peak - before),
            "logits_bytes": logits.numel() * logits.element_size(), "total": total, "greedy": greedy}


def measure(method: str, positions: int, vocab: int) -> dict:
    """Run one method in a fresh process and return its figures."""
    proc = subprocess.run([sys.executable, __file__, "--child", method, "--positions", str(positions),
                           "--vocab", str(vocab)], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--child", choices=["full", "target"])
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.positions, args.vocab)))
        return
    full, target = (measure(m, args.positions, args.vocab) for m in ("full", "target"))
    mib = 1 << 20
    print(f"logits [{args.positions} x {args.vocab}] bf16: {full['logits_bytes'] / mib:.0f} MiB")
    print(f"full log_softmax: peak extra {full['peak_extra_bytes'] / mib:.0f} MiB")
    print(f"target positions: peak extra {target['peak_extra_bytes'] / mib:.0f} MiB")
    print(f"ratio: {full['peak_extra_bytes'] / max(1, target['peak_extra_bytes']):.1f}x; "
          f"sums {full['total']:.3f} vs {target['total']:.3f}")


if __name__ == "__main__":
    main()
