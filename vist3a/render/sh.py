"""Real spherical harmonics up to degree 4, in the basis and order gsplat and 3DGS use.

Index ``l*l + l + m`` holds ``Y_l^m`` for ``m = -l..l``; the basis carries the Condon-Shortley phase, so
``Y_1 = (-c*y, c*z, -c*x)`` with ``c = sqrt(3 / 4pi)``. Each basis function is written as
``norm * P_l^(m)(z) * Re/Im((x + iy)^|m|)``, with the Legendre derivative taken from numpy's polynomial
module, instead of hand-written constants.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch
from numpy.polynomial import legendre, polynomial
from torch import Tensor

from vist3a.errors import InputError, ShapeError

MAX_DEGREE = 4


@cache
def _terms(degree: int) -> tuple[tuple[int, float, tuple[float, ...]], ...]:
    """``(m, normalisation, coefficients of d^|m| P_l / dz^|m| in powers of z)`` for every basis up to ``degree``."""
    terms = []
    for l in range(degree + 1):
        for m in range(-l, l + 1):
            a = abs(m)
            k = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - a) / math.factorial(l + a))
            norm = k if m == 0 else (-1) ** a * math.sqrt(2) * k
            poly = legendre.leg2poly(np.eye(l + 1)[l])
            terms.append((m, norm, tuple(float(c) for c in polynomial.polyder(poly, a))))
    return tuple(terms)


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """Real SH basis ``[..., (degree+1)^2]`` at the unit directions ``dirs [..., 3]``."""
    if not 0 <= degree <= MAX_DEGREE:
        raise InputError(f"sh_degree must be in 0..{MAX_DEGREE}, got {degree}")
    x, y, z = dirs.unbind(-1)
    cos, sin = [torch.ones_like(x)], [torch.zeros_like(x)]  # Re and Im of (x + iy)^m
    for _ in range(degree):
        cos, sin = cos + [x * cos[-1] - y * sin[-1]], sin + [x * sin[-1] + y * cos[-1]]
    out = []
    for m, norm, coeffs in _terms(degree):
        legendre_part = sum(c * z**i for i, c in enumerate(coeffs))
        out.append(norm * legendre_part * (cos[m] if m >= 0 else sin[-m]))
    return torch.stack(out, dim=-1)


def eval_sh(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Colours ``[..., 3]`` from SH ``coeffs [..., K, 3]`` (the first ``(degree+1)^2`` are used) seen along
    ``dirs [..., 3]`` (any length, normalised here). Raw values: no +0.5 offset, no clamp."""
    k = (degree + 1) ** 2
    if coeffs.shape[-1] != 3 or coeffs.ndim < 2 or coeffs.shape[-2] < k:
        raise ShapeError(f"SH coefficients: expected [..., >={k}, 3] for degree {degree}, got {list(coeffs.shape)}")
    basis = sh_basis(degree, torch.nn.functional.normalize(dirs, dim=-1))
    return (basis[..., :, None] * coeffs[..., :k, :]).sum(-2)
