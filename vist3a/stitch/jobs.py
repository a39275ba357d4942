"""The stitching jobs behind ``vist3a sweep-layers`` and ``vist3a stitch``, over a pairing workspace."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from vist3a import distributed
from vist3a.errors import InputError
from vist3a.io.atomic import atomic_write_text
from vist3a.io.checkpoint import load_state_dict, write_state
from vist3a.io.clips import open_clips
from vist3a.io.plots import plot_losses, plot_sweep
from vist3a.protocols import Decoder3D, Generator
from vist3a.stitch.adapter import AdapterConfig
from vist3a.stitch.finetune import FinetuneConfig, FinetuneState, distillation_losses, finetune, make_teacher
from vist3a.stitch.statistics import CRITERIA, LayerFit, choose
from vist3a.stitch.stitched import LoraSettings, StitchedConfig, StitchedDecoder
from vist3a.stitch.sweep import SweepSetup, is_heldout, run_sweep
from vist3a.stitch.workspace import PairWorkspace

SWEEP_JSON, SWEEP_PNG, SWEEP_STATE, SWEEP_FITS = "sweep.json", "sweep.png", "sweep_state.safetensors", "sweep_fits.safetensors"
STITCH_STATE, STITCH_PNG, STITCHED_DIR = "stitch_state.safetensors", "stitch_loss.png", "stitched"


def open_workspace_clips(workspace: PairWorkspace, data: str, clips: int):
    """The first ``clips`` clips of ``data`` at the workspace's frame count and generator resolution."""
    if clips < 1:
        raise InputError(f"--clips must be >= 1, got {clips}")
    dataset = open_clips(data, frames=workspace.frames, size=workspace.generator_resolution)
    return Subset(dataset, range(min(clips, len(dataset))))


def sweep_layers(
    directory: Path, data: str, clips: int, *, heldout: float = 0.2, ridge: float = 1e-4,
    criterion: str = "relative_mse", device: str = "cpu", on_clip: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, LayerFit], str]:  # fmt: skip
    """Fit every stitch point in one pass; write sweep.json, sweep.png and each point's closed-form adapter."""
    if criterion not in CRITERIA:
        raise InputError(f"unknown criterion {criterion!r}; use one of {', '.join(CRITERIA)}")
    workspace = PairWorkspace.load(directory)
    _, _, device = distributed.setup(device)
    generator, decoder = workspace.load_models(device)
    dataset = open_workspace_clips(workspace, data, clips)
    points = [p.stitch_point() for p in workspace.stitch_points]
    setup = SweepSetup(points, {p.name: p.spec for p in workspace.stitch_points}, workspace.generator_resolution,
                       workspace.decoder_resolution, heldout, data=f"{data}#{len(dataset)}")  # fmt: skip
    sweep = run_sweep(generator, decoder, dataset, setup, state_path=directory / SWEEP_STATE, on_clip=on_clip)
    fits = sweep.fits(ridge)
    best = choose(fits, criterion)
    if not distributed.is_main():
        return fits, best
    scores = {name: {k: v for k, v in asdict(fit).items() if k not in ("weight", "bias")} for name, fit in fits.items()}
    report = {"layers": [{"name": n, **s} for n, s in scores.items()], "best": best, "criterion": criterion,
              "ridge": ridge, "heldout": heldout, "clips": len(dataset), "data": data,
              "heldout_clips": sum(is_heldout(i, heldout) for i in range(len(dataset)))}  # fmt: skip
    atomic_write_text(directory / SWEEP_JSON, json.dumps(report, indent=2) + "\n")
    write_state(directory / SWEEP_FITS, {f"{n}.{k}": getattr(f, k).float() for n, f in fits.items() for k in ("weight", "bias")}, {})
    plot_sweep(scores, best, directory / SWEEP_PNG)
    return fits, best


def chosen_layer(directory: Path, workspace: PairWorkspace, layer: str | None) -> str:
    """``layer``, else the sweep's best, else the registry pairing's default stitch point."""
    if layer:
        return workspace.point(layer).name
    if (directory / SWEEP_JSON).is_file():
        return json.loads((directory / SWEEP_JSON).read_text())["best"]
    if workspace.default_stitch_point:
        return workspace.default_stitch_point
    raise InputError("no stitch point chosen: run `vist3a sweep-layers` first or pass --layer")


def stitch(
    directory: Path, data: str, clips: int, config: FinetuneConfig, *, layer: str | None = None,
    lora: LoraSettings | None = LoraSettings(), device: str = "cpu", overwrite: bool = False,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[Path, FinetuneState]:  # fmt: skip
    """Closed-form adapter at the chosen point, then self-distillation; saves ``stitched/`` and the loss plot."""
    workspace = PairWorkspace.load(directory)
    name = chosen_layer(directory, workspace, layer)
    out = directory / STITCHED_DIR
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; pass --overwrite to replace it")
    _, _, device = distributed.setup(device)
    if out.exists() and distributed.is_main():  # a finished run is replaced, not resumed
        (directory / STITCH_STATE).unlink(missing_ok=True)
    distributed.barrier()
    generator, decoder = workspace.load_models(device)
    dataset = open_workspace_clips(workspace, data, clips)
    entry = workspace.point(name)
    weight, bias = _closed_form(directory, workspace, name, generator, decoder, dataset)
    teacher = make_teacher(decoder)
    stitched_config = StitchedConfig(
        decoder=workspace.decoder.id, decoder_checkpoint=workspace.decoder.checkpoint, stitch_point=name,
        adapter=AdapterConfig(spec=entry.spec, in_channels=generator.latent.channels,
                              temporal_factor=generator.latent.temporal_factor),
        lora=lora, decoder_resolution=workspace.decoder_resolution,
    )  # fmt: skip
    stitched = StitchedDecoder(stitched_config, decoder).to(device)
    stitched.adapter.set_linear(weight, bias)
    state = finetune(stitched, teacher, generator, dataset, config, generator_size=workspace.generator_resolution,
                     state_path=directory / STITCH_STATE, on_step=on_step)  # fmt: skip
    if distributed.is_main():
        if state.history:
            plot_losses(state.history, directory / STITCH_PNG)
        stitched.save_pretrained(out, overwrite=overwrite)
    distributed.barrier()
    return out, state


def evaluate(directory: Path, data: str, clips: int, device: str = "cpu") -> dict[str, float]:
    """Mean weighted L1 per head between the saved stitched decoder and the original decoder on ``data``."""
    workspace = PairWorkspace.load(directory)
    generator, decoder = workspace.load_models(device)
    stitched = StitchedDecoder.from_pretrained(directory / STITCHED_DIR, device=device)
    dataset = open_workspace_clips(workspace, data, clips)
    totals: dict[str, float] = {}
    with torch.no_grad():
        for i in range(len(dataset)):
            losses = distillation_losses(stitched, decoder, generator, dataset[i][None], workspace.generator_resolution)
            for key, value in losses.items():
                totals[key] = totals.get(key, 0.0) + float(value) / len(dataset)
    return totals


def _closed_form(directory: Path, workspace: PairWorkspace, name: str, generator: Generator, decoder: Decoder3D,
                 dataset: Dataset) -> tuple[Tensor, Tensor]:  # fmt: skip
    """The point's ridge fit from sweep-layers, or a one-point sweep over ``dataset`` when there is none."""
    fits_path = directory / SWEEP_FITS
    if fits_path.is_file():
        saved = load_state_dict(fits_path)
        if f"{name}.weight" in saved:
            return saved[f"{name}.weight"], saved[f"{name}.bias"]
    entry = workspace.point(name)
    setup = SweepSetup([entry.stitch_point()], {name: entry.spec}, workspace.generator_resolution, workspace.decoder_resolution, 0.0)
    fit = run_sweep(generator, decoder, dataset, setup).fits()[name]
    return fit.weight.float(), fit.bias.float()
