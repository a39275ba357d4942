"""Multi-process runs under ``torchrun`` or ``accelerate launch``: process-group set-up from the environment."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


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
