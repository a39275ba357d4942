"""Test-time refinement of MV-DUSt3R Gaussians on their source views (VIST3A, Sec. 5: MV-DUSt3R's predicted scales
generalise poorly, so its splats get 100 Adam steps of MSE + 0.05 LPIPS before rendering)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vist3a.errors import InputError, ShapeError
from vist3a.render import Backend, render
from vist3a.scene import Cameras, Gaussians

LEARNING_RATES = {"means": 2e-4, "opacities": 5e-4, "scales": 5e-4, "quats": 1e-4, "sh": 0.0}
"""The paper's per-parameter Adam learning rates (rgb, i.e. the SH colours, stays fixed)."""
STEPS, LPIPS_WEIGHT = 100, 0.05
BACKGROUND = 1.0
"""White, as upstream's Gaussian renderer."""


def load_lpips(net: str = "alex", device: str | torch.device = "cpu") -> Any:
    """The ``lpips`` package's metric, frozen; a one-line InputError says how to install it or turn it off."""
    try:
        import lpips
    except ImportError:
        raise InputError("refinement: lpips_weight > 0 needs LPIPS; install it with: pip install lpips (or pass lpips_weight=0)") from None
    return lpips.LPIPS(net=net, verbose=False).to(device).eval().requires_grad_(False)


def refine_gaussians(gaussians: Gaussians, cameras: Cameras, images: Tensor, *, steps: int = STEPS,
                     lpips_weight: float = LPIPS_WEIGHT, lpips: Any = None,
                     learning_rates: Mapping[str, float] = LEARNING_RATES, backend: Backend = "auto") -> Gaussians:  # fmt: skip
    """Optimise ``gaussians`` so that their renders at ``cameras`` match ``images [B,V,3,H,W]`` in [0,1].

    Loss: ``MSE + lpips_weight * LPIPS`` (LPIPS from ``lpips`` or, when None and the weight is > 0, the ``lpips``
    package's AlexNet metric). Adam with one learning rate per attribute (0 freezes it); opacities are kept in
    [0, 1]. Returns new, detached Gaussians; the input is not changed.
    """
    b, v = cameras.extrinsics.shape[:2]
    if images.shape != (b, v, 3, *cameras.image_size):
        raise ShapeError(f"images: expected [{b},{v},3,{cameras.image_size[0]},{cameras.image_size[1]}], got {list(images.shape)}")
    if set(learning_rates) != set(LEARNING_RATES):
        raise InputError(f"learning_rates: expected the keys {sorted(LEARNING_RATES)}, got {sorted(learning_rates)}")
    if lpips_weight > 0 and lpips is None:
        lpips = load_lpips(device=images.device)
    params = {k: getattr(gaussians, k).detach().clone().requires_grad_(learning_rates[k] > 0) for k in LEARNING_RATES}
    trained = [{"params": [params[k]], "lr": lr} for k, lr in learning_rates.items() if lr > 0]
    optimizer = torch.optim.Adam(trained) if trained else None
    target = images.permute(0, 1, 3, 4, 2)
    background = images.new_full((3,), BACKGROUND)
    for _ in range(steps if optimizer else 0):
        rgb = render(Gaussians(**params), cameras, mode="RGB", background=background, backend=backend).rgb
        loss = F.mse_loss(rgb, target)
        if lpips_weight > 0:
            pair = [x.flatten(0, 1).permute(0, 3, 1, 2) * 2 - 1 for x in (rgb, target)]
            loss = loss + lpips_weight * lpips(*pair).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            params["opacities"].clamp_(0, 1)
    return Gaussians(**{k: p.detach() for k, p in params.items()})
