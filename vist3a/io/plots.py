"""Small PNG plots of sweep scores and training losses (matplotlib, written atomically)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from vist3a.io.atomic import atomic_write_bytes


def plot_sweep(scores: Mapping[str, Mapping[str, float]], best: str, path: Path) -> None:
    """Held-out relative MSE, raw MSE and CKA per stitch point (in depth order), the chosen one marked."""
    names = list(scores)
    panels = (("relative_mse", "held-out relative MSE", True), ("mse", "held-out MSE", True), ("cka", "linear CKA", False))
    figure, axes = _figure(len(panels), width=max(6.0, 0.35 * len(names)))
    for axis, (key, label, log) in zip(axes, panels):
        axis.plot(range(len(names)), [scores[n][key] for n in names], marker="o")
        axis.axvline(names.index(best), color="tab:red", linestyle="--", label=f"chosen: {best}")
        axis.set_ylabel(label)
        axis.set_yscale("log" if log else "linear")
    axes[-1].set_xticks(range(len(names)), names, rotation=90)
    axes[0].legend()
    _save(figure, path)


def plot_losses(history: Sequence[Mapping[str, float]], path: Path) -> None:
    """Total and per-head distillation losses per step."""
    figure, (axis,) = _figure(1, width=7.0, height=max(2.6, 0.22 * len(history[0])))
    for key in history[0]:
        axis.plot([record[key] for record in history], label=key, linewidth=2 if key == "total" else 1)
    axis.set_xlabel("step")
    axis.set_yscale("log")
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the plot, never over it
    _save(figure, path)


def plot_curves(history: Sequence[Mapping[str, float]], path: Path) -> None:
    """One panel per recorded value (loss, each reward, ...) against the step, on a linear scale."""
    keys = list(history[0])
    figure, axes = _figure(len(keys), width=7.0)
    for axis, key in zip(axes, keys):
        axis.plot([record[key] for record in history], linewidth=1)
        axis.set_ylabel(key)
    axes[-1].set_xlabel("step")
    _save(figure, path)


def _figure(rows: int, width: float, height: float = 2.6):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(rows, 1, figsize=(width, height * rows), squeeze=False, sharex=True)
    return figure, list(axes[:, 0])


def _save(figure, path: Path) -> None:
    from matplotlib import pyplot

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    pyplot.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
