"""The layer sweep's statistics: streaming normal equations for every candidate layer at once.

The design matrix X (im2col'd, interpolated latents) is the same for every layer, so one pass accumulates, per data
split, the augmented ``[X, 1]^T [X, 1]`` once and ``[X, 1]^T Y_k`` per layer, in float64. Memory is
``O(d^2 + L d C)`` whatever the number of clips. Each layer is then solved in closed form (ridge on the weights,
free bias) and scored on the held-out split from the same sums, so no second pass is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

SPLITS = ("fit", "heldout")
CRITERIA = ("relative_mse", "mse", "cka")  # the first is the default; cka is maximised, the others minimised


@dataclass(frozen=True)
class LayerFit:
    """A fitted linear map ``Y ~ X @ weight + bias`` and its scores."""

    weight: Tensor  # [d, C]
    bias: Tensor  # [C]
    mse: float  # held-out mean squared error per element (the paper's criterion)
    relative_mse: float  # held-out squared error / held-out target variance (comparable across layers)
    cka: float  # linear CKA between X and Y on the fit split
    fit_mse: float  # in-sample mean squared error
    fit_relative_mse: float


class SweepStatistics:
    """Sufficient statistics of ``(X, Y_k)`` for each layer ``k``, on a fit and a held-out split.

    Args:
        dim: columns of X (``C_in * kT * kH * kW``).
        channels: output channels ``C`` per layer.
    """

    def __init__(self, dim: int, channels: Mapping[str, int]) -> None:
        self.dim, self.channels = dim, dict(channels)
        f64 = torch.float64
        self.tensors: dict[str, Tensor] = {}
        for split in SPLITS:
            self.tensors[f"{split}.rows"] = torch.zeros((), dtype=f64)
            self.tensors[f"{split}.xtx"] = torch.zeros(dim + 1, dim + 1, dtype=f64)
            for layer, c in self.channels.items():
                self.tensors[f"{split}.xty.{layer}"] = torch.zeros(dim + 1, c, dtype=f64)
                self.tensors[f"{split}.yty_trace.{layer}"] = torch.zeros((), dtype=f64)
        for layer, c in self.channels.items():
            self.tensors[f"fit.yty.{layer}"] = torch.zeros(c, c, dtype=f64)

    def update(self, split: str, x: Tensor, targets: Mapping[str, Tensor]) -> None:
        """Add rows ``x [N, d]`` and, per layer, ``targets[k] [N, C_k]`` to ``split``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        xa = torch.cat([x.to(torch.float64), x.new_ones(x.shape[0], 1, dtype=torch.float64)], dim=1)
        t = self.tensors
        t[f"{split}.rows"] += x.shape[0]
        t[f"{split}.xtx"] += xa.T @ xa
        for layer, y in targets.items():
            y = y.to(torch.float64)
            t[f"{split}.xty.{layer}"] += xa.T @ y
            t[f"{split}.yty_trace.{layer}"] += (y * y).sum()
            if split == "fit":
                t[f"fit.yty.{layer}"] += y.T @ y

    def all_reduce(self) -> None:
        """Sum the statistics over processes when ``torch.distributed`` is initialised."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for tensor in self.tensors.values():
                torch.distributed.all_reduce(tensor)

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.tensors)

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        if set(state) != set(self.tensors) or any(state[k].shape != v.shape for k, v in self.tensors.items()):
            raise ValueError("saved sweep statistics do not match this sweep's layers and dimensions")
        self.tensors = {k: v.to(torch.float64).clone() for k, v in state.items()}

    def solve(self, layer: str, ridge: float = 1e-4) -> LayerFit:
        """Ridge fit of ``layer`` on the fit split (the bias is not regularised) and its scores."""
        t = self.tensors
        xtx, xty = t["fit.xtx"], t[f"fit.xty.{layer}"]
        penalty = torch.full((self.dim + 1,), ridge, dtype=torch.float64)
        penalty[-1] = 0.0
        w = _spd_solve(xtx + torch.diag(penalty), xty)
        fit = self._scores("fit", layer, w)
        heldout = self._scores("heldout", layer, w) if t["heldout.rows"] > 0 else fit
        return LayerFit(w[:-1], w[-1], heldout[0], heldout[1], self._cka(layer), fit[0], fit[1])

    def _scores(self, split: str, layer: str, w: Tensor) -> tuple[float, float]:
        """(MSE, relative MSE) of ``w`` on ``split``, from the sums alone."""
        t = self.tensors
        rows, xtx, xty = t[f"{split}.rows"], t[f"{split}.xtx"], t[f"{split}.xty.{layer}"]
        sse = t[f"{split}.yty_trace.{layer}"] - 2 * (w * xty).sum() + (w * (xtx @ w)).sum()
        y_sum = xty[-1]  # the ones column of X gives the sums of Y
        sst = t[f"{split}.yty_trace.{layer}"] - (y_sum * y_sum).sum() / rows
        sse = sse.clamp_min(0.0)
        return float(sse / (rows * w.shape[1])), float(sse / sst.clamp_min(torch.finfo(torch.float64).tiny))

    def _cka(self, layer: str) -> float:
        """Linear CKA ``||S_xy||^2 / (||S_xx|| ||S_yy||)`` with centred (co)variances of the fit split."""
        t = self.tensors
        rows = t["fit.rows"]
        x_sum, xtx = t["fit.xtx"][-1, :-1], t["fit.xtx"][:-1, :-1]
        xty, y_sum = t[f"fit.xty.{layer}"][:-1], t[f"fit.xty.{layer}"][-1]
        s_xx = xtx - torch.outer(x_sum, x_sum) / rows
        s_xy = xty - torch.outer(x_sum, y_sum) / rows
        s_yy = t[f"fit.yty.{layer}"] - torch.outer(y_sum, y_sum) / rows
        return float((s_xy**2).sum() / (torch.linalg.norm(s_xx) * torch.linalg.norm(s_yy)))


def choose(fits: Mapping[str, LayerFit], criterion: str = "relative_mse") -> str:
    """The layer with the lowest ``criterion`` (``mse``, ``relative_mse``) or the highest ``cka``."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; use one of {', '.join(CRITERIA)}")
    sign = -1.0 if criterion == "cka" else 1.0
    return min(fits, key=lambda k: sign * getattr(fits[k], criterion))


def _spd_solve(a: Tensor, b: Tensor) -> Tensor:
    """Solve ``a w = b`` for symmetric positive (semi-)definite ``a``: Cholesky, least squares if singular."""
    factor, info = torch.linalg.cholesky_ex(a)
    if int(info) == 0:
        return torch.cholesky_solve(b, factor)
    return torch.linalg.lstsq(a, b).solution

