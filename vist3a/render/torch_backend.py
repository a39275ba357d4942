"""The reference rasterizer in plain PyTorch: CPU or GPU, differentiable, gsplat's "classic" 3DGS semantics.

Inputs arrive flattened to one batch dimension ``B`` (see ``rasterize``). Steps:

1. ``project``: EWA splatting. Camera-space means, ``Sigma2D = J W Sigma W^T J^T + eps2d * I`` with the Jacobian's
   ``x/z, y/z`` clamped to 1.3x the field of view, conics, and an integer bounding box of
   ``min(3.33, sqrt(2 ln(255 * opacity)))`` marginal sigmas per axis. Gaussians behind ``near_plane``, beyond
   ``far_plane``, fainter than 1/255, degenerate or off-screen get radius 0 and are skipped.
2. ``composite``: 16x16 pixel tiles. Every (tile, Gaussian) pair whose box touches the tile is listed and sorted by
   depth within its tile; tiles are processed in chunks of bounded size (``CHUNK_ELEMENTS`` pixel-Gaussian pairs,
   padded to the chunk's longest list) with ``alpha = min(0.999, o * exp(-d^T conic d / 2))``, alphas below 1/255
   skipped, and front-to-back compositing that stops before transmittance would fall to 1e-4. Under autograd
   each chunk is checkpointed, so memory stays at one chunk's intermediates plus the per-pair lists.

Since the box bounds the region where alpha can reach 1/255, the tiling changes speed, never the image.
``composite_pixels`` lists only the pixels inside each box and composites per pixel instead: the same image,
several times faster for the small Gaussians of per-pixel scenes. It is used without autograd, and under autograd
while the pairs number at most ``PIXEL_PAIRS_MAX`` (its memory grows with them; the tiles' does not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

TILE = 16
CHUNK_ELEMENTS = 1 << 22
PIXEL_PAIRS_MAX = 1 << 23
"""Under autograd, more (pixel, Gaussian) pairs than this go through the checkpointed tiles to bound memory."""
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4


@dataclass
class Projection:
    """Per camera and Gaussian, ``[B,C,N,*]``; radius 0 marks a culled Gaussian."""

    means2d: Tensor  # [B,C,N,2] pixels
    conics: Tensor  # [B,C,N,3] upper triangle of the inverse 2D covariance (a, b, c)
    depths: Tensor  # [B,C,N] camera z
    radii: Tensor  # [B,C,N,2] int32 half-widths of the box in pixels


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """``R diag(s^2) R^T`` ``[...,3,3]`` from ``quats [...,4]`` (wxyz, normalised here) and ``scales [...,3]``."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    rot = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).unflatten(-1, (3, 3))  # fmt: skip
    m = rot * scales[..., None, :]
    return m @ m.transpose(-1, -2)


def project(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, viewmats: Tensor, Ks: Tensor,
    width: int, height: int, eps2d: float, near_plane: float, far_plane: float,
) -> Projection:  # fmt: skip
    """Project ``[B,N,*]`` Gaussians into ``[B,C,*]`` cameras (gsplat's pinhole EWA projection)."""
    rot, trans = viewmats[..., None, :3, :3], viewmats[..., None, :3, 3]  # [B,C,1,3,3], [B,C,1,3]
    cam = (rot @ means[:, None, :, :, None]).squeeze(-1) + trans  # [B,C,N,3]
    z = cam[..., 2]
    valid = (z >= near_plane) & (z <= far_plane)
    z = torch.where(valid, z, torch.ones_like(z))  # keeps culled Gaussians from making NaN gradients
    fx, fy, cx, cy = (Ks[..., i, j, None] for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))  # [B,C,1]
    u, v = cam[..., 0] / z, cam[..., 1] / z
    means2d = torch.stack([fx * u + cx, fy * v + cy], dim=-1)
    uc = torch.clamp(u, -(cx / fx + 0.15 * width / fx), (width - cx) / fx + 0.15 * width / fx)
    vc = torch.clamp(v, -(cy / fy + 0.15 * height / fy), (height - cy) / fy + 0.15 * height / fy)
    zero = torch.zeros_like(z)
    jac = torch.stack([fx / z, zero, -fx * uc / z, zero, fy / z, -fy * vc / z], dim=-1).unflatten(-1, (2, 3))
    jw = jac @ rot  # [B,C,N,2,3]
    cov2d = jw @ quat_scale_to_covar(quats, scales)[:, None] @ jw.transpose(-1, -2)
    a, b, c = cov2d[..., 0, 0] + eps2d, cov2d[..., 0, 1], cov2d[..., 1, 1] + eps2d
    det = a * c - b * b
    valid = valid & (det > 0)
    det = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)
    radii = _radii(means2d.detach(), a.detach(), c.detach(), opacities.detach()[:, None], valid, width, height)
    return Projection(means2d, conics, cam[..., 2], radii)


def _radii(means2d: Tensor, a: Tensor, c: Tensor, opacities: Tensor, valid: Tensor, width: int, height: int) -> Tensor:
    """Opacity-aware box half-widths ``[B,C,N,2]`` (int32, 0 = culled)."""
    extend = torch.sqrt(2 * torch.log(opacities.clamp(min=ALPHA_MIN) / ALPHA_MIN)).clamp(max=3.33)
    radius = torch.stack([torch.ceil(extend * a.sqrt()), torch.ceil(extend * c.sqrt())], dim=-1)
    lo, hi = means2d - radius, means2d + radius
    size = means2d.new_tensor([width, height])
    valid = valid & (opacities >= ALPHA_MIN) & (hi > 0).all(-1) & (lo < size).all(-1)
    return torch.where(valid[..., None], radius, 0).to(torch.int32)


def composite(proj: Projection, opacities: Tensor, features: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:
    """Alpha-composite front to back. ``opacities [B,C,N]``, ``features [B,C,N,D]`` ->
    ``(features [B,C,H,W,D], alphas [B,C,H,W,1])``, without background."""
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (proj.means2d, proj.conics, opacities, features))
    if not grad or _pixel_pairs(proj, width, height) <= PIXEL_PAIRS_MAX:
        return composite_pixels(proj, opacities, features, width, height)
    b, c, n, d = features.shape
    tw, th = -(-width // TILE), -(-height // TILE)
    means2d, conics = proj.means2d.reshape(-1, 2), proj.conics.reshape(-1, 3)
    opacities, features = opacities.reshape(-1), features.reshape(-1, d)
    pairs_tile, pairs_gauss = _tile_pairs(proj, tw, th)
    counts = torch.bincount(pairs_tile, minlength=b * c * th * tw)
    starts = torch.cumsum(counts, 0) - counts
    tiles = torch.nonzero(counts).squeeze(1)
    tiles = tiles[torch.argsort(counts[tiles], stable=True)]
    colors, alphas, pixels = [], [], []
    for chunk in _chunks(tiles, counts):
        m = int(counts[chunk[-1]])
        slot = torch.arange(m, device=chunk.device)
        used = slot < counts[chunk, None]  # [t,M]
        gauss = pairs_gauss[(starts[chunk, None] + slot).clamp(max=pairs_gauss.numel() - 1)]
        xy, pixel_ids = _tile_pixels(chunk, tw, th, features.dtype)
        args = (xy, means2d[gauss], conics[gauss], torch.where(used, opacities[gauss], 0), features[gauss])
        rgb, alpha = _checkpointed(_composite_tiles, *args)
        colors.append(rgb.reshape(-1, d))
        alphas.append(alpha.reshape(-1, 1))
        pixels.append(pixel_ids.reshape(-1))
    total = b * c * th * TILE * tw * TILE
    image, alpha = features.new_zeros(total, d), features.new_zeros(total, 1)
    if pixels:
        ids = torch.cat(pixels)
        image, alpha = image.index_copy(0, ids, torch.cat(colors)), alpha.index_copy(0, ids, torch.cat(alphas))
    return _crop(image, b, c, th, tw, width, height), _crop(alpha, b, c, th, tw, width, height)


def composite_pixels(proj: Projection, opacities: Tensor, features: Tensor, width: int,
                     height: int) -> tuple[Tensor, Tensor]:  # fmt: skip
    """:func:`composite` one image at a time over only the (pixel, Gaussian) pairs inside each Gaussian's box,
    composited per pixel by a segmented sum of ``log(1 - alpha)`` in float64. Far fewer pairs than the tiles' dense
    lists when Gaussians are small, as in per-pixel Gaussian scenes; the same image. Differentiable, with memory
    linear in the number of pairs (no checkpointing)."""
    b, c, n, d = features.shape
    flat = [
        _composite_image(proj.means2d[i, j], proj.conics[i, j], proj.radii[i, j], proj.depths[i, j], opacities[i, j],
                         features[i, j], width, height)  # fmt: skip
        for i in range(b) for j in range(c)
    ]  # fmt: skip
    image = torch.stack([f for f, _ in flat]).reshape(b, c, height, width, d)
    alpha = torch.stack([a for _, a in flat]).reshape(b, c, height, width, 1)
    return image, alpha


def _composite_image(means2d: Tensor, conics: Tensor, radii: Tensor, depths: Tensor, opacities: Tensor,
                     features: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:  # fmt: skip
    gauss = torch.nonzero((radii > 0).all(-1)).squeeze(1)
    gauss = gauss[torch.argsort(depths.detach()[gauss], stable=True)]
    owner, x, y = _cells_in_boxes(*_pixel_boxes(means2d[gauss], radii[gauss], width, height))
    g = gauss[owner]
    dx, dy = x.to(means2d.dtype) + 0.5 - means2d[g, 0], y.to(means2d.dtype) + 0.5 - means2d[g, 1]
    alpha = _splat_alpha(dx, dy, *conics[g].unbind(-1), opacities[g])
    keep = alpha > 0
    pixel, g, alpha = (y * width + x)[keep], g[keep], alpha[keep].double()
    order = torch.argsort(pixel, stable=True)  # pairs are already in depth order
    pixel, g, alpha = pixel[order], g[order], alpha[order]
    log_keep = torch.log1p(-alpha)
    before = torch.cumsum(log_keep, 0) - log_keep  # log transmittance before each pair, not yet per pixel
    counts = torch.bincount(pixel, minlength=width * height)
    starts = torch.cumsum(counts, 0) - counts
    before = before - before[starts[pixel]]
    weights = torch.where(before + log_keep > math.log(T_MIN), alpha * before.exp(), 0)
    weights = weights.to(features.dtype)
    image = features.new_zeros(width * height, features.shape[-1]).index_add_(0, pixel, weights[:, None] * features[g])
    return image, features.new_zeros(width * height).index_add_(0, pixel, weights)


def _cells_in_boxes(lo: Tensor, span: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Every grid cell of every box (first cell ``lo [K,2]``, extent ``span [K,2]``) as ``(box index, x, y)``."""
    count = span[:, 0] * span[:, 1]
    owner = torch.repeat_interleave(torch.arange(len(lo), device=lo.device), count)
    k = torch.arange(owner.numel(), device=lo.device) - (torch.cumsum(count, 0) - count)[owner]
    return owner, lo[owner, 0] + k % span[owner, 0], lo[owner, 1] + k // span[owner, 0]


def _splat_alpha(dx: Tensor, dy: Tensor, a: Tensor, b: Tensor, c: Tensor, opacities: Tensor) -> Tensor:
    """``min(0.999, o * exp(-d^T conic d / 2))`` at offsets ``(dx, dy)``; 0 where it is below 1/255 (or invalid)."""
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    alpha = (opacities * torch.exp(-sigma)).clamp(max=ALPHA_MAX)
    return torch.where((sigma >= 0) & (alpha >= ALPHA_MIN), alpha, 0)


def _pixel_boxes(means2d: Tensor, radii: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:
    """First pixel ``(x, y)`` and extent of the pixels whose centres may lie in each box, clipped to the image."""
    with torch.no_grad():
        lo = torch.floor(means2d - radii - 0.5).long().clamp(min=0)
        hi = torch.minimum(torch.ceil(means2d + radii - 0.5).long(), torch.tensor([width - 1, height - 1]).to(lo))
        return lo, (hi - lo + 1).clamp(min=0)


def _pixel_pairs(proj: Projection, width: int, height: int) -> int:
    """How many (pixel, Gaussian) pairs :func:`composite_pixels` would list."""
    radii = proj.radii.reshape(-1, 2)
    _, span = _pixel_boxes(proj.means2d.reshape(-1, 2), radii, width, height)
    return int((span.prod(-1) * (radii > 0).all(-1)).sum())


def _crop(flat: Tensor, b: int, c: int, th: int, tw: int, width: int, height: int) -> Tensor:
    return flat.reshape(b, c, th * TILE, tw * TILE, -1)[:, :, :height, :width]


def _tile_pairs(proj: Projection, tw: int, th: int) -> tuple[Tensor, Tensor]:
    """Every (global tile id, flat Gaussian id) whose box touches the tile, sorted by tile then depth."""
    with torch.no_grad():
        radii = proj.radii.reshape(-1, 2)
        means2d = proj.means2d.reshape(-1, 2)
        gauss = torch.nonzero((radii > 0).all(-1)).squeeze(1)
        image = gauss // proj.radii.shape[2]
        lo = torch.floor((means2d[gauss] - radii[gauss]) / TILE).long()
        hi = torch.ceil((means2d[gauss] + radii[gauss]) / TILE).long()
        grid = torch.tensor([tw, th], device=lo.device)
        lo, hi = torch.minimum(lo.clamp(min=0), grid), torch.minimum(hi.clamp(min=0), grid)
        owner, tx, ty = _cells_in_boxes(lo, hi - lo)
        tile = (image[owner] * th + ty) * tw + tx
        pair_gauss = gauss[owner]
        by_depth = torch.argsort(proj.depths.detach().reshape(-1)[pair_gauss], stable=True)
        by_tile = torch.argsort(tile[by_depth], stable=True)
        order = by_depth[by_tile]
        return tile[order], pair_gauss[order]


def _chunks(tiles: Tensor, counts: Tensor) -> list[Tensor]:
    """Split tiles (sorted by pair count) into runs of at most ``CHUNK_ELEMENTS`` padded pixel-Gaussian pairs."""
    chunks, begin = [], 0
    sizes = counts[tiles].tolist()
    for i, size in enumerate(sizes):
        if (i + 1 - begin) * TILE * TILE * size > CHUNK_ELEMENTS and i > begin:
            chunks.append(tiles[begin:i])
            begin = i
    return chunks + [tiles[begin:]] if sizes else chunks


def _tile_pixels(tiles: Tensor, tw: int, th: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Pixel centres ``[t,P,2]`` (x, y at +0.5) and flat ids into the padded images ``[t,P]``."""
    image, rest = tiles // (th * tw), tiles % (th * tw)
    local = torch.arange(TILE, device=tiles.device)
    y = (rest // tw)[:, None, None] * TILE + local[None, :, None]
    x = (rest % tw)[:, None, None] * TILE + local[None, None, :]
    ids = (image[:, None, None] * th * TILE + y) * (tw * TILE) + x
    xy = torch.stack(torch.broadcast_tensors(x, y), dim=-1).to(dtype) + 0.5
    return xy.reshape(len(tiles), -1, 2), ids.reshape(len(tiles), -1)


def _checkpointed(fn, *args: Tensor) -> tuple[Tensor, Tensor]:
    if torch.is_grad_enabled() and any(a.requires_grad for a in args):
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


def _composite_tiles(xy: Tensor, means2d: Tensor, conics: Tensor, opacities: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
    """``xy [t,P,2]``; per tile, depth-sorted ``means2d [t,M,2]``, ``conics [t,M,3]``, ``opacities [t,M]``,
    ``features [t,M,D]`` -> ``(features [t,P,D], alpha [t,P])``."""
    delta = xy[:, :, None, :] - means2d[:, None, :, :]  # [t,P,M,2]
    dx, dy = delta.unbind(-1)
    alpha = _splat_alpha(dx, dy, *(conics[:, None, :, i] for i in range(3)), opacities[:, None, :])
    transmittance = torch.cumprod(1 - alpha, dim=-1)  # after each Gaussian
    before = torch.cat([torch.ones_like(transmittance[..., :1]), transmittance[..., :-1]], dim=-1)
    weights = torch.where(transmittance > T_MIN, alpha * before, 0)
    return weights @ features, weights.sum(-1)
