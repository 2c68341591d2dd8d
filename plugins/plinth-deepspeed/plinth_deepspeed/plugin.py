"""Entry point: registers the `deepspeed` strategy."""

from plinth import hookimpl


@hookimpl
def plinth_register_strategies(register):
    from .strategy import DeepSpeedStrategy

    register("deepspeed", DeepSpeedStrategy)
