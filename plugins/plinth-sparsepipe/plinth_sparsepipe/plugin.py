"""Entry point: registers components by lazy "module:Class" reference (imported only when a pipeline uses one)."""

from __future__ import annotations

from plinth import hookimpl
