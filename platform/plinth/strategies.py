"""The core's parallel strategies: `single` (one process) and `ddp` (torch DistributedDataParallel, N processes
launched by `plinth run` through torchrun, gloo on CPUs and NCCL on GPUs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .components import ComponentConfig, LaunchSpec, Strategy
from .context import StageContext


class Single(Strategy):
    """One process, whatever devices it sees (the default)."""

    class Config(ComponentConfig):
        pass


class DDP(Strategy):
    """torch DistributedDataParallel across `nproc_per_node` processes (x `nnodes`), launched by `plinth run`."""

    class Config(ComponentConfig):
        nproc_per_node: int = Field(2, ge=1, description="processes per node (one per GPU on GPU machines)")
        nnodes: int = Field(1, ge=1)
        node_rank: int = Field(0, ge=0)
        master_addr: str = "127.0.0.1"
        master_port: int = Field(0, ge=0, le=65535, description="0 picks a free port (single-node runs)")
        backend: Literal["auto", "gloo", "nccl"] = Field("auto", description="auto: nccl with GPUs, else gloo")

    def launch_spec(self) -> LaunchSpec:
        c = self.config
        return LaunchSpec(
            nproc_per_node=c.nproc_per_node,
            nnodes=c.nnodes,
            node_rank=c.node_rank,
            master_addr=c.master_addr,
            master_port=c.master_port,
        )

    def backend(self) -> str:
        if self.config.backend != "auto":
            return self.config.backend
        import torch

        return "nccl" if torch.cuda.is_available() else "gloo"

    def setup(self, ctx: StageContext) -> None:
        import torch.distributed as dist

        if ctx.world_size > 1 and not dist.is_initialized():
            dist.init_process_group(backend=self.backend())

    def training_arguments(self, ctx: StageContext) -> dict[str, Any]:
        return {"ddp_backend": self.backend()}

    def wrap_model(self, model: Any, ctx: StageContext) -> Any:
        if ctx.world_size <= 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [ctx.local_rank] if self.backend() == "nccl" else None
        return DistributedDataParallel(model, device_ids=device_ids)
