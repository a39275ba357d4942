"""Multi-process runs under ``torchrun`` or ``accelerate launch``: process-group set-up from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.tensor import DTensor, distribute_tensor


def setup(device: str = "cpu") -> tuple[int, int, str]:
    """Join the process group the launcher describes (``WORLD_SIZE`` > 1); return (rank, world size, device).

    ``cuda`` becomes this process's ``cuda:LOCAL_RANK``; CPU runs use the gloo backend, CUDA runs NCCL.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and device == "cuda":
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return rank(), world_size(), device


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def shard(module: nn.Module) -> None:
    """Shard ``module`` over the processes with FSDP2: each block of its block lists, then the rest.

    Parameters become DTensors (collect trainable ones and build optimisers afterwards); every process must run the
    same number of forward and backward passes. Gradients are averaged over the processes by FSDP.
    """
    from torch.distributed.fsdp import fully_shard

    for child in module.children():
        if isinstance(child, nn.ModuleList):
            for block in child:
                fully_shard(block)
    fully_shard(module)


def full_tensors(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``tensors`` with every sharded value (DTensor) gathered in full; a collective when anything is sharded."""
    return {key: value.full_tensor() if isinstance(value, DTensor) else value for key, value in tensors.items()}


def like(full: Tensor, reference: Tensor) -> Tensor:
    """``full`` laid out as ``reference``: sharded the same way when ``reference`` is a DTensor (a collective)."""
    if isinstance(reference, DTensor):
        return distribute_tensor(full.to(reference.dtype), reference.device_mesh, reference.placements)
    return full
