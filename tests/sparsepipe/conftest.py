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


@pytest.fixture(scope="session", autouse=True)
def compiled_sparse_kernel():
    """Build (or load) the compiled sparse conv kernel once, before any test: a fresh extensions cache costs one
    ~20 s compile, which otherwise lands inside whichever test convolves first - possibly in the rank processes of a
    pipeline test with a timeout. Under PLINTH_SPARSE_KERNEL=torch nothing is built."""
    from plinth_sparsepipe.sparse.backends import compiled

    if compiled.mode() != "torch":
        compiled.kernel()
    yield
