"""Entry point: registers the `sft` trainer by lazy reference (imported only when a pipeline uses it)."""

from plinth import hookimpl


@hookimpl
def plinth_register_trainers(register):
    register("sft", "plinth_sft.sft_trainer:SFTTrainer")
