"""Chat back ends: one small interface for "send messages to a model, get text back".

Plugins register back ends with the `plinth_register_chat_backends` hook (e.g. plinth-teacher registers `hf` and
`openai`). Any component gets one with `plinth.chat.make_backend(name, config)` — the judge evaluator and the
teacher generator share back ends this way without importing each other.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .components import ComponentConfig

Messages = list[dict[str, str]]


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
        """A stable string naming back end and model, part of every cache key."""
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
        """Answer each conversation with `n` samples; returns one list of `n` strings per conversation."""
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (model weights, HTTP sessions)."""


def make_backend(name: str, config: dict[str, Any] | None = None) -> ChatBackend:
    """Build a registered chat back end by name."""
    from .plugins import load_plugins

    cls = load_plugins().chat_backend(name)
    return cls(config or {})
