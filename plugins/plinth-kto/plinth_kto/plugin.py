"""Entry point: registers the `kto` trainer."""

from plinth import hookimpl


@hookimpl
def plinth_register_trainers(register):
    from .kto_trainer import KTOTrainer

    register("kto", KTOTrainer)
