"""The profile file: per-layer costs of one model on one device type at one batch size (the planner's input).

The profiler writes it, the planner reads it, and it is reused until the model, batch size or device changes.
Format `plinth-sparsepipe-profile/1` (JSON), layers in model order:

    {"format": "plinth-sparsepipe-profile/1", "model": "sparse-vgg16-bn", "device_type": "rtx", "batch_size": 64,
     "source": "measured", "meta": {...how it was measured...},
     "layers": [{"name": "conv1", "forward_s": 0.0728, "backward_s": 0.0021, "output_feature_bytes": 5.3e7,
                 "output_coordinate_bytes": 3.3e6, "parameter_bytes": 6912}, ...]}

Times are seconds for one batch of `batch_size` samples; bytes are per batch too. `output_feature_bytes` and
`output_coordinate_bytes` are what crosses a stage boundary after the layer (features forward and their gradient
backward, coordinates forward only); their sum is also what a stage stashes per in-flight batch for backward.
`restart_s` (optional, default 0) is what a cut after the layer costs the next stage on top of its layers' times:
a sparse tensor arrives as coordinates and features, so kernel maps the layers after the cut would have reused
are built again. `update_s` (optional, default 0) is the optimizer step of the layer's parameters, which runs once
per update: after every batch under 1F1B, once per mini-batch of several under GPipe, so it is kept apart from
`backward_s` (profiles written before it existed have it inside `backward_s`, which prices 1F1B the same).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .files import ProfileError, read_json, validate

PROFILE_FORMAT = "plinth-sparsepipe-profile/1"


class LayerProfile(BaseModel):
    """One layer (or block) of the model: its time on this device type and the sizes the planner needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="layer name, unique within the profile, in model order")
    forward_s: float = Field(ge=0, allow_inf_nan=False, description="forward time of one batch, seconds")
    backward_s: float = Field(ge=0, allow_inf_nan=False, description="backward time of one batch, seconds")
    output_feature_bytes: float = Field(ge=0, allow_inf_nan=False, description="bytes of the output features")
    output_coordinate_bytes: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="bytes of the output coordinates (0 for dense outputs)"
    )
    parameter_bytes: float = Field(ge=0, allow_inf_nan=False, description="bytes of the layer's parameters")
    update_s: float = Field(
        0.0, ge=0, allow_inf_nan=False,
        description="the optimizer step of the layer's parameters, seconds, once per update (0: inside backward_s)",
    )
    restart_s: float = Field(
        0.0, ge=0, allow_inf_nan=False,
        description="extra time of the next stage when the pipeline is cut after this layer: rebuilding what is "
                    "not sent (coordinate hashes, kernel maps of this resolution); 0 for dense layers",
    )

    @property
    def time_s(self) -> float:
        """Forward, backward and update: one batch under 1F1B, which updates after every batch."""
        return self.forward_s + self.backward_s + self.update_s

    @property
    def output_bytes(self) -> float:
        return self.output_feature_bytes + self.output_coordinate_bytes


class Profile(BaseModel):
    """Per-layer costs of `model` on `device_type` at `batch_size`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["plinth-sparsepipe-profile/1"] = PROFILE_FORMAT
    model: str = Field(min_length=1, description="model name (informative; layer names are what must match)")
    device_type: str = Field(min_length=1, description="the device type it was measured on (or emulates)")
    batch_size: int = Field(gt=0, description="samples per batch the times and sizes are for")
    source: Literal["measured", "estimate", "scaled"] = "measured"
    meta: dict[str, Any] = Field(default_factory=dict, description="how it was made: warm-up, iterations, device...")
    layers: list[LayerProfile] = Field(min_length=1)

    @field_validator("layers")
    @classmethod
    def _unique_names(cls, layers: list[LayerProfile]) -> list[LayerProfile]:
        seen: dict[str, int] = {}
        for i, layer in enumerate(layers):
            if layer.name in seen:
                raise ValueError(f"layer name {layer.name!r} at index {i} repeats index {seen[layer.name]}")
            seen[layer.name] = i
        return layers

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @property
    def total_time_s(self) -> float:
        """Forward, backward and update of every layer: one training iteration of one batch on one device."""
        return sum(layer.time_s for layer in self.layers)

    def scaled(self, speed: float, device_type: str | None = None) -> "Profile":
        """This profile on a device `speed` times as fast (0.5: half as fast, every time doubles); sizes unchanged.

        For emulated device types on one CPU machine and for simulated clusters built from one measured profile.
        """
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        layers = [
            layer.model_copy(update={"forward_s": layer.forward_s / speed, "backward_s": layer.backward_s / speed,
                                     "update_s": layer.update_s / speed, "restart_s": layer.restart_s / speed})
            for layer in self.layers
        ]
        meta = {**self.meta, "scaled_from": self.device_type, "speed": speed * float(self.meta.get("speed", 1.0))}
        return self.model_copy(update={
            "layers": layers, "device_type": device_type or self.device_type, "source": "scaled", "meta": meta,
        })

    def with_total_time(self, total_s: float, device_type: str | None = None) -> "Profile":
        """Scaled so one iteration (sum of forward + backward) takes `total_s` seconds, e.g. a published figure."""
        return self.scaled(self.total_time_s / total_s, device_type)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def load_profile(path: Path | str) -> Profile:
    """Read and validate a profile file; every problem is reported as `FILE: FIELD: problem`."""
    path = Path(path)
    return profile_from_json(read_json(path, "profile", ProfileError), path)


def profile_from_json(data: Any, where: Path | str = "<profile>") -> Profile:
    return validate(Profile, data, PROFILE_FORMAT, where, ProfileError)


def save_profile(profile: Profile, path: Path | str) -> Path:
    """Write atomically (a killed profiler never leaves half a file)."""
    from plinth.rundir import write_json_atomic

    write_json_atomic(Path(path), profile.to_json())
    return Path(path)
