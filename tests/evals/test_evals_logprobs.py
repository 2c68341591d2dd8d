"""Log-likelihood scoring from target positions only: the same numbers as a full-vocabulary log_softmax (on random
logits and through a real tiny model), and a fraction of its peak memory at Qwen's vocabulary size."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import pytest

from plinth_evals.lm import EvalModel, target_logprobs

ROOT = Path(__file__).resolve().parents[2]


def reference(logits, targets):
    """The old scorer's arithmetic: log_softmax over the whole vocabulary, then gather."""
    import torch

    lp = torch.log_softmax(logits.float(), dim=-1)
    return lp.gather(1, targets[:, None]).squeeze(1), lp.argmax(-1) == targets


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("chunk_elements", [1 << 24, 300, 1])  # one chunk, several, one position at a time
def test_target_logprobs_equal_full_log_softmax(dtype, chunk_elements):
    import torch

    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(37, 101, generator=g) * 4).to(getattr(torch, dtype))
    targets = torch.randint(0, 101, (37,), generator=g)
    targets[:5] = logits[:5].float().argmax(-1)  # some positions where the target is the argmax
    want_lp, want_greedy = reference(logits, targets)
    lp, greedy = target_logprobs(logits, targets, chunk_elements=chunk_elements)
    assert torch.allclose(lp, want_lp, atol=1e-5, rtol=0)
    assert torch.equal(greedy, want_greedy) and greedy[:5].all()


def test_score_ids_equals_full_vocabulary_reference_on_a_tiny_model(tmp_path):
    import torch

    from plinth.lm.testing import tiny_causal_lm

    model = EvalModel(tiny_causal_lm(tmp_path / "m", hidden_size=32, seed=3), batch_size=3)
    g = torch.Generator().manual_seed(1)
    vocab = model.model.config.vocab_size
    encoded = []
    for length, n_ctx in [(12, 3), (30, 25), (7, 1), (19, 10), (5, 4)]:  # ragged, right-padded batches
        encoded.append((torch.randint(0, vocab, (length,), generator=g).tolist(), n_ctx))
    kept = []
    forward = model.model.forward

    @functools.wraps(forward)
    def spy(*args, **kwargs):
        out = forward(*args, **kwargs)
        kept.append((kwargs["input_ids"].shape[1], out.logits.shape[1]))
        return out

    model.model.forward = spy
    got = model.score_ids(encoded)
    model.model.forward = forward
    assert any(n_logits < width for width, n_logits in kept)  # only positions from the first scored one
    for (seq, n_ctx), (total, n, greedy) in zip(encoded, got):
        with torch.inference_mode():
            logits = model.model(input_ids=torch.tensor([seq])).logits[0]
        lp, ok = reference(logits[n_ctx - 1 : len(seq) - 1], torch.tensor(seq[n_ctx:]))
        assert total == pytest.approx(lp.sum().item(), abs=1e-4) and n == len(seq) - n_ctx
        assert greedy == bool(ok.all())


def test_peak_memory_is_a_fraction_of_full_log_softmax():
    """At Qwen's vocabulary (151,936) and 512 positions: the full path allocates a float32 copy and a float32
    log_softmax (~600 MiB); the new one two 64 MiB chunks. Each is measured in its own process."""
    spec = importlib.util.spec_from_file_location("logprob_memory", ROOT / "benchmarks" / "logprob_memory.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    full = bench.measure("full", 512, 151936)
    target = bench.measure("target", 512, 151936)
    mib = 1 << 20
    assert full["peak_extra_bytes"] > 500 * mib, (full, target)
    assert target["peak_extra_bytes"] < 200 * mib
    assert full["peak_extra_bytes"] / target["peak_extra_bytes"] > 3
    assert target["total"] == pytest.approx(full["total"], rel=1e-5) and target["greedy"] == full["greedy"]
