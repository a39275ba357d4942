"""Smooth camera paths around a scene, as pixel intrinsics and world-to-camera extrinsics.

Conventions are vist3a's (:mod:`vist3a.scene`): OpenCV cameras (x right, y down, z forward), extrinsics ``[V,4,4]``
world-to-camera (``x_cam = R @ x_world + t``), intrinsics ``[V,3,3]`` in pixels with pixel ``(i, j)`` centred at
``(j + 0.5, i + 0.5)`` (as :mod:`vist3a.render`) and the principal point at the image centre ``(W/2, H/2)``. The
world's z axis is up and shows as "up" in every image (no roll); every camera looks at ``scene.centre``.

Paths, for ``s`` from 0 (first frame) to 1 (last): **orbit** turns the azimuth by ``sweep`` at a fixed elevation and
distance; **arc** turns it by ``sweep`` while the elevation rises by :data:`ARC_LIFT`; **dolly** moves the camera
towards the centre (distance times ``1 - DOLLY_IN * s``) while the azimuth drifts by ``sweep``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # world samples scenes whose objects the first camera sees, so it imports this module
    from vist3a_synth.world import Scene, Trajectory

FOCAL = 1.0  # focal length in image widths: a 53 degree horizontal field of view
ARC_LIFT = math.radians(25)
DOLLY_IN = 0.35


def intrinsics(size: tuple[int, int], views: int, focal: float = FOCAL) -> Tensor:
    """``[V,3,3]`` pixel intrinsics for images of ``size`` (H, W): ``fx = fy = focal * W``, centre principal point."""
    h, w = size
    k = torch.tensor([[focal * w, 0.0, w / 2], [0.0, focal * w, h / 2], [0.0, 0.0, 1.0]])
    return k.expand(views, 3, 3).clone()


def look_at(eyes: Tensor, target: Tensor) -> Tensor:
    """World-to-camera ``[V,4,4]`` (OpenCV) for cameras at ``eyes [V,3]`` looking at ``target [3]``, world z up."""
    forward = torch.nn.functional.normalize(target - eyes, dim=-1)
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, eyes.new_tensor([0.0, 0.0, 1.0]).expand_as(forward)), dim=-1)
    down = torch.linalg.cross(forward, right)
    rotation = torch.stack([right, down, forward], dim=-2)  # rows: the camera axes in world coordinates
    extrinsics = torch.eye(4, dtype=eyes.dtype).repeat(len(eyes), 1, 1)
    extrinsics[:, :3, :3] = rotation
    extrinsics[:, :3, 3] = -(rotation @ eyes[..., None])[..., 0]
    return extrinsics


def camera_path(trajectory: Trajectory, target: Tensor, views: int) -> Tensor:
    """Camera centres ``[V,3]`` along ``trajectory`` around ``target [3]``."""
    s = torch.linspace(0, 1, views, dtype=torch.float64)
    azimuth = trajectory.azimuth + trajectory.sweep * s
    elevation = torch.full_like(s, trajectory.elevation)
    distance = torch.full_like(s, trajectory.distance)
    if trajectory.kind == "arc":
        elevation = elevation + ARC_LIFT * s
    elif trajectory.kind == "dolly":
        distance = distance * (1 - DOLLY_IN * s)
    elif trajectory.kind != "orbit":
        raise ValueError(f"unknown trajectory kind {trajectory.kind!r}")
    offset = torch.stack([elevation.cos() * azimuth.cos(), elevation.cos() * azimuth.sin(), elevation.sin()], dim=-1)
    return target.double() + distance[:, None] * offset


def scene_cameras(scene: Scene, views: int, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """``(intrinsics [V,3,3], extrinsics [V,4,4])`` float32 of the scene's trajectory over ``views`` frames."""
    target = torch.tensor(scene.centre, dtype=torch.float64)
    return intrinsics(size, views), look_at(camera_path(scene.trajectory, target, views), target).float()


def first_view_coordinates(scene: Scene) -> list[tuple[float, float]]:
    """(right, forward) of each object's bounding-box centre in the first frame's camera coordinates."""
    target = torch.tensor(scene.centre, dtype=torch.float64)
    extrinsics = look_at(camera_path(scene.trajectory, target, 1), target)[0]
    centres = torch.tensor([(*o.position, o.extent) for o in scene.objects], dtype=torch.float64)
    cam = centres @ extrinsics[:3, :3].T + extrinsics[:3, 3]
    return [(float(x), float(z)) for x, z in cam[:, [0, 2]]]
