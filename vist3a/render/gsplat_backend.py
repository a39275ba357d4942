"""The gsplat backend: a thin adapter over ``gsplat.rasterization`` (optional extra, imported lazily)."""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from vist3a.errors import InputError

META_KEYS = ("radii", "means2d", "depths", "conics")


@cache
def _module() -> ModuleType | None:
    try:
        return importlib.import_module("gsplat")
    except ImportError:
        return None


def available() -> bool:
    """Whether ``import gsplat`` works (its CUDA kernels are built on first use, not here)."""
    return _module() is not None


def rasterize(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor, viewmats: Tensor, Ks: Tensor,
    width: int, height: int, *, backgrounds: Tensor | None, **options: Any,
) -> tuple[Tensor, Tensor, dict[str, Any]]:  # fmt: skip
    """``vist3a.render.rasterize`` through gsplat, one call per batch element (gsplat 1.4 has no batch dims)."""
    gsplat = _module()
    if gsplat is None:
        raise InputError('backend "gsplat" needs gsplat, which is not installed: pip install "vist3a[gsplat]"')
    if not means.is_cuda:
        raise InputError(f"backend 'gsplat' needs CUDA tensors, got device {means.device}")
    batch = means.shape[:-2]
    flat = [t.reshape(-1, *t.shape[len(batch) :]) for t in (means, quats, scales, opacities, colors, viewmats, Ks)]
    bgs = [None] * len(flat[0]) if backgrounds is None else backgrounds.reshape(-1, *backgrounds.shape[len(batch) :])
    results = [
        gsplat.rasterization(*tensors, width, height, backgrounds=bg, packed=False, rasterize_mode="classic", **options)
        for *tensors, bg in zip(*flat, bgs)
    ]
    out, alphas = (torch.stack([r[i] for r in results]).reshape(*batch, *results[0][i].shape) for i in (0, 1))
    meta: dict[str, Any] = {"backend": "gsplat", "width": width, "height": height}
    for key in META_KEYS:
        value = torch.stack([r[2][key] for r in results])
        meta[key] = value.reshape(*batch, *value.shape[1:])
    return out, alphas, meta
