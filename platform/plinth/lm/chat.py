"""Chat back ends: one small interface for "send messages to a model, get text back".

Plugins register back ends with the `plinth_register_chat_backends` hook (e.g. plinth-teacher registers `hf` and
`openai`). Any component gets one with `plinth.lm.chat.make_backend(name, config)` — the judge evaluator and the
teacher generator share back ends this way without importing each other.

`CachedChat` wraps any back end with a disk cache keyed by (back end identity, messages, sampling parameters):
a killed generation resumes without paying for finished calls again, and a re-run with the same config is free.
The identity must name everything that decides the answers besides messages and sampling: for a local model its
content (a retrained model is written to the same path), chat template, system prompt and dtype — not its path.
A back end that fails part-way raises `ChatError` carrying the answers it did get (`partial`), which the cache
keeps before passing the error on.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any, ClassVar

from ..components import ComponentConfig
from ..errors import PlinthError
from ..rundir import open_atomic

Messages = list[dict[str, str]]


class ChatError(PlinthError):
    """A chat back end gave up (down, rate-limited, garbage) after its retries.

    `backend` names it (never a secret), `last_response` is the last thing it got back (status and body, cut
    short), `partial` maps conversation index -> samples for the conversations that did finish."""

    def __init__(
        self,
        message: str,
        *,
        backend: str = "",
        last_response: str | None = None,
        partial: dict[int, list[str]] | None = None,
    ):
        super().__init__(message)
        self.backend = backend
        self.last_response = last_response
        self.partial = dict(partial or {})


class ChatBackend:
    """A model that answers chat messages. Subclasses set `Config` and implement `chat`."""

    Config: ClassVar[type[ComponentConfig]] = ComponentConfig

    def __init__(self, config: ComponentConfig | dict[str, Any] | None = None):
        if config is None:
            config = {}
        if isinstance(config, dict):
            config = self.Config.model_validate(config)
        self.config = config

    @property
    def identity(self) -> str:
        """A stable string naming back end and model, part of every cache key. Back ends override it with what
        decides their answers (the hf back end: a hash of the model's files, template, system prompt, dtype)."""
        return f"{type(self).__name__}:{getattr(self.config, 'model', '')}"

    def chat(
        self,
        conversations: list[Messages],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 256,
        seed: int | None = None,
    ) -> list[list[str]]:
        """Answer each conversation with `n` samples; returns one list of `n` strings per conversation.

        On failure after retries raise `ChatError`, with `partial` holding the conversations that finished."""
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (model weights, HTTP sessions)."""

    def __enter__(self) -> "ChatBackend":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def cache_key(identity: str, messages: Messages, **sampling: Any) -> str:
    """sha256 of (back end identity, messages, sampling parameters) in a canonical JSON form."""
    blob = json.dumps({"backend": identity, "messages": messages, "sampling": sampling}, sort_keys=True,
                      ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CachedChat(ChatBackend):
    """Any back end plus a disk cache: one small JSON file per call under `cache_dir/<2 hex>/<key>.json`.

    Files are written atomically (temp file + rename) as soon as each answer exists, so a process killed at any
    moment leaves only whole entries. `hits` and `misses` count conversations served from disk or the model."""

    def __init__(self, inner: ChatBackend, cache_dir: str | Path):
        self.inner = inner
        self.config = inner.config
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    @property
    def identity(self) -> str:
        return self.inner.identity

    def _path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> list[str] | None:
        path = self._path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        samples = data.get("samples") if isinstance(data, dict) else None
        return samples if isinstance(samples, list) else None

    def put(self, key: str, samples: list[str]) -> None:
        path = self._path(key)
        with open_atomic(path) as fh:
            json.dump({"backend": self.identity, "samples": samples}, fh, ensure_ascii=False)

    def chat(
        self,
        conversations: list[Messages],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 256,
        seed: int | None = None,
    ) -> list[list[str]]:
        sampling = {"n": n, "temperature": temperature, "max_tokens": max_tokens, "seed": seed}
        keys = [cache_key(self.identity, conv, **sampling) for conv in conversations]
        results: list[list[str] | None] = [self.get(k) for k in keys]
        missing = [i for i, r in enumerate(results) if r is None]
        with self._lock:
            self.hits += len(conversations) - len(missing)
            self.misses += len(missing)
        if missing:
            try:
                answers = self.inner.chat([conversations[i] for i in missing], **sampling)
            except ChatError as exc:
                # keep what finished, and report indices in the caller's numbering
                mapped = {}
                for j, samples in exc.partial.items():
                    self.put(keys[missing[j]], samples)
                    mapped[missing[j]] = samples
                exc.partial = mapped
                raise
            for i, samples in zip(missing, answers):
                self.put(keys[i], samples)
                results[i] = samples
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self.inner.close()


def make_backend(name: str, config: dict[str, Any] | None = None, cache_dir: str | Path | None = None) -> ChatBackend:
    """Build a registered chat back end by name; with `cache_dir`, wrap it in a `CachedChat`."""
    from ..plugins import load_plugins

    cls = load_plugins().chat_backend(name)
    backend = cls(config or {})
    return CachedChat(backend, cache_dir) if cache_dir is not None else backend
