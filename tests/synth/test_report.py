"""The report's metrics on hand-made cases."""

import math

import torch
from vist3a_synth.report import abs_rel, rotation_error


def rotation_z(degrees: float) -> torch.Tensor:
    a = math.radians(degrees)
    ext = torch.eye(4)
    ext[:2, :2] = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return ext


def test_abs_rel_ignores_a_global_scale_and_invalid_pixels():
    target = torch.rand(2, 3, 4, 4) + 1
    valid = torch.ones_like(target, dtype=torch.bool)
    valid[0, 0, 0, 0] = False
    pred = 3 * target
    pred[0, 0, 0, 0] = 100.0  # masked out
    assert abs_rel(pred, target, valid) < 1e-6
    noisy = target.clone()
    noisy[1] *= 1.1  # a 10% error on half the pixels of clip 1 after alignment ...
    noisy[1, :, :2] = target[1, :, :2]
    assert 0.0 < abs_rel(noisy, target, valid) < 0.1


def test_rotation_error_is_relative_to_the_first_view():
    target = torch.stack([rotation_z(0), rotation_z(30), rotation_z(60)])[None]
    shifted = torch.stack([rotation_z(10), rotation_z(40), rotation_z(70)])[None]  # the same relative motion
    assert rotation_error(shifted, target) < 1e-3
    wrong = torch.stack([rotation_z(0), rotation_z(40), rotation_z(60)])[None]
    assert abs(rotation_error(wrong, target) - 5.0) < 1e-3  # (10 + 0) / 2 views
