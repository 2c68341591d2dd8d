"""Entry point: registers the `kto` trainer by lazy reference (imported only when a pipeline uses it)."""

from plinth import hookimpl


@hookimpl
def plinth_register_trainers(register):
    register("kto", "plinth_kto.kto_trainer:KTOTrainer")
