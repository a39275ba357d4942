"""``rasterize``: one low-level entry point over the torch reference and the gsplat backends."""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch
from torch import Tensor

from vist3a.errors import InputError, ShapeError
from vist3a.render import gsplat_backend, torch_backend
from vist3a.render.sh import MAX_DEGREE, eval_sh

RenderMode = Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"]
Backend = Literal["auto", "torch", "gsplat"]


def rasterize(
    means: Tensor,  # [..., N, 3]
    quats: Tensor,  # [..., N, 4]
    scales: Tensor,  # [..., N, 3]
    opacities: Tensor,  # [..., N]
    colors: Tensor,  # [..., (C,) N, D] or [..., (C,) N, K, 3]
    viewmats: Tensor,  # [..., C, 4, 4]
    Ks: Tensor,  # [..., C, 3, 3]
    width: int,
    height: int,
    *,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,  # [..., C, D]
    render_mode: RenderMode = "RGB",
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    backend: Backend = "auto",
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Rasterize N 3D Gaussians into C images, with the conventions and semantics of ``gsplat.rasterization``
    (``rasterize_mode="classic"``, pinhole cameras).

    Args:
        means: ``[..., N, 3]`` world coordinates; ``...`` are optional batch dimensions shared by every tensor.
        quats: ``[..., N, 4]`` rotations, ``wxyz``, normalised here.
        scales: ``[..., N, 3]`` linear standard deviations along the local axes.
        opacities: ``[..., N]`` in [0, 1].
        colors: with ``sh_degree=None``, features ``[..., N, D]`` or per camera ``[..., C, N, D]``, composited
            as given; otherwise SH coefficients ``[..., N, K, 3]`` or ``[..., C, N, K, 3]`` with
            ``(sh_degree + 1)^2 <= K``, evaluated along the direction from the camera centre to the mean, then
            ``max(colour + 0.5, 0)``.
        viewmats: ``[..., C, 4, 4]`` world-to-camera, OpenCV (x right, y down, z forward).
        Ks: ``[..., C, 3, 3]`` intrinsics in pixels of ``width x height``; pixel ``(i, j)`` has its centre at
            ``(j + 0.5, i + 0.5)``.
        width, height: image size in pixels.
        sh_degree: SH degree 0..4 to evaluate, or None for plain features.
        backgrounds: ``[..., C, D]`` colour behind the Gaussians, added as ``(1 - alpha) * background``; ignored
            by the depth channel.
        render_mode: "RGB" features; "D" accumulated z-depth ``sum_i w_i z_i``; "ED" expected depth
            ``D / alpha``; "RGB+D" and "RGB+ED" append that channel to the features.
        near_plane, far_plane: Gaussians whose camera z is outside ``[near, far]`` are culled.
        eps2d: added to the diagonal of every 2D covariance (pixels^2).
        backend: "torch" (our reference, any device), "gsplat" (CUDA) or "auto" (gsplat for CUDA tensors when it
            imports, else torch).

    Returns:
        ``render_colors [..., C, height, width, X]`` with X = D for "RGB", 1 for "D"/"ED", D + 1 for "RGB+D"/"RGB+ED";
        ``render_alphas [..., C, height, width, 1]``; ``meta`` with ``backend``, ``width``, ``height``, and per camera
        and Gaussian ``radii [..., C, N, 2]`` (int, 0 = culled), ``means2d [..., C, N, 2]``, ``depths [..., C, N]``
        and ``conics [..., C, N, 3]`` (inverse 2D covariance, upper triangle).

    .. warning::
        Not differentiable: ``meta["radii"]``, the culling and the depth order. Gradients flow to means, quats,
        scales, opacities, colors, viewmats and Ks otherwise (the torch backend; gsplat's own rules apply there).

    Example::

        colors, alphas, meta = rasterize(means, quats, scales, opacities, sh, viewmats, Ks, 64, 48, sh_degree=3)
    """
    batch, c = _check_shapes(means, quats, scales, opacities, colors, viewmats, Ks, sh_degree, backgrounds)
    _check_options(width, height, render_mode, backend)
    args = (means, quats, scales, opacities, colors, viewmats, Ks, width, height)
    options = dict(sh_degree=sh_degree, backgrounds=backgrounds, render_mode=render_mode,
                   near_plane=near_plane, far_plane=far_plane, eps2d=eps2d)  # fmt: skip
    if backend == "gsplat" or (backend == "auto" and means.is_cuda and gsplat_backend.available()):
        return gsplat_backend.rasterize(*args, **options)
    flat = [t.reshape(-1, *t.shape[len(batch) :]) for t in args[:7]]
    bg = None if backgrounds is None else backgrounds.reshape(-1, c, backgrounds.shape[-1])
    out, alphas, meta = _rasterize_torch(*flat, width, height, **{**options, "backgrounds": bg})
    meta.update({k: v.reshape(*batch, *v.shape[1:]) for k, v in meta.items() if isinstance(v, Tensor)})
    return out.reshape(*batch, *out.shape[1:]), alphas.reshape(*batch, *alphas.shape[1:]), meta


def _rasterize_torch(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor, viewmats: Tensor, Ks: Tensor,
    width: int, height: int, *, sh_degree: int | None, backgrounds: Tensor | None, render_mode: RenderMode,
    near_plane: float, far_plane: float, eps2d: float,
) -> tuple[Tensor, Tensor, dict[str, Any]]:  # fmt: skip
    """The torch backend on inputs with exactly one batch dimension ``B``."""
    proj = torch_backend.project(means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane)
    b, c, n = proj.depths.shape
    features = _colors(means, colors, viewmats, sh_degree, c)
    depth = proj.depths[..., None]
    if render_mode in ("D", "ED"):
        features, backgrounds = depth, None
    elif render_mode in ("RGB+D", "RGB+ED"):
        features = torch.cat([features, depth], dim=-1)
        backgrounds = None if backgrounds is None else torch.cat([backgrounds, backgrounds[..., :1] * 0], dim=-1)
    out, alphas = torch_backend.composite(proj, opacities[:, None].expand(b, c, n), features, width, height)
    if backgrounds is not None:
        out = out + (1 - alphas) * backgrounds[:, :, None, None, :]
    if render_mode in ("ED", "RGB+ED"):
        out = torch.cat([out[..., :-1], out[..., -1:] / alphas.clamp(min=1e-10)], dim=-1)
    meta = {"backend": "torch", "width": width, "height": height, "tile_size": torch_backend.TILE,
            "radii": proj.radii, "means2d": proj.means2d, "depths": proj.depths, "conics": proj.conics}  # fmt: skip
    return out, alphas, meta


def _colors(means: Tensor, colors: Tensor, viewmats: Tensor, sh_degree: int | None, c: int) -> Tensor:
    """Per-camera features ``[B,C,N,D]`` from plain features or SH coefficients (gsplat's offset and clamp)."""
    n = means.shape[1]
    if sh_degree is None:
        per_camera = colors if colors.ndim == 4 else colors[:, None]
        return per_camera.expand(-1, c, n, -1)
    centres = torch.linalg.inv(viewmats)[..., :3, 3]  # [B,C,3]
    dirs = means[:, None] - centres[:, :, None]  # [B,C,N,3]
    coeffs = colors if colors.ndim == 5 else colors[:, None]
    return torch.clamp_min(eval_sh(sh_degree, dirs, coeffs) + 0.5, 0.0)


def _check_shapes(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor, viewmats: Tensor, Ks: Tensor,
    sh_degree: int | None, backgrounds: Tensor | None,
) -> tuple[tuple[int, ...], int]:  # fmt: skip
    """Raise ShapeError on the first tensor off the contract; return ``(batch dims, C)``."""
    if means.ndim < 2 or means.shape[-1] != 3:
        raise ShapeError(f"means: expected [..., N, 3], got {list(means.shape)}")
    batch, n = tuple(means.shape[:-2]), means.shape[-2]
    if viewmats.ndim != len(batch) + 3 or viewmats.shape[-2:] != (4, 4):
        raise ShapeError(f"viewmats: expected [{_dims(batch)}C, 4, 4], got {list(viewmats.shape)}")
    c = viewmats.shape[-3]
    for name, tensor, want in (("quats", quats, (n, 4)), ("scales", scales, (n, 3)), ("opacities", opacities, (n,)),
                               ("viewmats", viewmats, (c, 4, 4)), ("Ks", Ks, (c, 3, 3))):  # fmt: skip
        if tuple(tensor.shape) != batch + want:
            raise ShapeError(f"{name}: expected {list(batch + want)}, got {list(tensor.shape)}")
    d = _check_colors(colors, batch, n, c, sh_degree)
    if backgrounds is not None and tuple(backgrounds.shape) != batch + (c, d):
        raise ShapeError(f"backgrounds: expected {list(batch + (c, d))}, got {list(backgrounds.shape)}")
    return batch, c


def _check_colors(colors: Tensor, batch: tuple[int, ...], n: int, c: int, sh_degree: int | None) -> int:
    """Validate ``colors`` against the contract; return the channel count D."""
    shape, k = tuple(colors.shape), len(batch)
    if sh_degree is None:
        if colors.ndim in (k + 2, k + 3) and shape[k:-1] in ((n,), (c, n)) and shape[:k] == batch:
            return shape[-1]
        raise ShapeError(f"colors: expected [{_dims(batch)}(C,) {n}, D], got {list(shape)}")
    if not 0 <= sh_degree <= MAX_DEGREE:
        raise InputError(f"sh_degree must be in 0..{MAX_DEGREE}, got {sh_degree}")
    need = (sh_degree + 1) ** 2
    ok = colors.ndim in (k + 3, k + 4) and shape[k:-2] in ((n,), (c, n)) and shape[:k] == batch
    if not ok or shape[-1] != 3 or shape[-2] < need:
        raise ShapeError(f"colors: expected SH [{_dims(batch)}(C,) {n}, K>={need}, 3], got {list(shape)}")
    return 3


def _check_options(width: int, height: int, render_mode: str, backend: str) -> None:
    if width < 1 or height < 1:
        raise InputError(f"image size must be positive, got width={width}, height={height}")
    if render_mode not in get_args(RenderMode):
        raise InputError(f"render_mode must be one of {', '.join(get_args(RenderMode))}, got {render_mode!r}")
    if backend not in get_args(Backend):
        raise InputError(f"backend must be one of {', '.join(get_args(Backend))}, got {backend!r}")


def _dims(batch: tuple[int, ...]) -> str:
    return "".join(f"{b}, " for b in batch)
