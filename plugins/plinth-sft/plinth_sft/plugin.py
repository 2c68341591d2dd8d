"""Entry point: registers the `sft` trainer."""

from plinth import hookimpl


@hookimpl
def plinth_register_trainers(register):
    from .sft_trainer import SFTTrainer

    register("sft", SFTTrainer)
