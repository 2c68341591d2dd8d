"""Entry point: registers the `teacher` generator and the `hf` / `openai` chat back ends.

Lazy "module:Class" references: nothing below is imported until a pipeline or a judge uses it."""

from __future__ import annotations

from plinth import hookimpl


@hookimpl
def plinth_register_generators(register):
    register("teacher", "plinth_teacher.generator:TeacherGenerator")


@hookimpl
def plinth_register_chat_backends(register):
    register("hf", "plinth_teacher.hf_backend:HFChat")
    register("openai", "plinth_teacher.openai_backend:OpenAIChat")
