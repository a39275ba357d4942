"""Model-agnostic exports: coloured point clouds and 3DGS scenes (.ply), depth (.npz), cameras (transforms.json)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vist3a.errors import InputError, ShapeError
from vist3a.io.atomic import atomic_write_bytes, atomic_write_text
from vist3a.scene import Cameras, Decoded3D, Gaussians, PointMaps

POINT_PROPERTIES = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]


def write_point_cloud(path: str | Path, points: Tensor, colors: Tensor | None = None) -> Path:
    """Write points ``[N,3]`` with optional colours ``[N,3]`` in [0,1] as a binary little-endian PLY."""
    if points.ndim != 2 or points.shape[1] != 3:
        raise ShapeError(f"points: expected [N,3], got {list(points.shape)}")
    if colors is None:
        colors = torch.full_like(points, 0.5)
    if colors.shape != points.shape:
        raise ShapeError(f"colors: expected {list(points.shape)}, got {list(colors.shape)}")
    rows = np.empty(points.shape[0], dtype=POINT_PROPERTIES)
    xyz = points.detach().float().cpu().numpy()
    rgb = (colors.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    for i, name in enumerate(("x", "y", "z")):
        rows[name] = xyz[:, i]
    for i, name in enumerate(("red", "green", "blue")):
        rows[name] = rgb[:, i]
    return _write_ply(path, rows)


def read_point_cloud(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Points ``[N,3]`` float32 and colours ``[N,3]`` uint8 of a coloured point-cloud PLY."""
    rows = _read_vertices(path, ("x", "y", "z", "red", "green", "blue"))
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


def write_gaussians_ply(path: str | Path, gaussians: Gaussians, *, batch: int = 0) -> Path:
    """One scene's Gaussians as a 3DGS PLY in the standard layout that 3DGS viewers open.

    Per vertex: ``x y z``, ``nx ny nz`` (zeros), ``f_dc_0..2`` (the SH DC term), ``f_rest_*`` (higher SH bands,
    channel-major: ``f_rest_{c * (K-1) + k}``), ``opacity`` as a logit, ``scale_0..2`` as logs and ``rot_0..3`` as a
    ``wxyz`` quaternion.
    """
    sh = gaussians.sh[batch].detach().float().cpu()  # [N,K,3]
    n, k, _ = sh.shape
    columns = {
        **{name: gaussians.means[batch, :, i] for i, name in enumerate(("x", "y", "z"))},
        **{name: torch.zeros(n) for name in ("nx", "ny", "nz")},
        **{f"f_dc_{c}": sh[:, 0, c] for c in range(3)},
        **{f"f_rest_{c * (k - 1) + j}": sh[:, 1 + j, c] for c in range(3) for j in range(k - 1)},
        "opacity": torch.logit(gaussians.opacities[batch].clamp(1e-6, 1 - 1e-6)),
        **{f"scale_{i}": gaussians.scales[batch, :, i].clamp_min(1e-12).log() for i in range(3)},
        **{f"rot_{i}": gaussians.quats[batch, :, i] for i in range(4)},
    }
    rows = np.empty(n, dtype=[(name, "f4") for name in columns])
    for name, values in columns.items():
        rows[name] = values.detach().float().cpu().numpy()
    return _write_ply(path, rows)


def read_gaussians_ply(path: str | Path) -> Gaussians:
    """A 3DGS PLY in the standard layout -> Gaussians with batch size 1 (activations undone: sigmoid, exp)."""
    names = _vertex_names(path)
    rest = sorted((n for n in names if n.startswith("f_rest_")), key=lambda n: int(n.rsplit("_", 1)[1]))
    k = 1 + len(rest) // 3
    if len(rest) % 3 or round(k**0.5) ** 2 != k:
        raise InputError(f"{path}: {len(rest)} f_rest_* properties do not form SH bands for 3 colours")
    required = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                "rot_0", "rot_1", "rot_2", "rot_3")  # fmt: skip
    rows = _read_vertices(path, (*required, *rest))

    def column(name: str) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(rows[name], dtype=np.float32))

    sh = torch.zeros(len(rows), k, 3)
    for c in range(3):
        sh[:, 0, c] = column(f"f_dc_{c}")
        for j in range(k - 1):
            sh[:, 1 + j, c] = column(f"f_rest_{c * (k - 1) + j}")
    stack = lambda *names: torch.stack([column(n) for n in names], dim=-1)[None]  # noqa: E731
    return Gaussians(
        means=stack("x", "y", "z"), scales=stack("scale_0", "scale_1", "scale_2").exp(),
        quats=stack("rot_0", "rot_1", "rot_2", "rot_3"), opacities=torch.sigmoid(column("opacity"))[None], sh=sh[None],
    )  # fmt: skip


def write_cameras_json(path: str | Path, cameras: Cameras, *, batch: int = 0, file_paths: list[str] | None = None) -> Path:
    """One clip's cameras in the nerfstudio ``transforms.json`` convention.

    Each frame gets ``transform_matrix``: camera-to-world with OpenGL/nerfstudio camera axes (x right, y up, z back),
    i.e. ``inverse(extrinsics) @ diag(1, -1, -1, 1)`` from our OpenCV world-to-camera extrinsics; and its own
    ``fl_x, fl_y, cx, cy, w, h`` in pixels. ``camera_model`` is ``OPENCV`` (no distortion).
    """
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))
    c2w = torch.linalg.inv(cameras.extrinsics[batch].detach().double().cpu()) @ flip
    k = cameras.intrinsics[batch].detach().double().cpu()
    h, w = cameras.image_size
    frames = []
    for v in range(c2w.shape[0]):
        frame = {"fl_x": float(k[v, 0, 0]), "fl_y": float(k[v, 1, 1]), "cx": float(k[v, 0, 2]), "cy": float(k[v, 1, 2]),
                 "w": w, "h": h, "transform_matrix": c2w[v].tolist()}  # fmt: skip
        if file_paths is not None:
            frame["file_path"] = file_paths[v]
        frames.append(frame)
    atomic_write_text(path, json.dumps({"camera_model": "OPENCV", "frames": frames}, indent=2) + "\n")
    return Path(path)


def read_cameras_json(path: str | Path) -> Cameras:
    """A nerfstudio-style ``transforms.json`` -> Cameras ``[1,V,...]`` (OpenCV world-to-camera, pixel intrinsics).

    Intrinsics may be per frame or shared at the top level; all frames must have one image size.
    """
    try:
        data = json.loads(Path(path).read_text())
        frames = data["frames"]
        shared = {k: data[k] for k in ("fl_x", "fl_y", "cx", "cy", "w", "h") if k in data}
        merged = [{**shared, **frame} for frame in frames]
        c2w = torch.tensor([f["transform_matrix"] for f in merged], dtype=torch.float64)
        intrinsics = torch.tensor([[[f["fl_x"], 0, f["cx"]], [0, f["fl_y"], f["cy"]], [0, 0, 1]] for f in merged], dtype=torch.float64)
        sizes = {(int(f["h"]), int(f["w"])) for f in merged}
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise InputError(f"{path}: not a transforms.json with frames[].transform_matrix and fl_x, fl_y, cx, cy, w, h ({exc!r})") from None
    if len(sizes) != 1 or c2w.shape[1:] != (4, 4):
        raise InputError(f"{path}: frames need 4x4 transform matrices and one image size, got sizes {sorted(sizes)}")
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))
    extrinsics = torch.linalg.inv(c2w @ flip)
    return Cameras(extrinsics.float()[None], intrinsics.float()[None], sizes.pop())


def _write_ply(path: str | Path, rows: np.ndarray) -> Path:
    from plyfile import PlyData, PlyElement

    buffer = io.BytesIO()
    PlyData([PlyElement.describe(rows, "vertex")], byte_order="<").write(buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def _vertex_names(path: str | Path) -> list[str]:
    return [p.name for p in _read_ply(path)["vertex"].properties]


def _read_vertices(path: str | Path, names: tuple[str, ...]) -> np.ndarray:
    vertices = _read_ply(path)["vertex"]
    missing = [n for n in names if n not in {p.name for p in vertices.properties}]
    if missing:
        raise InputError(f"{path}: PLY vertices lack {', '.join(missing[:5])}")
    return vertices.data


def _read_ply(path: str | Path):
    from plyfile import PlyData

    try:
        ply = PlyData.read(str(path))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except Exception as exc:
        raise InputError(f"{path}: not a readable PLY file: {exc}") from None
    if "vertex" not in ply:
        raise InputError(f"{path}: PLY file has no vertex element")
    return ply


def _pointmaps(source: PointMaps | Decoded3D) -> PointMaps:
    maps = source.points if isinstance(source, Decoded3D) else source
    if not isinstance(maps, PointMaps):
        raise InputError("nothing to export: no point maps")
    return maps
