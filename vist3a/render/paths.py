"""Camera paths for render videos: an orbit around a scene."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vist3a.scene import Cameras, Gaussians


def look_at(eyes: Tensor, target: Tensor, down: Tensor) -> Tensor:
    """World-to-camera ``[V,4,4]`` (OpenCV: x right, y down, z forward) for cameras at ``eyes [V,3]`` facing
    ``target [3]``, with image-down along ``down [3]``."""
    forward = torch.nn.functional.normalize(target - eyes, dim=-1)
    right = torch.nn.functional.normalize(torch.linalg.cross(down.expand_as(forward), forward, dim=-1), dim=-1)
    below = torch.linalg.cross(forward, right, dim=-1)
    rotation = torch.stack([right, below, forward], dim=-2)  # rows: the camera axes in world coordinates
    extrinsics = torch.eye(4, dtype=eyes.dtype, device=eyes.device).repeat(eyes.shape[0], 1, 1)
    extrinsics[:, :3, :3] = rotation
    extrinsics[:, :3, 3] = -(rotation @ eyes[..., None])[..., 0]
    return extrinsics


def orbit_cameras(
    gaussians: Gaussians,
    frames: int,
    image_size: tuple[int, int],
    *,
    fov_degrees: float = 50.0,
    elevation_degrees: float = 20.0,
    distance: float = 2.5,
) -> Cameras:
    """``frames`` cameras ``[1,frames,...]`` circling the first scene of ``gaussians`` once.

    The centre is the opacity-weighted mean of the Gaussians and the radius ``distance`` times their weighted RMS
    spread. "Up" is world ``-y``: feed-forward models put their scene in the first camera's OpenCV frame (y down), so
    the orbit turns about that camera's vertical axis, starting behind it.
    """
    means, weights = gaussians.means[0].detach().float(), gaussians.opacities[0].detach().float().clamp_min(1e-6)
    centre = (means * weights[:, None]).sum(0) / weights.sum()
    spread = ((means - centre).square().sum(-1) * weights).sum().div(weights.sum()).sqrt().clamp_min(1e-3)
    radius = distance * float(spread)
    angles = torch.linspace(0, 2 * math.pi, frames + 1, device=means.device)[:-1]
    elevation = math.radians(elevation_degrees)
    offsets = torch.stack([torch.sin(angles) * math.cos(elevation), torch.full_like(angles, -math.sin(elevation)),
                           -torch.cos(angles) * math.cos(elevation)], dim=-1)  # fmt: skip
    extrinsics = look_at(centre + radius * offsets, centre, torch.tensor([0.0, 1.0, 0.0], device=means.device))
    h, w = image_size
    focal = (w / 2) / math.tan(math.radians(fov_degrees) / 2)
    intrinsics = torch.tensor([[focal, 0, w / 2], [0, focal, h / 2], [0, 0, 1]], device=means.device).repeat(frames, 1, 1)
    return Cameras(extrinsics[None], intrinsics[None], image_size)
