"""The ``--device`` values a command takes, checked against this machine before any work starts."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vist3a.errors import InputError

AUTO = "auto"
KNOWN = ("cpu", "cuda", "mps")


def resolve_device(name: str) -> str:
    """``name`` as a torch device string: ``auto`` becomes ``cuda`` when a CUDA device is available, else ``cpu``.

    An unknown device, or one this machine's torch cannot reach, is an :class:`InputError`.
    """
    if name == AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in KNOWN:
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and (device.index or 0) >= _cuda_count():
        raise InputError(f"device {name!r}: this machine's torch sees {_cuda_count()} CUDA device(s); use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {name!r}: MPS is not available here; use --device cpu")
    return name


def _cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def to_module(tensor: Tensor, module: nn.Module) -> Tensor:
    """``tensor`` on ``module``'s device, in its dtype (those of its first parameter)."""
    parameter = next(module.parameters())
    return tensor.to(device=parameter.device, dtype=parameter.dtype)
