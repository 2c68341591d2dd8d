"""What does plinth cost on top of trl? The same model, data and steps through `plinth run` and through a bare trl
script, in one run, alternating, each in its own fresh process.

    python benchmarks/trainer_overhead.py                      # a random Qwen2 (~13M parameters), 40 steps
    python benchmarks/trainer_overhead.py --model smollm2-135m-instruct --steps 8 --batch 4

    python benchmarks/trainer_overhead.py --quickstart           # examples/quickstart.toml's SFT and KTO settings

Prints, for SFT and KTO: training throughput (samples/s over trl's own train loop, `train_samples_per_second`),
ratio plinth / bare (target >= 0.97); model FLOP utilisation (MFU): achieved training FLOP/s — 6 x parameters x
tokens plus attention (12 x layers x hidden x sequence per token; a KTO step adds a forward of the KL batch,
2 x parameters per token) — over the machine's fp32 GEMM peak, `torch.mm` of 2048 x 2048 with the same thread
count, measured in the same run; CPU seconds of the whole process (user + system: the steadier figure on a
shared machine, startup included); peak resident memory of the process
(ru_maxrss) and, on a GPU, peak allocated GPU memory, ratio plinth / bare (target <= 1.05). Both sides use the same
precision (plinth's "auto": bf16 mixed precision on GPUs that have it, fp32 on the CPU). Median over `--repeats` alternating pairs. Both sides write the
same checkpoints (plinth needs them for resume) and the final model.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

BARE = textwrap.dedent(
    '''
    """A bare trl script, as a user would write it without plinth."""
    import json, sys, time
    import torch, trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    method, model_path, data_path, out, steps, batch, max_length, lr = sys.argv[1:9]
    steps, batch, max_length, lr = int(steps), int(batch), int(max_length), float(lr)
    rows = [json.loads(l) for l in open(data_path)]
    for r in rows:
        if isinstance(r["prompt"], str):
            r["prompt"] = [{"role": "user", "content": r["prompt"]}]
            r["completion"] = [{"role": "assistant", "content": r["completion"]}]
    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    gpu = torch.cuda.is_available()
    bf16 = gpu and torch.cuda.is_bf16_supported()  # the usual choice: bf16 mixed precision where the GPU has it
    common = dict(output_dir=out + "/checkpoints", learning_rate=lr, lr_scheduler_type="constant", max_steps=steps,
                  per_device_train_batch_size=batch, seed=0, data_seed=0, logging_steps=10, save_steps=steps,
                  save_strategy="steps", report_to="none", use_cpu=not gpu, bf16=bf16, fp16=gpu and not bf16,
                  optim="adamw_torch",
                  activation_checkpointing=False, disable_tqdm=True, max_length=max_length, remove_unused_columns=False)
    if method == "sft":
        args = trl.SFTConfig(**common)
        trainer = trl.SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    else:
        args = trl.KTOConfig(beta=0.1, **common)
        trainer = trl.KTOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    result = trainer.train()
    trainer.save_model(out + "/model")
    metrics = dict(result.metrics)
    if gpu:
        metrics["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(metrics))
    '''
)

PIPELINE = """
[run]
name = "overhead"

[stages.train]
slot = "trainer"
component = "{method}"
model = "{model}"
learning_rate = {lr}
lr_scheduler = "constant"
max_steps = {steps}
batch_size = {batch}
max_length = {max_length}
logging_steps = 10
save_steps = {steps}
seed = 0
shuffle_kto = 0
inputs = {{ dataset = {{ path = "{data}", kind = "dataset" }} }}
"""


def make_model(root: Path, spec: str) -> str:
    if spec != "random":
        from plinth.lm.hf import resolve_model

        return str(resolve_model(spec))
    from plinth.lm.testing import tiny_causal_lm

    return str(tiny_causal_lm(root / "model", hidden_size=512, num_layers=4))


def make_data(root: Path, method: str, n: int = 256, quickstart: bool = False) -> Path:
    rng = random.Random(0)
    rows = []
    for i in range(n):
        good = i % 2 == 0
        if quickstart:  # the quickstart's rows: 2-term arithmetic of 1-2 digit numbers, short system prompt
            a, b = rng.randint(-99, 99), rng.randint(-99, 99)
            prompt = [{"role": "system", "content": "Answer briefly."},
                      {"role": "user", "content": f"Calculate {a} + {b}."}]
            answer = f"Answer: {a + b if good or method == 'sft' else a + b + 7}"
            row = {"prompt": prompt, "completion": [{"role": "assistant", "content": answer}]}
            rows.append(row if method == "sft" else {**row, "label": good})
            continue
        a, b = rng.randint(10, 999), rng.randint(10, 999)
        prompt = f"What is {a} + {b}? Answer with the number."
        if method == "sft":
            rows.append({"prompt": prompt, "completion": f"{a} + {b} = {a + b}."})
        else:
            rows.append({"prompt": prompt, "completion": f"{a} + {b} = {a + b if good else a + b + 7}.",
                         "label": good})
    path = root / f"{method}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def gemm_peak(n: int = 2048, repeats: int = 5) -> float:
    """The machine's fp32 matrix-multiply rate (FLOP/s) with torch's current thread count: best of `repeats`."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def flops_per_sample(model: str, data: Path, method: str, batch: int, max_length: int) -> dict[str, float]:
    """Training FLOPs of one sample: 6·N per token plus attention 12·L·d·T (PaLM's count), over the tokens the
    trainer really sees (chat template applied, capped at max_length); a KTO sample also runs a forward of its KL
    pair (2·N + 4·L·d·T per token). `padded` is the same with each batch padded to its longest row (file order)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    cfg = AutoConfig.from_pretrained(model)
    with __import__("torch").device("meta"):
        n_params = sum(p.numel() for p in AutoModelForCausalLM.from_config(cfg).parameters())
    tok = AutoTokenizer.from_pretrained(model)
    lengths = []
    for line in data.read_text().splitlines():
        r = json.loads(line)
        msgs = r["prompt"] + r["completion"] if isinstance(r["prompt"], list) else [
            {"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]
        lengths.append(min(len(tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]),
                           max_length))
    L, d = cfg.num_hidden_layers, cfg.hidden_size

    def cost(tokens: int, seq: int) -> float:
        train = (6 * n_params + 12 * L * d * seq) * tokens
        kl = (2 * n_params + 4 * L * d * seq) * tokens if method == "kto" else 0.0
        return train + kl

    real = sum(cost(n, n) for n in lengths) / len(lengths)
    padded = 0.0
    for i in range(0, len(lengths) - batch + 1, batch):
        width = max(lengths[i:i + batch])
        padded += batch * cost(width, width)
    padded /= (len(lengths) // batch) * batch
    return {"params": n_params, "mean_tokens": sum(lengths) / len(lengths), "real": real, "padded": padded}


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str, float]:
    """Run `cmd`; return (wall seconds, peak RSS in MiB, output, CPU seconds user + system). CPU time is the
    steadier cost figure on a machine shared with other work, where wall-clock throughput swings."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{text[-3000:]}")
    return wall, usage.ru_maxrss // 1024, text, usage.ru_utime + usage.ru_stime


def run_bare(root: Path, method: str, model: str, data: Path, a: argparse.Namespace, env, i: int) -> dict:
    script = root / "bare.py"
    script.write_text(BARE)
    out = root / f"bare-{method}-{i}"
    wall, rss, text, cpu = measure([sys.executable, str(script), method, model, str(data), str(out), str(a.steps),
                               str(a.batch), str(a.max_length), str(a.lr)], env)
    line = next(l for l in text.splitlines() if l.startswith("RESULT "))
    metrics = json.loads(line[len("RESULT "):])
    return {"sps": metrics["train_samples_per_second"], "wall": wall, "rss": rss, "cpu": cpu,
            "gpu": metrics.get("peak_gpu_memory_mib", 0.0)}


def run_plinth(root: Path, method: str, model: str, data: Path, a: argparse.Namespace, env, i: int) -> dict:
    pipe = root / f"{method}.toml"
    text = PIPELINE.format(method=method, model=model, lr=a.lr, steps=a.steps, batch=a.batch,
                           max_length=a.max_length, data=data)
    # same data order as the bare script: plinth's KTO shuffles rows once by default; keep them in file order
    text = text.replace("shuffle_kto = 0\n", "shuffle = false\n" if method == "kto" else "")
    pipe.write_text(text)
    run_dir = root / f"plinth-{method}-{i}"
    plinth = str(Path(sys.executable).parent / "plinth")
    wall, rss, _, cpu = measure([plinth, "run", str(pipe), "--run-dir", str(run_dir)], env)
    records = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    sps = next(r["train_samples_per_second"] for r in records if "train_samples_per_second" in r)
    summary = json.loads((run_dir / "stages" / "train" / "out" / "metrics.json").read_text())
    return {"sps": sps, "wall": wall, "rss": rss, "cpu": cpu, "gpu": summary.get("peak_gpu_memory_mib", 0.0)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="random", help='"random" (a ~13M Qwen2) or a model alias/folder')
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--methods", default="sft,kto")
    p.add_argument("--quickstart", action="store_true",
                   help="examples/quickstart.toml's settings: SmolLM2-135M, batch 8, its arithmetic rows, lr as there")
    a = p.parse_args()
    if a.quickstart:
        a.model, a.batch, a.max_length, a.lr = "smollm2-135m-instruct", 8, 64, 2e-5
        a.steps = min(a.steps, 12)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PLINTH_PROGRESS": "off",
           "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory(prefix="plinth-overhead-") as tmp:
        root = Path(tmp)
        model = make_model(root, a.model)
        print(f"model {a.model} | {a.steps} steps x batch {a.batch} x max_length {a.max_length} | "
              f"{a.repeats} alternating repeats | {os.cpu_count()} CPUs")
        rows = []
        import torch

        peak = gemm_peak()
        print(f"fp32 GEMM peak (torch.mm 2048^3, {torch.get_num_threads()} threads): {peak / 1e9:.1f} GFLOP/s")
        mfu_rows = []
        for method in a.methods.split(","):
            data = make_data(root, method, quickstart=a.quickstart)
            fl = flops_per_sample(model, data, method, a.batch, a.max_length)
            bare, plin = [], []
            for i in range(a.repeats):
                order = [("bare", run_bare), ("plinth", run_plinth)]
                if i % 2:
                    order.reverse()
                for name, fn in order:
                    res = fn(root, method, model, data, a, env, i)
                    (bare if name == "bare" else plin).append(res)
            med = lambda xs, k: statistics.median(x[k] for x in xs)  # noqa: E731
            rows.append((method, med(bare, "sps"), med(plin, "sps"), med(bare, "cpu"), med(plin, "cpu"),
                         med(bare, "rss"), med(plin, "rss"), med(bare, "gpu"), med(plin, "gpu")))
            sps = med(plin, "sps")
            mfu_rows.append((method, fl["params"], fl["mean_tokens"], sps * fl["real"] / 1e9, sps * fl["real"] / peak,
                             fl["padded"] / fl["real"], sps * fl["padded"] / peak))
        print(f"{'method':6} {'bare samp/s':>11} {'plinth':>8} {'ratio':>6}  {'bare CPU s':>10} {'plinth':>7} {'ratio':>6}  "
              f"{'bare RSS MiB':>12} {'plinth':>7} {'ratio':>6}  {'bare GPU MiB':>12} {'plinth':>7} {'ratio':>6}")
        for m, bs, ps, bw, pw, br, pr, bg, pg in rows:
            gpu = f"{bg:12.0f} {pg:7.0f} {pg / bg:6.3f}" if bg else f"{'-':>12} {'-':>7} {'-':>6}"
            print(f"{m:6} {bs:11.2f} {ps:8.2f} {ps / bs:6.3f}  {bw:10.1f} {pw:7.1f} {pw / bw:6.3f}  {br:12.0f} {pr:7.0f} {pr / br:6.3f}  "
                  + gpu)
        print("targets: throughput ratio >= 0.97, peak-memory ratio <= 1.05 (GPU memory on a GPU, else process RSS)")
        print(f"\n{'method':6} {'params':>10} {'tokens/row':>10} {'GFLOP/s':>8} {'MFU':>6}  {'padded/real':>11} "
              f"{'MFU incl. padding':>17}")
        for m, n_params, toks, gflops, mfu, pad, mfu_pad in mfu_rows:
            print(f"{m:6} {n_params / 1e6:9.1f}M {toks:10.1f} {gflops:8.1f} {mfu:6.3f}  {pad:11.3f} {mfu_pad:17.3f}")
        print("MFU = plinth's training FLOP/s (real tokens) / the fp32 GEMM peak above; 'incl. padding' counts the "
              "padded tokens the trainer also computes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
