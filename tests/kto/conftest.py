"""Tiny real inputs for the KTO tests: a ~100k-parameter Qwen2 with a character tokenizer (built offline, ms)."""

from __future__ import annotations

from pathlib import Path

import pytest

from plinth.lm.testing import tiny_causal_lm


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return tiny_causal_lm(tmp_path_factory.mktemp("models") / "tiny", hidden_size=64)
