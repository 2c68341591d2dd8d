"""Fixtures shared by the sparsepipe tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_thread():
    """torch on one thread for the test (small sparse ops on a busy 2-core machine run several times faster so),
    restored afterwards so other tests keep their setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
