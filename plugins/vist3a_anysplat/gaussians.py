"""AnySplat's Gaussian adapter (raw head outputs -> Gaussians) and its confidence-weighted voxel fusion."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from vist3a_vggt.geometry import quaternion_to_matrix

QUAT_EPS = 1e-8
FUSION_EPS = 1e-6
PAD_FEATURE, PAD_POINT = -1e10, -1e4
"""Upstream's padding values when batch elements keep different numbers of voxels."""


def sh_mask(degree: int, ref: Tensor) -> Tensor:
    """``[(degree+1)^2]``: 1 for degree 0 and ``0.1 * 0.25^d`` for the coefficients of degree d >= 1."""
    mask = torch.ones((degree + 1) ** 2, dtype=ref.dtype, device=ref.device)
    for d in range(1, degree + 1):
        mask[d**2 : (d + 1) ** 2] = 0.1 * 0.25**d
    return mask


def build_covariance(scales: Tensor, rotations: Tensor) -> Tensor:
    """``R S S^T R^T`` ``[..., 3, 3]`` from linear scales ``[..., 3]`` and xyzw quaternions ``[..., 4]``."""
    scale = scales.diag_embed()
    rot = quaternion_to_matrix(rotations, eps=QUAT_EPS)
    return rot @ scale @ scale.transpose(-1, -2) @ rot.transpose(-1, -2)


def adapt(means: Tensor, features: Tensor, sh_degree: int, opacity_exponent: float) -> dict[str, Tensor]:
    """Points ``[B,N,3]`` and raw features ``[B,N,1+3+4+3K]`` (opacity logit, scale, rotation, SH channel-major) ->
    the official Gaussians: ``means``, ``covariances [B,N,3,3]``, ``harmonics [B,N,3,K]``, ``opacities [B,N]``,
    ``scales [B,N,3]`` (linear) and ``rotations [B,N,4]`` (unit, xyzw)."""
    p = features[..., 0].sigmoid()
    e = opacity_exponent
    opacities = 0.5 * (1 - (1 - p) ** e + p ** (1 / e))
    k = (sh_degree + 1) ** 2
    scales, rotations, sh = features[..., 1:].split((3, 4, 3 * k), dim=-1)
    scales = (0.001 * F.softplus(scales)).clamp_max(0.3)
    rotations = rotations / (rotations.norm(dim=-1, keepdim=True) + QUAT_EPS)
    harmonics = sh.unflatten(-1, (3, k)) * sh_mask(sh_degree, sh)
    return {"means": means, "covariances": build_covariance(scales, rotations), "harmonics": harmonics,
            "opacities": opacities, "scales": scales, "rotations": rotations}  # fmt: skip


def voxelize(points: Tensor, features: Tensor, confidence: Tensor, voxel_size: float) -> tuple[Tensor, Tensor]:
    """Fuse points ``[N,3]`` and features ``[N,C]`` per voxel of side ``voxel_size``, weighted by the softmax of the
    raw confidence ``[N]`` within each voxel. Returns ``[M,3]`` and ``[M,C]``, voxels in ascending index order."""
    keys = (points / voxel_size).round().int()
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)
    m = int(inverse.max()) + 1 if inverse.numel() else 0
    peak = confidence.new_full((m,), float("-inf")).scatter_reduce(0, inverse, confidence, "amax")
    weights = (confidence - peak[inverse]).exp()
    total = weights.new_zeros(m).scatter_reduce(0, inverse, weights, "sum")
    weights = (weights / (total[inverse] + FUSION_EPS))[:, None]
    return _scatter_sum(points * weights, inverse, m), _scatter_sum(features * weights, inverse, m)


def _scatter_sum(values: Tensor, index: Tensor, size: int) -> Tensor:
    out = values.new_zeros(size, values.shape[1])
    return out.scatter_reduce(0, index[:, None].expand_as(values), values, "sum")


def voxelize_batch(points: Tensor, features: Tensor, confidence: Tensor, voxel_size: float) -> tuple[Tensor, Tensor]:
    """:func:`voxelize` per batch element of ``[B,N,3]``, ``[B,N,C]``, ``[B,N]``, padded as upstream pads."""
    fused = [voxelize(p, f, c, voxel_size) for p, f, c in zip(points, features, confidence)]
    m = max(p.shape[0] for p, _ in fused)

    def pad(x: Tensor, value: float) -> Tensor:
        return torch.cat((x, x.new_full((m - x.shape[0], x.shape[1]), value)))

    return torch.stack([pad(p, PAD_POINT) for p, _ in fused]), torch.stack([pad(f, PAD_FEATURE) for _, f in fused])
