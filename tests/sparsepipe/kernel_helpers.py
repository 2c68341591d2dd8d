"""The compiled sparse conv kernel in tests: required where a test is about it."""

from __future__ import annotations

import pytest


def require_compiled():
    """The compiled kernel, built if needed; a failed build fails the test (it does not fall back), except under
    PLINTH_SPARSE_KERNEL=torch (this run has no compiled path) or with no C++ compiler at all (skipped)."""
    from plinth_sparsepipe.sparse.backends import compiled

    if compiled.mode() == "torch":
        pytest.skip("PLINTH_SPARSE_KERNEL=torch: no compiled kernel in this run")
    if compiled.kernel() is None:
        if not compiled.compiler_found():
            pytest.skip(f"no C++ compiler, so no compiled kernel: {compiled.error()}")
        pytest.fail(f"compiled sparse conv kernel did not build: {compiled.error()}")
