"""Cameras from point maps: MV-DUSt3R predicts every view's points in view 0's camera frame and no cameras.

Pixel ``(i, j)`` is taken at ``(j + 0.5, i + 0.5)`` (vist3a's renderer convention), the principal point at the image
centre and one focal length for all views, estimated on view 0 whose points are in its own camera frame (as
upstream's demo does). Each view's pose then solves a confidence-weighted linear PnP (DLT on all pixels, projected
onto a rotation). Upstream's demo uses OpenCV's PnP-RANSAC instead; this version needs no OpenCV and no sampling.
"""

from __future__ import annotations

import torch
from torch import Tensor

WEISZFELD_STEPS = 10


def pixel_grid(height: int, width: int, ref: Tensor) -> Tensor:
    """Pixel centres ``[H,W,2]`` as (u, v) = (j + 0.5, i + 0.5)."""
    v, u = torch.meshgrid(torch.arange(height, device=ref.device, dtype=ref.dtype),
                          torch.arange(width, device=ref.device, dtype=ref.dtype), indexing="ij")  # fmt: skip
    return torch.stack((u, v), dim=-1) + 0.5


def estimate_focal(points: Tensor, weights: Tensor) -> Tensor:
    """Focal ``[B]`` of pinhole cameras that see ``points [B,H,W,3]`` (camera frame) at their pixels.

    Minimises ``sum w |p - c - f (x/z, y/z)|`` by iteratively re-weighted least squares (Weiszfeld), from the
    least-squares solution; ``weights [B,H,W]`` >= 0, points with z <= 0 are ignored.
    """
    b, h, w, _ = points.shape
    centred = (pixel_grid(h, w, points) - points.new_tensor([w / 2, h / 2])).expand(b, h, w, 2)
    z = points[..., 2:]
    valid = (z[..., 0] > 0) & torch.isfinite(points).all(-1)
    ray = torch.where(valid[..., None], points[..., :2] / z.where(valid[..., None], 1.0), 0.0)
    base = weights * valid
    dot, norm = (ray * centred).sum(-1), ray.square().sum(-1)
    focal = (base * dot).flatten(1).sum(1) / (base * norm).flatten(1).sum(1).clamp_min(1e-12)
    for _ in range(WEISZFELD_STEPS):
        distance = (centred - focal.view(b, 1, 1, 1) * ray).norm(dim=-1).clamp_min(1e-8)
        irls = base / distance
        focal = (irls * dot).flatten(1).sum(1) / (irls * norm).flatten(1).sum(1).clamp_min(1e-12)
    return focal


def intrinsics_matrix(focal: Tensor, image_size: tuple[int, int]) -> Tensor:
    """``[B,3,3]`` pixel intrinsics, principal point at the image centre."""
    k = torch.zeros(*focal.shape, 3, 3, dtype=focal.dtype, device=focal.device)
    k[..., 0, 0], k[..., 1, 1] = focal, focal
    k[..., 0, 2], k[..., 1, 2], k[..., 2, 2] = image_size[1] / 2, image_size[0] / 2, 1.0
    return k


def solve_pose(points: Tensor, intrinsics: Tensor, weights: Tensor) -> Tensor:
    """World-to-camera ``[B,4,4]`` (OpenCV) of cameras that see world ``points [B,H,W,3]`` at their pixels.

    Weighted DLT over every pixel (``weights [B,H,W]`` >= 0) with the world points centred and scaled for
    conditioning, then the nearest rotation (SVD) and the matching translation. Solved in float64.
    """
    b, h, w, _ = points.shape
    pts = points.double().reshape(b, -1, 3)
    wts = (weights.double().reshape(b, -1) * torch.isfinite(pts).all(-1)).clamp_min(0)
    pts = torch.nan_to_num(pts)
    rays = torch.linalg.solve(intrinsics.double(), _homogeneous(pixel_grid(h, w, pts).reshape(1, -1, 2).expand(b, -1, 2)).mT).mT
    centre = (wts[..., None] * pts).sum(1, keepdim=True) / wts.sum(1).clamp_min(1e-12)[:, None, None]
    scale = ((wts * (pts - centre).norm(dim=-1)).sum(1) / wts.sum(1).clamp_min(1e-12)).clamp_min(1e-12)[:, None, None]
    x = _homogeneous((pts - centre) / scale)  # [B,N,4]
    zero = torch.zeros_like(x)
    rows = torch.cat((torch.cat((-x, zero, rays[..., :1] * x), -1), torch.cat((zero, -x, rays[..., 1:2] * x), -1)), 1)
    gram = torch.einsum("bn,bni,bnj->bij", wts.repeat(1, 2), rows, rows)
    projection = torch.linalg.eigh(gram).eigenvectors[..., 0].reshape(b, 3, 4)
    projection = projection * torch.linalg.det(projection[:, :, :3]).sign()[:, None, None]
    u, s, vh = torch.linalg.svd(projection[:, :, :3])
    rotation = u @ vh
    # projection = lambda [s R | R c + t] for the conditioned points x = (X - c) / s, with lambda s = mean singular value
    translation = projection[:, :, 3] * scale[:, 0] / s.mean(-1, keepdim=True) - (rotation @ centre.mT)[..., 0]
    pose = torch.eye(4, dtype=torch.float64, device=points.device).repeat(b, 1, 1)
    pose[:, :3, :3], pose[:, :3, 3] = rotation, translation
    return pose.to(points.dtype)


def _homogeneous(x: Tensor) -> Tensor:
    return torch.cat((x, torch.ones_like(x[..., :1])), dim=-1)
