"""Entry point: registers the `teacher` generator and the `hf` / `openai` chat back ends."""

from __future__ import annotations

from plinth import hookimpl


@hookimpl
def plinth_register_generators(register):
    from .generator import TeacherGenerator

    register("teacher", TeacherGenerator)


@hookimpl
def plinth_register_chat_backends(register):
    from .hf_backend import HFChat
    from .openai_backend import OpenAIChat

    register("hf", HFChat)
    register("openai", OpenAIChat)
