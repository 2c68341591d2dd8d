"""The `deepspeed` strategy: asks `plinth run` for the processes, initialises DeepSpeed's process group, and hands
Hugging Face trainers a DeepSpeed config through TrainingArguments (`training_arguments`)."""

from __future__ import annotations

import os
from typing import Any

from plinth import LaunchSpec, StageContext, Strategy

from .ds_config import DeepSpeedConfig, build_ds_config


class DeepSpeedStrategy(Strategy):
    Config = DeepSpeedConfig

    def nproc(self) -> int:
        if self.config.nproc_per_node != "auto":
            return int(self.config.nproc_per_node)
        import torch

        return max(torch.cuda.device_count(), 1)

    def launch_spec(self) -> LaunchSpec:
        c = self.config
        return LaunchSpec(
            nproc_per_node=self.nproc(), nnodes=c.nnodes, node_rank=c.node_rank,
            master_addr=c.master_addr, master_port=c.master_port,
        )

    def backend(self) -> str:
        if self.config.backend != "auto":
            return self.config.backend
        import torch

        return "nccl" if torch.cuda.is_available() else "gloo"

    def setup(self, ctx: StageContext) -> None:
        """Init DeepSpeed's process group before the trainer exists (ZeRO-3 partitions weights at load time, and
        on the CPU DeepSpeed must be told to use gloo). A single process without torchrun gets a 1-rank world."""
        if "RANK" not in os.environ:
            os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(_free_port()))
        import deepspeed
        import torch.distributed as dist

        if not dist.is_initialized():
            deepspeed.init_distributed(dist_backend=self.backend())

    def ds_config(self) -> dict[str, Any]:
        return build_ds_config(self.config)

    def training_arguments(self, ctx: StageContext) -> dict[str, Any]:
        args: dict[str, Any] = {"deepspeed": self.ds_config(), "ddp_backend": self.backend()}
        if self.config.precision != "auto":
            args["bf16"] = self.config.precision == "bf16"
            args["fp16"] = self.config.precision == "fp16"
        return args


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
