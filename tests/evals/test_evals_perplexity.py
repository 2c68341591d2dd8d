"""perplexity: equals the closed form on a bigram model, and windows cover every token exactly once."""

from __future__ import annotations

import math

import pytest

from plinth_evals.perplexity import Perplexity

from .bigram import bigram_lm
from .conftest import context, model_art, read_metrics, read_samples, write_jsonl


@pytest.fixture(scope="module")
def alternator(tmp_path_factory):
    return bigram_lm(tmp_path_factory.mktemp("alt") / "model", {"a": "b", "b": "a"}, strength=0.5)


def expected_ppl(model_path) -> float:
    """Every token is the predicted one: p = e^L / (e^L + V - 1), L = strength * sqrt(hidden)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(str(model_path))
    logit = 0.5 * math.sqrt(cfg.hidden_size)
    p = math.exp(logit) / (math.exp(logit) + cfg.vocab_size - 1)
    return 1.0 / p


def test_matches_closed_form_and_windows(tmp_path, alternator):
    docs = [{"text": "ab" * 20}, {"text": "ba" * 7}]
    task = write_jsonl(tmp_path / "held_out.jsonl", docs)
    results = []
    for max_length, ctx_tokens in [(512, 64), (5, 1), (7, 3)]:
        out = Perplexity({"task_file": str(task), "max_length": max_length, "context": ctx_tokens}).evaluate(
            context(tmp_path / f"w{max_length}", [model_art(alternator, label="alt")]))
        m = read_metrics(out)["models"]["alt"]["metrics"]["held_out/perplexity"]
        results.append(m["value"])
        assert m["tokens"] == 39 + 13 and m["n"] == 2 and m["higher_is_better"] is False
        assert m["ci_low"] <= m["value"] <= m["ci_high"]
        assert [r["tokens"] for r in read_samples(out, "alt")] == [39, 13]
    assert results == pytest.approx([expected_ppl(alternator)] * 3, rel=1e-4)


def test_text_file_and_worse_text(tmp_path, alternator):
    task = tmp_path / "doc.txt"
    task.write_text("abababab\n\naaaaaaaa\n")
    out = Perplexity({"task_file": str(task)}).evaluate(context(tmp_path, [model_art(alternator, label="alt")]))
    rows = read_samples(out, "alt")
    assert rows[0]["perplexity"] == pytest.approx(expected_ppl(alternator), rel=1e-4)
    assert rows[1]["perplexity"] > 10 * rows[0]["perplexity"]
