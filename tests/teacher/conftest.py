"""Fixtures for plinth-teacher tests: a tiny local model and a loopback chat-completions server."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    from plinth.lm.testing import tiny_causal_lm

    return tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def rule_server():
    from plinth_teacher.testing_server import ChatServer, RulePolicy

    with ChatServer(RulePolicy()) as srv:
        yield srv


@pytest.fixture
def ctx(tmp_path):
    from plinth.testing import make_context

    return make_context(tmp_path / "run", stage="data")

