"""VGGT's pose encoding and depth unprojection (OpenCV conventions)."""

from __future__ import annotations

import torch
from torch import Tensor


def quaternion_to_matrix(quat: Tensor, eps: float = 0.0) -> Tensor:
    """Quaternions ``[..., 4]`` in xyzw order (scalar last, need not be unit) -> rotations ``[..., 3, 3]``;
    ``eps`` is added to ``|q|^2`` in the ``2 / |q|^2`` factor."""
    x, y, z, w = quat.unbind(-1)
    s = 2.0 / ((quat * quat).sum(-1) + eps)
    rows = (
        1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
        s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
        s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
    )  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(*quat.shape[:-1], 3, 3)


def pose_encoding_to_cameras(pose_enc: Tensor, image_size: tuple[int, int], tan_offset: float = 0.0) -> tuple[Tensor, Tensor]:
    """``[B,S,9]`` = [T(3), quat xyzw(4), fov_h, fov_w] -> world-to-camera ``[B,S,3,4]`` and pixel intrinsics ``[B,S,3,3]``.

    ``fx = (W/2) / (tan(fov_w/2) + tan_offset)``, likewise ``fy`` with H and fov_h, principal point ``(W/2, H/2)``
    (VGGT: no offset; AnySplat: 1e-3).
    """
    height, width = image_size
    extrinsics = torch.cat((quaternion_to_matrix(pose_enc[..., 3:7]), pose_enc[..., :3, None]), dim=-1)
    intrinsics = pose_enc.new_zeros(*pose_enc.shape[:-1], 3, 3)
    intrinsics[..., 0, 0] = (width / 2.0) / (torch.tan(pose_enc[..., 8] / 2.0) + tan_offset)
    intrinsics[..., 1, 1] = (height / 2.0) / (torch.tan(pose_enc[..., 7] / 2.0) + tan_offset)
    intrinsics[..., 0, 2] = width / 2
    intrinsics[..., 1, 2] = height / 2
    intrinsics[..., 2, 2] = 1.0
    return extrinsics, intrinsics


def to_homogeneous(extrinsics: Tensor) -> Tensor:
    """``[..., 3, 4]`` -> ``[..., 4, 4]``."""
    bottom = extrinsics.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(*extrinsics.shape[:-2], 1, 4)
    return torch.cat((extrinsics, bottom), dim=-2)


def unproject_depth(depth: Tensor, extrinsics: Tensor, intrinsics: Tensor) -> Tensor:
    """Depth ``[B,S,H,W]`` -> world points ``[B,S,H,W,3]``; pixel (u, v) at integer coordinates, no half-pixel shift.

    ``extrinsics [B,S,3,4]`` world-to-camera, ``intrinsics [B,S,3,3]`` in pixels.
    """
    height, width = depth.shape[-2:]
    v, u = torch.meshgrid(torch.arange(height, device=depth.device, dtype=depth.dtype),
                          torch.arange(width, device=depth.device, dtype=depth.dtype), indexing="ij")  # fmt: skip
    k = intrinsics[..., None, None, :, :]
    x = (u - k[..., 0, 2]) * depth / k[..., 0, 0]
    y = (v - k[..., 1, 2]) * depth / k[..., 1, 1]
    cam = torch.stack((x, y, depth), dim=-1)
    rot, trans = extrinsics[..., :3, :3], extrinsics[..., :3, 3]
    return (cam - trans[..., None, None, :]) @ rot.unsqueeze(-3)  # R^T (x - t) on row vectors
