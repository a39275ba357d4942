"""Gaussian splatting renderer: one interface (gsplat's conventions) over a torch reference and gsplat.

``rasterize`` is the low-level ``gsplat.rasterization``-style call; ``render`` renders ``Gaussians`` into ``Cameras``.
See docs/rendering.md.
"""

from vist3a.render.gaussians import Rendered, render
from vist3a.render.rasterize import Backend, RenderMode, rasterize
from vist3a.render.sh import eval_sh, sh_basis

__all__ = ["Backend", "RenderMode", "Rendered", "eval_sh", "rasterize", "render", "sh_basis"]
