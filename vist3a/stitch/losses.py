"""Distillation losses that decoder plugins share in their ``distill_loss``."""

from __future__ import annotations

from torch import Tensor


def l1(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean absolute difference; no gradient flows into ``teacher``."""
    return (student - teacher.detach()).abs().mean()


def gradient_l1(student: Tensor, teacher: Tensor, scales: int = 4) -> Tensor:
    """Multi-scale gradient loss on maps ``[B,S,H,W,C]``: the mean over strides 1, 2, 4, ... of the L1 between the
    spatial finite differences of student and teacher."""
    total = student.new_zeros(())
    for scale in range(scales):
        step = 2**scale
        a, b = student[:, :, ::step, ::step], teacher.detach()[:, :, ::step, ::step]
        for axis in (2, 3):
            if a.shape[axis] > 1:
                total = total + l1(a.diff(dim=axis), b.diff(dim=axis))
    return total / scales
