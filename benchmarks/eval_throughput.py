"""exact-match throughput: 256 prompts, batched vs one-at-a-time, in the same run (target >= 3x).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/eval_throughput.py [--prompts 256] [--batch-size 32]
        [--max-new-tokens 24] [--hidden 256] [--layers 4] [--model PATH_OR_ALIAS]

By default the model is a random Llama (char tokenizer, ~3M parameters with the defaults) built in a temporary
folder, so the run needs nothing but the venv; `--model smollm2-135m-instruct` measures the real 135M model
(slow on a CPU one-at-a-time). Both runs go through the real `exact-match` evaluator (task file, prompts,
extraction, samples, metrics.json); the ratio is one-at-a-time seconds / batched seconds. Greedy outputs of the
two runs are compared too (they should agree; left padding can flip a near-tie on a random model).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("PLINTH_PROGRESS", "off")


def random_llama(path: Path, hidden: int, layers: int) -> Path:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from plinth.lm.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64), num_key_value_heads=
                         max(1, hidden // 128), max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=None)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                               do_sample=False)
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def task_file(path: Path, n: int) -> Path:
    rng = random.Random(0)
    with open(path, "w") as fh:
        for _ in range(n):
            a, b = rng.randint(1, 999), rng.randint(1, 999)
            q = f"Sam has {a} marbles and finds {b} more. How many marbles does Sam have now?"
            fh.write(json.dumps({"question": q, "answer": f"{a} + {b} = {a + b}\n#### {a + b}"}) + "\n")
    return path


def run_once(model: Path, task: Path, root: Path, batch_size: int, max_new_tokens: int) -> tuple[float, list[str]]:
    from plinth import Artifact
    from plinth.testing import make_context
    from plinth_evals.exact_match import ExactMatch

    ctx = make_context(root, stage=f"bs{batch_size}", inputs={"models": [Artifact("model", model, {"label": "m"})]})
    evaluator = ExactMatch({"task_file": str(task), "batch_size": batch_size, "max_new_tokens": max_new_tokens,
                            "stop": []})
    start = time.perf_counter()
    out = evaluator.evaluate(ctx)
    seconds = time.perf_counter() - start
    rows = [json.loads(line) for line in (Path(out["samples"].path) / "m.jsonl").read_text().splitlines()]
    return seconds, [r["output"] for r in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--model", help="a model folder or alias instead of the random Llama")
    args = ap.parse_args()
    import torch

    with tempfile.TemporaryDirectory(prefix="plinth-bench-") as tmp:
        root = Path(tmp)
        if args.model:
            from plinth.lm.hf import resolve_model

            model = resolve_model(args.model)
            desc = str(args.model)
        else:
            model = random_llama(root / "model", args.hidden, args.layers)
            desc = f"random Llama hidden={args.hidden} layers={args.layers}"
        task = task_file(root / "task.jsonl", args.prompts)
        print(f"model: {desc}; {args.prompts} prompts, max_new_tokens={args.max_new_tokens}, "
              f"torch threads={torch.get_num_threads()}", flush=True)
        run_once(model, task_file(root / "warm.jsonl", 4), root / "warm", 4, 4)  # load caches, JIT paths
        t_batched, out_batched = run_once(model, task, root / "batched", args.batch_size, args.max_new_tokens)
        print(f"batched (batch_size={args.batch_size}): {t_batched:7.2f} s  "
              f"{args.prompts / t_batched:7.1f} prompts/s", flush=True)
        t_single, out_single = run_once(model, task, root / "single", 1, args.max_new_tokens)
        print(f"one-at-a-time (batch_size=1):  {t_single:7.2f} s  {args.prompts / t_single:7.1f} prompts/s")
        same = sum(a == b for a, b in zip(out_batched, out_single))
        ratio = t_single / t_batched
        print(f"speed-up batched / one-at-a-time: {ratio:.2f}x (target >= 3x); identical outputs: "
              f"{same}/{args.prompts}")
    return 0 if ratio >= 3.0 else 1


if __name__ == "__main__":
    sys.exit(main())
