"""The 3D outputs every decoder returns, with their conventions.

- Cameras follow OpenCV: x right, y down, z forward. Extrinsics are world-to-camera ``[R|t]`` as ``[B,V,4,4]``;
  intrinsics are in pixels of ``image_size`` as ``[B,V,3,3]``. View 0 is the reference view (frame 0).
- Point maps are in world coordinates, one per view and pixel.
- Gaussians use the ``gsplat.rasterization`` conventions: quaternions ``wxyz``, linear scales, opacities in [0, 1]
  and spherical-harmonic colour coefficients ``[..., K, 3]`` with ``K = (degree + 1) ** 2``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import TypeVar

import torch
from torch import Tensor

from vist3a.errors import ShapeError

T = TypeVar("T")


def _check(name: str, x: Tensor, *expected: int | None) -> None:
    """Raise ShapeError unless ``x`` matches ``expected`` (None = any size)."""
    ok = x.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, x.shape))
    if not ok:
        want = ",".join("*" if e is None else str(e) for e in expected)
        raise ShapeError(f"{name}: expected shape [{want}], got {list(x.shape)}")


class _TensorGroup:
    """Shared helpers for dataclasses whose fields are tensors (or None, or nested groups)."""

    def map(self: T, fn: Callable[[Tensor], Tensor]) -> T:
        """A copy with ``fn`` applied to every tensor, e.g. ``x.map(lambda t: t.to(device))``."""
        changes = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                changes[f.name] = fn(value)
            elif isinstance(value, _TensorGroup):
                changes[f.name] = value.map(fn)
            elif isinstance(value, dict):
                changes[f.name] = {k: fn(v) for k, v in value.items()}
        return replace(self, **changes)  # type: ignore[type-var]

    def to(self: T, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> T:
        return self.map(lambda t: t.to(device=device, dtype=dtype if t.is_floating_point() else None))

    def detach(self: T) -> T:
        return self.map(Tensor.detach)

    def tensors(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """``(dotted name, tensor)`` for every tensor inside, e.g. ``("points.depth", t)``."""
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                yield prefix + f.name, value
            elif isinstance(value, _TensorGroup):
                yield from value.tensors(f"{prefix}{f.name}.")
            elif isinstance(value, dict):
                for key, tensor in value.items():
                    yield f"{prefix}{f.name}.{key}", tensor


@dataclass
class Cameras(_TensorGroup):
    """Pinhole cameras, OpenCV convention.

    Args:
        extrinsics: ``[B,V,4,4]`` world-to-camera; ``x_cam = R @ x_world + t``.
        intrinsics: ``[B,V,3,3]`` in pixels of ``image_size``; principal point in pixel units.
        image_size: ``(H, W)`` the intrinsics refer to.
    """

    extrinsics: Tensor
    intrinsics: Tensor
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        _check("Cameras.extrinsics", self.extrinsics, None, None, 4, 4)
        b, v = self.extrinsics.shape[:2]
        _check("Cameras.intrinsics", self.intrinsics, b, v, 3, 3)

    @property
    def camera_to_world(self) -> Tensor:
        """``[B,V,4,4]`` inverse of the extrinsics."""
        return torch.linalg.inv(self.extrinsics.float()).to(self.extrinsics.dtype)  # no half-precision inverse

    @property
    def centers(self) -> Tensor:
        """Camera centres in world coordinates ``[B,V,3]``."""
        return self.camera_to_world[..., :3, 3]

    def resized(self, image_size: tuple[int, int]) -> Cameras:
        """The same cameras with intrinsics rescaled to another ``(H, W)``."""
        sy, sx = image_size[0] / self.image_size[0], image_size[1] / self.image_size[1]
        scale = self.intrinsics.new_tensor([[sx, sx, sx], [sy, sy, sy], [1.0, 1.0, 1.0]])
        return replace(self, intrinsics=self.intrinsics * scale, image_size=image_size)


@dataclass
class PointMaps(_TensorGroup):
    """Per-view, per-pixel geometry.

    Args:
        points: ``[B,V,H,W,3]`` world coordinates.
        confidence: ``[B,V,H,W]`` or None; higher is more confident.
        depth: ``[B,V,H,W]`` z-depth in each view's camera, or None.
        depth_confidence: ``[B,V,H,W]`` or None.
    """

    points: Tensor
    confidence: Tensor | None = None
    depth: Tensor | None = None
    depth_confidence: Tensor | None = None

    def __post_init__(self) -> None:
        _check("PointMaps.points", self.points, None, None, None, None, 3)
        b, v, h, w = self.points.shape[:4]
        for name in ("confidence", "depth", "depth_confidence"):
            value = getattr(self, name)
            if value is not None:
                _check(f"PointMaps.{name}", value, b, v, h, w)


@dataclass
class Gaussians(_TensorGroup):
    """3D Gaussians, ``gsplat.rasterization`` conventions.

    Args:
        means: ``[B,N,3]`` world coordinates.
        scales: ``[B,N,3]`` linear standard deviations along the local axes.
        quats: ``[B,N,4]`` rotations, ``wxyz``, not necessarily normalised.
        opacities: ``[B,N]`` in [0, 1].
        sh: ``[B,N,K,3]`` spherical-harmonic coefficients, ``K = (degree + 1) ** 2``.
    """

    means: Tensor
    scales: Tensor
    quats: Tensor
    opacities: Tensor
    sh: Tensor

    def __post_init__(self) -> None:
        _check("Gaussians.means", self.means, None, None, 3)
        b, n = self.means.shape[:2]
        _check("Gaussians.scales", self.scales, b, n, 3)
        _check("Gaussians.quats", self.quats, b, n, 4)
        _check("Gaussians.opacities", self.opacities, b, n)
        _check("Gaussians.sh", self.sh, b, n, None, 3)
        if self.sh.shape[2] not in {(d + 1) ** 2 for d in range(5)}:
            raise ShapeError(f"Gaussians.sh: {self.sh.shape[2]} coefficients is not (degree+1)^2 for degree <= 4")

    @property
    def sh_degree(self) -> int:
        return int(round(self.sh.shape[2] ** 0.5)) - 1


@dataclass
class Decoded3D(_TensorGroup):
    """Everything a decoder predicts for a clip; absent representations are None.

    ``heads`` keeps every raw output tensor a decoder produces (for self-distillation and for official output
    dicts), keyed by the decoder's own head names.
    """

    cameras: Cameras | None = None
    points: PointMaps | None = None
    gaussians: Gaussians | None = None
    heads: dict[str, Tensor] = field(default_factory=dict)
