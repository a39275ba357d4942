"""Model-agnostic exports of decoded geometry: coloured point clouds (.ply) and depth maps (.npz)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vist3a.errors import InputError, ShapeError
from vist3a.io.atomic import atomic_write_bytes
from vist3a.scene import Decoded3D, PointMaps

PLY_PROPERTIES = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]


def write_point_cloud(path: str | Path, points: Tensor, colors: Tensor | None = None) -> Path:
    """Write points ``[N,3]`` with optional colours ``[N,3]`` in [0,1] as a binary little-endian PLY."""
    if points.ndim != 2 or points.shape[1] != 3:
        raise ShapeError(f"points: expected [N,3], got {list(points.shape)}")
    if colors is None:
        colors = torch.full_like(points, 0.5)
    if colors.shape != points.shape:
        raise ShapeError(f"colors: expected {list(points.shape)}, got {list(colors.shape)}")
    rows = np.empty(points.shape[0], dtype=PLY_PROPERTIES)
    xyz = points.detach().float().cpu().numpy()
    rgb = (colors.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    for i, axis in enumerate("xyz"):
        rows[axis] = xyz[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        rows[channel] = rgb[:, i]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(rows)}"]
    header += [f"property {'float' if kind == '<f4' else 'uchar'} {name}" for name, kind in PLY_PROPERTIES]
    atomic_write_bytes(path, ("\n".join([*header, "end_header"]) + "\n").encode("ascii") + rows.tobytes())
    return Path(path)


def read_point_cloud(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Points ``[N,3]`` float32 and colours ``[N,3]`` uint8 of a PLY written by :func:`write_point_cloud`."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    rows = np.frombuffer(data[end:], dtype=PLY_PROPERTIES)
    return np.stack([rows[a] for a in "xyz"], axis=1), np.stack([rows[c] for c in ("red", "green", "blue")], axis=1)


def pointmaps_to_ply(path: str | Path, source: PointMaps | Decoded3D, colors: Tensor | None = None, *,
                     batch: int = 0, min_confidence: float | None = None) -> Path:  # fmt: skip
    """Write one clip's point maps as a coloured point cloud.

    Args:
        source: point maps ``[B,V,H,W,3]`` (or a Decoded3D holding them).
        colors: ``[B,V,H,W,3]`` in [0,1], e.g. ``images.permute(0, 1, 3, 4, 2)`` for images ``[B,V,3,H,W]``.
        batch: which clip of the batch.
        min_confidence: keep only points whose confidence is at least this (needs ``confidence``).
    """
    maps = _pointmaps(source)
    points = maps.points[batch].reshape(-1, 3)
    if colors is not None and colors.shape != maps.points.shape:
        raise ShapeError(f"colors: expected {list(maps.points.shape)} in [0,1], got {list(colors.shape)}")
    rgb = None if colors is None else colors[batch].reshape(-1, 3)
    keep = torch.isfinite(points).all(dim=1)
    if min_confidence is not None:
        if maps.confidence is None:
            raise InputError("min_confidence given but these point maps have no confidence")
        keep &= maps.confidence[batch].reshape(-1) >= min_confidence
    return write_point_cloud(path, points[keep], None if rgb is None else rgb[keep])


def depth_to_npz(path: str | Path, source: PointMaps | Decoded3D, *, batch: int = 0) -> Path:
    """Write one clip's depth ``[V,H,W]`` (+ ``depth_confidence``, and the cameras of a Decoded3D) to ``.npz``.

    Keys: ``depth``, optionally ``depth_confidence``, ``extrinsics [V,4,4]`` (world-to-camera, OpenCV),
    ``intrinsics [V,3,3]`` (pixels) and ``image_size`` ``(H, W)``.
    """
    maps = _pointmaps(source)
    if maps.depth is None:
        raise InputError("these point maps have no depth")
    arrays = {"depth": maps.depth[batch]}
    if maps.depth_confidence is not None:
        arrays["depth_confidence"] = maps.depth_confidence[batch]
    cameras = source.cameras if isinstance(source, Decoded3D) else None
    if cameras is not None:
        arrays.update(extrinsics=cameras.extrinsics[batch], intrinsics=cameras.intrinsics[batch])
    values = {k: v.detach().float().cpu().numpy() for k, v in arrays.items()}
    if cameras is not None:
        values["image_size"] = np.asarray(cameras.image_size)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **values)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def _pointmaps(source: PointMaps | Decoded3D) -> PointMaps:
    maps = source.points if isinstance(source, Decoded3D) else source
    if not isinstance(maps, PointMaps):
        raise InputError("nothing to export: no point maps")
    return maps
