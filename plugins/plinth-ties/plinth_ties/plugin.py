"""Entry point: registers the mergers. Imports only pydantic configs and thin classes (no torch)."""

from __future__ import annotations

from plinth import hookimpl

from .mergers import MERGERS


@hookimpl
def plinth_register_mergers(register):  # type: ignore[no-untyped-def]
    for name, cls in MERGERS.items():
        register(name, cls)
