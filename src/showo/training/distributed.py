"""torch.distributed plumbing: process group from torchrun's environment, DDP / FSDP2 wrapping, reductions."""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def is_main_process() -> bool:
    """Rank 0 of a torchrun launch, or a process launched alone (for what should be said once)."""
    return int(os.environ.get("RANK") or 0) == 0


def init_from_env(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        # A group we made is ours to destroy. Left to the interpreter's teardown, gloo's worker threads can abort the
        # process after training finished ("terminate called without an active exception", SIGABRT; seen once in
        # tests/test_trainer.py's FSDP run), and torchrun then reports the run as failed.
        atexit.register(_destroy_process_group)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def wrap(model: torch.nn.Module, mode: str, info: DistInfo) -> torch.nn.Module:
    """DDP (replicated weights, averaged gradients) or FSDP2 (`fully_shard` per decoder layer, then the root)."""
    if not info.enabled or mode == "none":
        return model
    if mode in ("auto", "ddp"):
        return torch.nn.parallel.DistributedDataParallel(model)
    from torch.distributed.fsdp import fully_shard

    for layer in model.showo.model.layers:
        fully_shard(layer)
    fully_shard(model)
    return model


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
