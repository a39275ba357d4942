"""A vectorised PyTorch ray caster with exact intersections: the ground truth of the synthetic world.

Every pixel centre casts one ray (no anti-aliasing, so colour, depth and ids describe the same point). Intersections
are analytic: a sphere, a yawed box, a capped cylinder, a cone with its base, and the ground plane ``z = 0``. Shading is
Lambert under one directional light plus ambient; the ground is a checkerboard of :data:`TILE` squares; rays that hit
nothing see a plain sky. Where the tiles shrink below a few pixels their contrast fades out (instead of aliasing).

Rays are parametrised as ``origin + t * direction`` with ``direction = R^T K^-1 [u, v, 1]``, so ``t`` is the z-depth
(the distance along the optical axis, as VGGT's depth) and a surface point is ``inv(E) @ (depth * K^-1 [u, v, 1])``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from vist3a.errors import ShapeError
from vist3a_synth.world import COLOURS, SceneObject

LIGHT = (0.45, -0.35, 0.82)  # direction towards the light, world coordinates (normalised below)
AMBIENT = 0.35
SKY = (0.62, 0.76, 0.93)
GROUND = ((0.58, 0.58, 0.56), (0.44, 0.44, 0.43))  # the two checker colours
TILE = 0.5
EPS = 1e-4

Hit = tuple[Tensor, Tensor]  # t [N] (inf where missed) and unit normals [N,3], in the object's local frame


@dataclass
class Render:
    """Per view and pixel: ``rgb [V,3,H,W]`` in [0,1]; ``depth [V,H,W]`` z-depth, 0 where the ray sees sky;
    ``ids [V,H,W]`` int64: k + 1 where object k of the scene is seen, 0 for the ground and the sky."""

    rgb: Tensor
    depth: Tensor
    ids: Tensor

    @property
    def valid(self) -> Tensor:
        """``[V,H,W]`` bool: a surface (object or ground) is seen, so ``depth`` is defined."""
        return self.depth > 0


def raycast(objects: Sequence[SceneObject], intrinsics: Tensor, extrinsics: Tensor, size: tuple[int, int]) -> Render:
    """Render ``objects`` on the ground plane from each camera.

    Args:
        objects: the scene's objects; ``ids`` number them from 1 in this order.
        intrinsics: ``[V,3,3]`` pixels of ``size``, pixel ``(i, j)`` centred at ``(j + 0.5, i + 0.5)``.
        extrinsics: ``[V,4,4]`` world-to-camera, OpenCV (x right, y down, z forward).
        size: ``(H, W)``.
    """
    if intrinsics.ndim != 3 or intrinsics.shape[1:] != (3, 3) or extrinsics.shape != (len(intrinsics), 4, 4):
        raise ShapeError(f"raycast: expected intrinsics [V,3,3] and extrinsics [V,4,4], got {list(intrinsics.shape)} and "
                         f"{list(extrinsics.shape)}")  # fmt: skip
    origins, directions = _rays(intrinsics.double(), extrinsics.double(), size)  # float64: exact to ~1e-9
    hits = [_ground(origins, directions)] + [_object_hit(o, origins, directions) for o in objects]
    ts = torch.stack([t for t, _ in hits])  # [K+1,N]
    depth, best = ts.min(dim=0)
    tile_pixels = TILE * intrinsics[:, 0, 0].double().repeat_interleave(size[0] * size[1]) / depth  # a tile's width
    rgb = _shade(objects, origins + depth[:, None] * directions, _pick(torch.stack([n for _, n in hits]), best), best, tile_pixels)
    sky = depth.isinf()
    rgb = torch.where(sky[:, None], rgb.new_tensor(SKY), rgb)
    v, (h, w) = len(intrinsics), size
    return Render(
        rgb=rgb.reshape(v, h, w, 3).permute(0, 3, 1, 2).float().contiguous(),
        depth=torch.where(sky, 0.0, depth).reshape(v, h, w).float(),
        ids=torch.where(sky, 0, best).reshape(v, h, w),
    )


def _rays(intrinsics: Tensor, extrinsics: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """World origins and directions ``[V*H*W,3]`` with camera-space direction ``K^-1 [u, v, 1]`` (z = 1)."""
    h, w = size
    ys, xs = torch.meshgrid(torch.arange(h, dtype=intrinsics.dtype) + 0.5, torch.arange(w, dtype=intrinsics.dtype) + 0.5, indexing="ij")
    pixels = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(-1, 3)  # [H*W,3]
    rotation, translation = extrinsics[:, :3, :3], extrinsics[:, :3, 3]
    directions = pixels @ torch.linalg.inv(intrinsics).transpose(1, 2) @ rotation  # row form of R^T K^-1 p: [V,H*W,3]
    origins = -(rotation.transpose(1, 2) @ translation[..., None])[..., 0]  # camera centres [V,3]
    return origins[:, None].expand_as(directions).reshape(-1, 3), directions.reshape(-1, 3)


def _shade(objects: Sequence[SceneObject], points: Tensor, normals: Tensor, best: Tensor, tile_pixels: Tensor) -> Tensor:
    """Lambert plus ambient colour ``[N,3]`` of the surface ``best`` (0 ground, k + 1 object k) at ``points [N,3]``."""
    palette = torch.tensor([(0.0, 0.0, 0.0)] + [COLOURS[o.colour] for o in objects], dtype=points.dtype)
    albedo = torch.where((best == 0)[:, None], _checker(points, tile_pixels), palette[best])
    light = torch.nn.functional.normalize(points.new_tensor(LIGHT), dim=0)
    return albedo * (AMBIENT + (1 - AMBIENT) * (normals @ light).clamp_min(0))[:, None]


def _ground(o: Tensor, d: Tensor) -> Hit:
    t = torch.where(d[:, 2] < 0, -o[:, 2] / d[:, 2], math.inf)
    t = torch.where(t > EPS, t, math.inf)
    return t, o.new_tensor([0.0, 0.0, 1.0]).expand_as(o)


def _checker(points: Tensor, tile_pixels: Tensor) -> Tensor:
    """Checker colours at ground ``points [N,3]``, fading to their mean where tiles shrink below 6 pixels (no aliasing)."""
    odd = ((points[:, 0] / TILE).floor() + (points[:, 1] / TILE).floor()).remainder(2)[:, None]
    light, dark = (points.new_tensor(c) for c in GROUND)
    contrast = ((tile_pixels[:, None] - 2) / 4).clamp(0, 1)
    return (light + dark) / 2 + contrast * torch.where(odd > 0.5, dark - light, light - dark) / 2


def _object_hit(obj: SceneObject, o: Tensor, d: Tensor) -> Hit:
    """Intersect in the object's frame (origin at its position on the ground, yaw undone) and rotate the normal back."""
    c, s = math.cos(obj.yaw), math.sin(obj.yaw)
    to_local = o.new_tensor([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # R_z(-yaw)
    shift = o.new_tensor([*obj.position, 0.0])
    t, normal = SHAPES[obj.shape]((o - shift) @ to_local.T, d @ to_local.T, obj.extent)
    return t, normal @ to_local


def _nearest(candidates: Sequence[tuple[Tensor, Tensor, Tensor]]) -> Hit:
    """The nearest of several ``(t [N], valid [N], normal [N,3])`` candidates ahead of the origin."""
    ts = torch.stack([torch.where(valid & (t > EPS), t, math.inf) for t, valid, _ in candidates])
    t, best = ts.min(dim=0)
    return t, torch.nn.functional.normalize(_pick(torch.stack([n for _, _, n in candidates]), best), dim=-1)


def _pick(values: Tensor, index: Tensor) -> Tensor:
    """``values [K,N,3]`` at ``index [N]`` along K -> ``[N,3]``."""
    return values.gather(0, index[None, :, None].expand(1, -1, values.shape[-1]))[0]


def _roots(a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """The roots ``(smaller, larger)`` of ``a t^2 + 2 b t + c = 0``, NaN where there is none (a tangent within rounding
    counts); computed without cancellation as ``q / a`` and ``c / q`` with ``q = -(b + sign(b) sqrt(b^2 - ac))``."""
    disc = b * b - a * c
    root = torch.where(disc >= -1e-12 * (b * b + (a * c).abs()), disc.clamp_min(0).sqrt(), torch.nan)
    q = -(b + torch.where(b < 0, -root, root))
    t1, t2 = q / a, c / q
    return torch.minimum(t1, t2), torch.maximum(t1, t2)


def _cap(o: Tensor, d: Tensor, z: float, radius: float, up: float) -> tuple[Tensor, Tensor, Tensor]:
    """A horizontal disc of ``radius`` at height ``z`` about the local z axis, its normal pointing ``up`` (+1 or -1);
    only rays entering through it (against the normal) count."""
    t = (z - o[:, 2]) / d[:, 2]
    p = o + t[:, None] * d
    inside = (p[:, 0] ** 2 + p[:, 1] ** 2 <= radius * radius) & (d[:, 2] * up < 0)
    return t, inside, o.new_tensor([0.0, 0.0, up]).expand_as(o)


def _within(z: Tensor, low: float, high: float) -> Tensor:
    """``low <= z <= high`` up to rounding (a ray through a cone's apex or along an edge still hits)."""
    return (z >= low - 1e-6) & (z <= high + 1e-6)


def _sphere(o: Tensor, d: Tensor, s: float) -> Hit:
    oc = o - o.new_tensor([0.0, 0.0, s])
    t, _ = _roots((d * d).sum(-1), (oc * d).sum(-1), (oc * oc).sum(-1) - s * s)
    return _nearest([(t, t.isfinite(), oc + t[:, None] * d)])


def _box(o: Tensor, d: Tensor, s: float) -> Hit:
    low, high = o.new_tensor([-s, -s, 0.0]), o.new_tensor([s, s, 2 * s])
    t1, t2 = (low - o) / d, (high - o) / d
    enter, axis = torch.minimum(t1, t2).max(dim=-1)
    leave = torch.maximum(t1, t2).min(dim=-1).values
    normal = -torch.nn.functional.one_hot(axis, 3).to(d.dtype) * d.sign()
    return _nearest([(enter, enter <= leave, normal)])


def _cylinder(o: Tensor, d: Tensor, s: float) -> Hit:
    t, _ = _roots(d[:, 0] ** 2 + d[:, 1] ** 2, o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1], o[:, 0] ** 2 + o[:, 1] ** 2 - s * s)
    p = o + t[:, None] * d
    side = (t, _within(p[:, 2], 0.0, 2 * s), p * p.new_tensor([1.0, 1.0, 0.0]))
    return _nearest([side, _cap(o, d, 2 * s, s, 1.0), _cap(o, d, 0.0, s, -1.0)])


def _cone(o: Tensor, d: Tensor, s: float) -> Hit:
    """Apex at height ``2s``, base radius ``s``: ``x^2 + y^2 = k^2 (2s - z)^2`` with ``k = 1/2``, ``0 <= z <= 2s``."""
    k2, w = 0.25, 2 * s - o[:, 2]
    a = d[:, 0] ** 2 + d[:, 1] ** 2 - k2 * d[:, 2] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1] + k2 * w * d[:, 2]
    sides = []
    for t in _roots(a, b, o[:, 0] ** 2 + o[:, 1] ** 2 - k2 * w * w):
        p = o + t[:, None] * d
        normal = torch.stack([p[:, 0], p[:, 1], k2 * (2 * s - p[:, 2])], dim=-1)  # outward (zero at the apex)
        sides.append((t, _within(p[:, 2], 0.0, 2 * s), normal))  # the upper nappe lies above 2s
    return _nearest([*sides, _cap(o, d, 0.0, s, -1.0)])


SHAPES: dict[str, Callable[[Tensor, Tensor, float], Hit]] = {
    "sphere": _sphere,
    "cube": _box,
    "cylinder": _cylinder,
    "cone": _cone,
}
