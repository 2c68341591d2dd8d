"""Fixtures for plinth-evals tests: tiny hand-set models with known outputs, and task files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plinth import Artifact
from plinth.testing import make_context

from .bigram import bigram_lm


@pytest.fixture(scope="session")
def answer42(tmp_path_factory) -> Path:
    """Answers '42' to any prompt ending in ':', ' ' or a newline (chat prompts end in 'assistant\\n')."""
    return bigram_lm(tmp_path_factory.mktemp("m42") / "model", {":": " ", "\n": "4", " ": "4", "4": "2"})


@pytest.fixture(scope="session")
def answer4(tmp_path_factory) -> Path:
    """Answers '4' (a shorter answer than answer42)."""
    return bigram_lm(tmp_path_factory.mktemp("m4") / "model", {":": " ", "\n": "4", " ": "4"})


@pytest.fixture(scope="session")
def answer_x(tmp_path_factory) -> Path:
    """Answers 'x' — nothing a number extractor can parse."""
    return bigram_lm(tmp_path_factory.mktemp("mx") / "model", {":": " ", "\n": "x", " ": "x"})


@pytest.fixture(scope="session")
def picks_b(tmp_path_factory) -> Path:
    """Always prefers option letter B after 'Answer:' (bigram ' ' -> 'B', ':' -> ' ')."""
    return bigram_lm(tmp_path_factory.mktemp("mb") / "model", {":": " ", " ": "B", "\n": "B"})


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def model_art(path: Path, label: str | None = None, stage: str | None = None) -> Artifact:
    meta = {}
    if label:
        meta["label"] = label
    if stage:
        meta.update(stage=stage, output="model")
    return Artifact("model", Path(path), meta)


def context(tmp_path: Path, models: list[Artifact], baseline: Artifact | None = None, stage: str = "eval"):
    inputs: dict = {"models": models}
    if baseline is not None:
        inputs["baseline"] = baseline
    return make_context(tmp_path, stage=stage, inputs=inputs)


def read_metrics(out: dict) -> dict:
    return json.loads(Path(out["metrics"].path).read_text())


def read_samples(out: dict, label: str) -> list[dict]:
    path = Path(out["samples"].path) / f"{label}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]
