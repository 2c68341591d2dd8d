"""The strategy's pydantic config and the DeepSpeed JSON generated from it.

Values the Hugging Face integration knows better (batch sizes, learning rate, scheduler, clipping, precision) are
left as "auto" so transformers fills them from the trainer's TrainingArguments: one source of truth, no mismatch
errors. A user JSON (`config_file`) is passed through unchanged except for keys set explicitly here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from plinth import ComponentConfig, ConfigError
from plinth.fileparams import file_field


class DeepSpeedConfig(ComponentConfig):
    zero_stage: int = Field(2, ge=0, le=3, description="ZeRO stage: 0 (DDP), 1 (optimizer), 2 (+gradients), 3 (+parameters)")
    nproc_per_node: int | Literal["auto"] = Field(
        "auto", description="processes per node; auto = one per visible GPU, 1 on a CPU-only machine"
    )
    nnodes: int = Field(1, ge=1, description="number of machines")
    node_rank: int = Field(0, ge=0, description="this machine's index among nnodes")
    master_addr: str = Field("127.0.0.1", description="address of node 0 (multi-node)")
    master_port: int = Field(0, ge=0, le=65535, description="rendezvous port on node 0; 0 picks a free port (one node)")
    backend: Literal["auto", "nccl", "gloo"] = Field("auto", description="collectives: auto = nccl on GPUs, gloo on CPU")
    offload_optimizer: Literal["none", "cpu", "nvme"] = Field(
        "none", description="keep optimizer states in CPU memory or on NVMe (ZeRO 1-3)"
    )
    offload_param: Literal["none", "cpu", "nvme"] = Field("none", description="keep parameters off the GPU (ZeRO 3)")
    nvme_path: str | None = Field(None, description="folder on a fast local disk for nvme offload")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto follows the trainer's precision; others force it for this strategy"
    )
    gradient_clipping: float | None = Field(None, ge=0, description="None follows the trainer's max_grad_norm")
    overlap_comm: bool = Field(True, description="overlap gradient reduction with backward")
    contiguous_gradients: bool = Field(True, description="copy gradients into one buffer (less fragmentation)")
    gather_weights_on_save: bool = Field(
        True, description="ZeRO-3: gather full 16-bit weights when saving, so the output is a normal model folder"
    )
    config_file: str | None = file_field(
        None, description="a DeepSpeed JSON file used as the base (user settings win); relative to the pipeline file"
    )
    extra: dict[str, Any] = Field(default_factory=dict, description="keys merged into the generated JSON last")

    @model_validator(mode="after")
    def _check(self) -> "DeepSpeedConfig":
        if self.offload_param != "none" and self.zero_stage != 3:
            raise ValueError(f"offload_param needs zero_stage = 3 (got {self.zero_stage})")
        if self.offload_optimizer != "none" and self.zero_stage == 0:
            raise ValueError("offload_optimizer needs zero_stage >= 1")
        if "nvme" in (self.offload_optimizer, self.offload_param) and not self.nvme_path:
            raise ValueError("nvme offload needs nvme_path")
        if self.nnodes > 1 and self.master_port == 0:
            raise ValueError("multi-node runs need an explicit master_port (the same on every node)")
        if self.config_file is not None:
            if not Path(self.config_file).is_file():
                raise ValueError(f"config_file {self.config_file!r}: no such file")
            try:
                json.loads(Path(self.config_file).read_text(encoding="utf-8"))
            except (ValueError, OSError) as exc:
                raise ValueError(f"config_file {self.config_file}: not valid JSON ({exc})") from None
        return self


def _offload(device: str, nvme_path: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"device": device}
    if device == "cpu":
        out["pin_memory"] = True
    if device == "nvme":
        out["nvme_path"] = nvme_path
    return out


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_ds_config(cfg: DeepSpeedConfig, on_gpu: bool | None = None) -> dict[str, Any]:
    """The DeepSpeed JSON for `cfg` (a dict transformers' TrainingArguments(deepspeed=...) accepts)."""
    base: dict[str, Any] = {}
    if cfg.config_file:
        try:
            base = json.loads(Path(cfg.config_file).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"deepspeed config_file {cfg.config_file}: not valid JSON ({exc})") from None
    zero: dict[str, Any] = {"stage": cfg.zero_stage}
    if cfg.zero_stage >= 1:
        zero.update(overlap_comm=cfg.overlap_comm, contiguous_gradients=cfg.contiguous_gradients,
                    reduce_bucket_size="auto")
    if cfg.offload_optimizer != "none":
        zero["offload_optimizer"] = _offload(cfg.offload_optimizer, cfg.nvme_path)
    if cfg.zero_stage == 3:
        zero.update(
            stage3_prefetch_bucket_size="auto",
            stage3_param_persistence_threshold="auto",
            stage3_gather_16bit_weights_on_model_save=cfg.gather_weights_on_save,
        )
        if cfg.offload_param != "none":
            zero["offload_param"] = _offload(cfg.offload_param, cfg.nvme_path)
    generated: dict[str, Any] = {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto" if cfg.gradient_clipping is None else cfg.gradient_clipping,
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if cfg.precision != "auto":
        generated["bf16"] = {"enabled": cfg.precision == "bf16"}
        generated["fp16"] = {"enabled": cfg.precision == "fp16"}
    if base:
        # the user's file is the base; only what they did not say is filled in
        out = _deep_merge(generated, base)
    else:
        out = generated
    return _deep_merge(out, cfg.extra)
