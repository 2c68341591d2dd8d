"""The five component slots and the one method each runs.

A component is a class with a pydantic `Config` (its parameters, validated before any stage runs) and the
method its slot defines. The runner builds `Component(config)` and calls that method with a `StageContext`;
the method returns its output artifacts by name. Nothing here imports torch or transformers.

    class MyTrainer(Trainer):
        class Config(ComponentConfig):
            learning_rate: float = 1e-5

        def train(self, ctx: StageContext) -> dict[str, Artifact]:
            ...
            return {"model": Artifact("model", ctx.output_dir / "model")}
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Collection

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .fileparams import file_field  # noqa: F401  (re-exported: components declare file parameters with it)

if TYPE_CHECKING:
    from .artifacts import Artifact
    from .context import StageContext


def _positive_range(value: tuple[float, float]) -> tuple[float, float]:
    if not 0 < value[0] <= value[1]:
        raise ValueError(f"{list(value)}: a range [lo, hi] needs 0 < lo <= hi")
    return value


#: a (lo, hi) range of positive numbers, e.g. a random scale drawn from U(lo, hi)
PositiveRange = Annotated[tuple[float, float], AfterValidator(_positive_range)]
#: a count of at least one (channels, blocks, ...)
Count = Annotated[int, Field(ge=1)]


class ComponentConfig(BaseModel):
    """Base for component configs: unknown keys are errors, so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Component:
    """Common base: holds the validated config. `slot` and `method` are set by each slot's base class."""

    slot: ClassVar[str] = ""
    method: ClassVar[str] = ""
    Config: ClassVar[type[ComponentConfig]] = ComponentConfig
    #: input names this component requires (checked by `plinth validate` against the stage's `inputs`).
    required_inputs: ClassVar[tuple[str, ...]] = ()
    #: the inputs it reads: name -> accepted artifact kind(s); {} when it reads none. When declared (not None),
    #: `plinth validate` refuses other input names and artifacts of other kinds.
    input_kinds: ClassVar[dict[str, str | tuple[str, ...]] | None] = None
    #: what it returns: name -> artifact kind (or a tuple of names, kinds unchecked). `plinth validate` checks
    #: references like "sft.model" against `declared_outputs()`, which is this unless a component overrides it.
    outputs: ClassVar[dict[str, str] | tuple[str, ...]] = ()

    def __init__(self, config: ComponentConfig | dict[str, Any] | None = None):
        if config is None:
            config = {}
        if isinstance(config, dict):
            config = self.Config.model_validate(config)
        self.config = config

    def run(self, ctx: "StageContext") -> dict[str, "Artifact"]:
        """Dispatch to the slot's method; the runner calls this."""
        return getattr(self, self.method)(ctx)

    def declared_outputs(self, inputs: Collection[str] = ()) -> dict[str, str]:
        """Output name -> kind ("" when not declared) this stage returns, given its config and wired input names.
        Override when the outputs depend on them (e.g. a generator that writes an `eval` split only if asked)."""
        out = type(self).outputs
        return dict(out) if isinstance(out, dict) else {name: "" for name in out}

    def preflight(self, inputs: dict[str, list[Path | None]]) -> list[str]:
        """Cheap checks `plinth validate` runs before any stage works: model names resolve, the first rows of a
        dataset file have the needed fields, merged models share a shape. `inputs` holds each wired input's paths
        (None where an earlier stage will make it). Returns "field: problem" lines; reads no weights."""
        return []


class Generator(Component):
    """Builds datasets (e.g. teacher-guided SFT and KTO data). Returns `dataset`-kind artifacts."""

    slot = "generator"
    method = "generate"

    def generate(self, ctx: "StageContext") -> dict[str, "Artifact"]:
        raise NotImplementedError


class Trainer(Component):
    """Trains a model from input artifacts; returns at least a `model` (or `checkpoint`) artifact.

    Trainers ask `ctx.strategy` how to run in parallel (extra TrainingArguments, model wrapping)."""

    slot = "trainer"
    method = "train"

    def train(self, ctx: "StageContext") -> dict[str, "Artifact"]:
        raise NotImplementedError


class Merger(Component):
    """Fuses model artifacts (ctx.inputs) into one `model` artifact."""

    slot = "merger"
    method = "merge"

    def merge(self, ctx: "StageContext") -> dict[str, "Artifact"]:
        raise NotImplementedError


class Evaluator(Component):
    """Scores model artifacts; returns a `metrics` artifact (and usually `samples`)."""

    slot = "evaluator"
    method = "evaluate"

    def evaluate(self, ctx: "StageContext") -> dict[str, "Artifact"]:
        raise NotImplementedError


class LaunchSpec(BaseModel):
    """How many processes a stage needs; the runner starts them with torchrun when world size > 1."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 0  # 0: the runner picks a free port

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


class Strategy(Component):
    """How a stage's work is spread over processes and devices.

    The runner asks `launch_spec()` for the process layout and launches workers itself. Inside each worker a
    trainer calls `training_arguments()` for extra Hugging Face `TrainingArguments` keys (DeepSpeed config,
    DDP backend) or `wrap_model()`/`setup()` for hand-written loops (e.g. a pipeline schedule)."""

    slot = "strategy"
    method = "launch_spec"

    def launch_spec(self) -> LaunchSpec:
        return LaunchSpec()

    def setup(self, ctx: "StageContext") -> None:
        """Called once in each worker before the component runs (e.g. init the process group)."""

    def training_arguments(self, ctx: "StageContext") -> dict[str, Any]:
        """Extra keys for transformers.TrainingArguments."""
        return {}

    def wrap_model(self, model: Any, ctx: "StageContext") -> Any:
        return model

    def run(self, ctx: "StageContext") -> dict[str, "Artifact"]:  # strategies are not stages
        raise TypeError("a strategy is chosen per stage with `strategy = ...`; it is not a stage of its own")


SLOTS: dict[str, type[Component]] = {
    "generator": Generator,
    "trainer": Trainer,
    "merger": Merger,
    "evaluator": Evaluator,
    "strategy": Strategy,
}
