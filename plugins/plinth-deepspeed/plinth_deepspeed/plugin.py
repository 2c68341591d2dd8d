"""Entry point: registers the `deepspeed` strategy by lazy reference (imported only when a pipeline uses it)."""

from plinth import hookimpl


@hookimpl
def plinth_register_strategies(register):
    register("deepspeed", "plinth_deepspeed.strategy:DeepSpeedStrategy")
