"""``render``: ``Gaussians`` seen from ``Cameras``, as RGB, depth and alpha maps."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from vist3a.errors import InputError, ShapeError
from vist3a.render.rasterize import Backend, RenderMode, rasterize
from vist3a.scene import Cameras, Gaussians


@dataclass
class Rendered:
    """Images from ``render``; a map the mode did not ask for is None.

    Args:
        rgb: ``[B,V,H,W,3]`` linear colours, background included (unclamped: SH colours may exceed 1).
        depth: ``[B,V,H,W,1]`` camera z: accumulated ("D" modes) or expected ("ED" modes, 0 where alpha is 0).
        alpha: ``[B,V,H,W,1]`` accumulated opacity in [0, 1].
    """

    rgb: Tensor | None
    depth: Tensor | None
    alpha: Tensor

    def frames(self) -> Tensor:
        """``rgb`` as vist3a frames ``[B,3,V,H,W]`` in [-1, 1] (clamped)."""
        if self.rgb is None:
            raise InputError("frames() needs RGB: render with mode 'RGB', 'RGB+D' or 'RGB+ED'")
        return (self.rgb.clamp(0, 1) * 2 - 1).permute(0, 4, 1, 2, 3)


def render(
    gaussians: Gaussians,
    cameras: Cameras,
    *,
    image_size: tuple[int, int] | None = None,
    background: Tensor | None = None,
    mode: RenderMode = "RGB+ED",
    backend: Backend = "auto",
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> Rendered:
    """Render ``gaussians`` (``[B,N,*]``, all their SH bands) into every view of ``cameras`` (``[B,V,*]``).

    Args:
        image_size: ``(H, W)``; defaults to ``cameras.image_size`` (intrinsics are rescaled otherwise).
        background: RGB ``[3]`` or ``[B,V,3]``; black if None.
        mode, backend, near_plane, far_plane: as in ``rasterize``.
    """
    b, v = cameras.extrinsics.shape[:2]
    if gaussians.means.shape[0] != b:
        raise ShapeError(f"render: Gaussians have batch {gaussians.means.shape[0]}, cameras have batch {b}")
    if background is not None and background.shape not in ((3,), (b, v, 3)):
        raise ShapeError(f"background: expected [3] or [{b},{v},3], got {list(background.shape)}")
    size = image_size or cameras.image_size
    if size != cameras.image_size:
        cameras = cameras.resized(size)
    g = gaussians
    colors, alphas, _ = rasterize(
        g.means, g.quats, g.scales, g.opacities, g.sh, cameras.extrinsics, cameras.intrinsics, size[1], size[0],
        sh_degree=g.sh_degree, render_mode=mode, near_plane=near_plane, far_plane=far_plane, backend=backend,
        backgrounds=None if background is None or mode in ("D", "ED") else background.expand(b, v, 3),
    )  # fmt: skip
    rgb = None if mode in ("D", "ED") else colors[..., :3]
    depth = None if mode == "RGB" else colors[..., -1:]
    return Rendered(rgb=rgb, depth=depth, alpha=alphas)
