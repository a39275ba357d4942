"""``vist3a synth train decoder`` and ``vist3a synth eval-decoder``: synth-anysplat from scratch on the world."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Literal

import torch
import typer

from vist3a.commands.options import DeviceOpt, progress
from vist3a.errors import InputError
from vist3a_synth.cli import app, train

CONTEXT_VIEWS = 5
"""Views the model sees per training clip (a random sorted subset of the 9); some of the others are rendered."""
MODEL_FOLDER = "model"


@train.command("decoder")
def train_decoder(
    out: Annotated[Path, typer.Option("--out", help="Run folder (data cache, state, curves, model/).", show_default=False)],
    steps: Annotated[int, typer.Option(min=1, help="Optimisation steps.")] = 6000,
    seed: Annotated[int, typer.Option(min=0, help="Weights, batches and the training scenes' seed.")] = 0,
    scenes: Annotated[int, typer.Option(min=1, max=100_000, help="Training scenes rendered once.")] = 600,
    batch_size: Annotated[int, typer.Option(min=1, help="Clips per step.")] = 2,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak AdamW learning rate.")] = 3e-4,
    render_views: Annotated[int, typer.Option(min=0, help="Unseen views rendered per step (render loss), <= 4.")] = 1,
    warmup: Annotated[int, typer.Option(min=0, help="Linear learning-rate warm-up steps.")] = 0,
    camera_weight: Annotated[float, typer.Option(min=0.0, help="Weight of the camera loss (depth and render: 1).")] = 5.0,
    config: Annotated[Path | None, typer.Option(help="YAML or JSON file of architecture settings (embed_dim, depth, num_heads, patch_size, features); the rest keep the shipped model's.")] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Train synth-anysplat (depth, camera and held-out-view rendering losses); rerun to resume. Writes OUT/model/."""
    from vist3a_synth.decoder import FRAMES, SIZE, DecoderArchitecture, new_decoder, training_losses
    from vist3a_synth.training import TrainOptions, overrides, read_architecture, rendered
    from vist3a_synth.training import train as run

    _check_folder(out)
    if render_views > FRAMES - CONTEXT_VIEWS:
        raise InputError(f"--render-views {render_views}: a clip has only {FRAMES - CONTEXT_VIEWS} unseen views")
    torch.set_num_threads(1)
    architecture = read_architecture(config, DecoderArchitecture)
    decoder = new_decoder(seed, architecture).to(device)
    data, _ = rendered(out, "train", scenes, frames=FRAMES, size=SIZE, seed=seed)
    loss = {"render_views": render_views, "camera_weight": camera_weight}
    options = TrainOptions(steps=steps, lr=lr, batch_size=batch_size, seed=seed, warmup=warmup, loss=loss,
                           model=overrides(architecture))  # fmt: skip

    def loss_fn(step: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        clips = sample_clips(data, batch_size, generator, device)
        order = torch.randperm(FRAMES, generator=generator)
        views = order[:CONTEXT_VIEWS].sort().values
        targets = order[CONTEXT_VIEWS:][:render_views].sort().values
        return training_losses(decoder, clips, views, targets, camera_weight)

    with progress() as bar:
        task = bar.add_task("synth-anysplat", total=steps)
        state = run(decoder, loss_fn, options, out, lambda step, _: bar.update(task, completed=step))
    folder = decoder.half().save_pretrained(out / MODEL_FOLDER, overwrite=True)
    print(f"step {state.step}: loss {state.history[-1]['loss']:.4f}; wrote {folder}")


def sample_clips(data: dict[str, torch.Tensor], count: int, generator: torch.Generator,
                 device: str = "cpu") -> dict[str, torch.Tensor]:  # fmt: skip
    """``count`` random clips of ``rendered(...)`` tensors (labels left out) on ``device``, every tensor indexed by
    the same draw."""
    index = torch.randint(len(data["frames"]), (count,), generator=generator)
    return {key: value[index].to(device) for key, value in data.items() if key != "labels"}


@app.command("eval-decoder")
def eval_decoder(
    checkpoint: Annotated[str | None, typer.Option(help="A synth-anysplat folder; default: the shipped weights.")] = None,
    count: Annotated[int, typer.Option(min=1, max=10_000, help="Scenes scored.")] = 50,
    seed: Annotated[int, typer.Option(min=0, help="Scenes' seed.")] = 0,
    split: Annotated[Literal["test", "val"], typer.Option(help="Scenes of the test split (unseen combinations) or of "
                                                          "val (seen ones: for choosing settings).")] = "test",
    cache: Annotated[Path | None, typer.Option(help="Folder that caches the rendered clips.")] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Held-out metrics: depth abs-rel, camera errors, PSNR of views rendered from 5 of 9."""
    import vist3a
    from vist3a_synth.decoder import FRAMES, NAME, SIZE, evaluate
    from vist3a_synth.training import rendered

    if cache is not None:
        _check_folder(cache)
    decoder = vist3a.load_decoder(NAME, checkpoint, device=device)
    with tempfile.TemporaryDirectory() as scratch:
        data, _ = rendered(cache or Path(scratch), split, count, frames=FRAMES, size=SIZE, seed=seed)
    metrics = evaluate(decoder, data)
    for key, value in metrics.items():
        print(f"{key:16s} {value:.4f}")


def _check_folder(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} exists and is not a folder")
