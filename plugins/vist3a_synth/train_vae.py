"""``vist3a synth train vae``: the world's small Wan video VAE (``synth-wan-vae``).

A diffusers ``AutoencoderKLWan`` (/8 space, /4 time) trained on random crops of train-split clips with a squared
error weighted towards object pixels and a small KL term (decoding the posterior mean); ``latents_mean`` /
``latents_std`` in its config are then set from the encoded train clips, so model-space latents have about unit
variance. Reconstruction PSNR is measured on the test split.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from pydantic import Field, PositiveInt, model_validator
from torch import Tensor

from vist3a.commands.options import DeviceOpt
from vist3a.config import StrictModel
from vist3a.io.atomic import atomic_write_text
from vist3a_synth.cli import train
from vist3a_synth.generator import FRAMES, SIZE, VAE_NAME, load_vae, save_half
from vist3a_synth.training import TrainOptions, overrides, read_architecture, rendered
from vist3a_synth.training import train as run_training


class VaeArchitecture(StrictModel):
    """The ``AutoencoderKLWan`` settings ``train vae --config FILE`` may change; the defaults build the shipped VAE.

    Each of the ``len(dim_mult) - 1`` stages halves the frame's height and width, and its time too where its
    ``temperal_downsample`` flag is set (diffusers' spelling).
    """

    base_dim: PositiveInt = 16
    z_dim: PositiveInt = 16
    dim_mult: list[PositiveInt] = Field(default=[1, 2, 2, 2], min_length=1, max_length=7)
    num_res_blocks: PositiveInt = 1
    attn_scales: list[float] = []
    temperal_downsample: list[bool] = [False, True, True]

    @model_validator(mode="after")
    def _fits_the_clips(self) -> VaeArchitecture:
        if len(self.temperal_downsample) != len(self.dim_mult) - 1:
            raise ValueError(f"temperal_downsample needs one flag per stage, len(dim_mult) - 1 = {len(self.dim_mult) - 1}")
        if (FRAMES - 1) % self.temporal_factor:
            raise ValueError(f"a temporal factor of {self.temporal_factor} does not fit {FRAMES}-frame clips")
        return self

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.dim_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.temperal_downsample)

    def diffusers_config(self) -> dict[str, Any]:
        """``AutoencoderKLWan`` arguments, stating the compression the layers do (diffusers reads it from here)."""
        return {**self.model_dump(), "scale_factor_spatial": self.spatial_factor,
                "scale_factor_temporal": self.temporal_factor}  # fmt: skip


KL_WEIGHT = 1e-4
OBJECT_WEIGHT = 10.0
"""Extra loss weight of object pixels (and their one-pixel outline) over ground and sky: at 64 px the objects are a
few pixels wide, and an unweighted loss let the VAE blur their colours and shapes away."""
STATS_CLIPS, TEST_CLIPS = 128, 64
METRICS_FILE = "metrics.json"

OutOpt = Annotated[Path, typer.Option("--out", help="Run folder: training state, curves, the model.", show_default=False)]
CacheOpt = Annotated[Path | None, typer.Option("--cache", help="Folder of the rendered-data cache (default: --out).")]
StepsOpt = Annotated[int, typer.Option("--steps", min=1, help="Optimiser steps.")]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="Seed of the initial weights and of every batch.")]
ScenesOpt = Annotated[int, typer.Option("--scenes", min=1, help="Train-split scenes to render and train on.")]
TestOpt = Annotated[int, typer.Option("--test-scenes", min=1, help="Test-split scenes to measure on.")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="YAML or JSON file of architecture settings; the rest keep the shipped model's."),
]


@train.command("vae")
def vae_command(
    out: OutOpt,
    cache: CacheOpt = None,
    steps: StepsOpt = 3000,
    seed: SeedOpt = 0,
    scenes: ScenesOpt = 2000,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Clips per step.")] = 4,
    crop: Annotated[int, typer.Option("--crop", min=1, max=SIZE, help="Square crop trained on (a multiple of the VAE's spatial factor).")] = 32,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Peak learning rate.")] = 1e-3,
    test_scenes: TestOpt = TEST_CLIPS,
    config: ConfigOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Train the video VAE; writes OUT/synth-wan-vae (float16) and OUT/metrics.json (test PSNR)."""
    from vist3a.errors import InputError

    architecture = read_architecture(config, VaeArchitecture)
    if crop % architecture.spatial_factor:
        raise InputError(f"--crop must be a multiple of the VAE's spatial factor {architecture.spatial_factor}, got {crop}")
    torch.set_num_threads(1)
    started = time.monotonic()
    data, _ = rendered(cache or out, "train", scenes, frames=FRAMES, size=SIZE)
    options = TrainOptions(steps=steps, lr=lr, batch_size=batch_size, seed=seed, warmup=20, checkpoint_every=20,
                           loss={"object_weight": OBJECT_WEIGHT}, model=overrides(architecture))  # fmt: skip
    vae = train_vae(data["frames"], data["ids"], options, crop, out, device)
    set_latent_stats(vae, data["frames"][:STATS_CLIPS])
    save_half(vae, out / VAE_NAME)
    test, _ = rendered(cache or out, "test", test_scenes, frames=FRAMES, size=SIZE)
    psnr = float(reconstruction_psnr(load_vae(out / VAE_NAME).to(device), test["frames"]).mean())
    metrics = {"test_psnr_db": round(psnr, 2), "test_clips": test_scenes, "seconds": round(time.monotonic() - started)}
    atomic_write_text(out / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    print(f"{out / VAE_NAME}: test reconstruction PSNR {psnr:.2f} dB over {test_scenes} clips")


def train_vae(frames: Tensor, ids: Tensor, options: TrainOptions, crop: int, directory: Path,
              device: str = "cpu") -> Any:  # fmt: skip
    """A fresh ``AutoencoderKLWan`` of the architecture ``options.model`` describes, trained on ``device`` on
    ``frames`` uint8 ``[N,T,3,H,W]`` with object ids ``[N,T,H,W]`` (resumes from ``directory``). The weights are drawn
    on the CPU, so every device starts alike."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(options.seed)
    vae = AutoencoderKLWan(**VaeArchitecture(**options.model).diffusers_config()).to(device)

    def loss_fn(step: int, generator: torch.Generator) -> dict[str, Tensor]:
        index = torch.randint(len(frames), (options.batch_size,), generator=generator)
        top, left = central_crop(frames.shape[-1], crop, generator)
        window = (..., slice(top, top + crop), slice(left, left + crop))
        clips, weights = to_clips(frames[index].to(device)), object_weights(ids[index].to(device))
        return vae_loss(vae, clips[window], weights[window])

    run_training(vae, loss_fn, options, directory, on_step=_printer(options.steps))
    return vae


def central_crop(size: int, crop: int, generator: torch.Generator, jitter: int = 8) -> tuple[int, int]:
    """(top, left) of a ``crop`` square within ``jitter`` pixels of the frame's centre, where the objects are (the
    cameras look at the scene's centre): crops anywhere else are mostly ground and sky, and on those the VAE never
    left the plateau of an empty frame (test PSNR 20 dB after 1500 steps of 16x16 crops)."""
    start = (size - crop) // 2
    low, high = max(0, start - jitter), min(size - crop, start + jitter)
    top, left = torch.randint(low, high + 1, (2,), generator=generator).tolist()
    return top, left


def object_weights(ids: Tensor) -> Tensor:
    """Per-pixel loss weights ``[B,1,T,H,W]`` from object ids ``[B,T,H,W]``: ``1 + OBJECT_WEIGHT`` on objects and the
    pixels next to them, 1 elsewhere."""
    near_object = torch.nn.functional.max_pool3d((ids > 0).float()[:, None], (1, 3, 3), stride=1, padding=(0, 1, 1))
    return 1 + OBJECT_WEIGHT * near_object


def vae_loss(vae: Any, x: Tensor, weights: Tensor | None = None) -> dict[str, Tensor]:
    """Squared error of the reconstruction of clips ``x [B,3,T,H,W]`` from the posterior mean, weighted per pixel by
    ``weights [B,1,T,H,W]`` (normalised to mean 1), plus ``KL_WEIGHT`` x the mean KL.

    Decoding the mean (not a sample) trains in the few hundred CPU steps we can afford: from a unit-variance
    posterior at initialisation, sampled latents drown the encoder's signal and the loss stalls. The squared error,
    not L1: with L1 the decoder settled on the median frame (the empty ground and sky) and never left it.
    """
    posterior = vae.encode(x).latent_dist
    recon = vae.decode(posterior.mean).sample
    error = (recon - x).square()
    weighted = error.mean() if weights is None else (error * weights).mean() / weights.mean()
    kl = 0.5 * (posterior.mean.square() + posterior.var - 1 - posterior.logvar).mean()
    return {"loss": weighted + KL_WEIGHT * kl, "mse": error.mean().detach(), "kl": kl.detach(),
            "psnr": psnr(recon.detach(), x).mean()}  # fmt: skip


def set_latent_stats(vae: Any, frames: Tensor) -> None:
    """Set ``latents_mean`` / ``latents_std`` (per channel) from the posterior modes of ``frames`` uint8."""
    channels = encode_frames(vae, frames).transpose(0, 1).flatten(1)
    vae.register_to_config(latents_mean=channels.mean(1).tolist(), latents_std=channels.std(1).tolist())


def reconstruction_psnr(vae: Any, frames: Tensor, batch: int = 8) -> Tensor:
    """Per-clip PSNR (dB, on [0,1] pixels) of ``vae``'s posterior-mode reconstruction of ``frames`` uint8
    ``[N,T,3,H,W]``, computed on the VAE's device and returned on the CPU."""
    clips = (to_clips(chunk.to(vae.device)) for chunk in frames.split(batch))
    with torch.no_grad():
        return torch.cat([psnr(vae.decode(vae.encode(x).latent_dist.mode()).sample, x).cpu() for x in clips])


def psnr(recon: Tensor, x: Tensor) -> Tensor:
    """Per-clip PSNR in dB of ``recon`` against ``x``, both ``[B,3,T,H,W]`` in [-1,1]."""
    mse = ((recon.clamp(-1, 1) - x) / 2).square().flatten(1).mean(1)
    return -10 * torch.log10(mse.clamp_min(1e-10))


def encode_frames(vae: Any, frames: Tensor, batch: int = 16) -> Tensor:
    """RAW posterior-mode latents ``[N,C,T',h,w]`` on the CPU of ``frames`` uint8 ``[N,T,3,H,W]`` (encoded on the
    VAE's device), without gradients."""
    with torch.no_grad():
        return torch.cat([vae.encode(to_clips(chunk.to(vae.device))).latent_dist.mode().cpu() for chunk in frames.split(batch)])


def to_clips(frames: Tensor) -> Tensor:
    """uint8 ``[N,T,3,H,W]`` -> float ``[N,3,T,H,W]`` in [-1,1]."""
    return frames.transpose(1, 2).float() / 127.5 - 1


def _printer(steps: int) -> Any:
    def on_step(step: int, record: dict[str, float]) -> None:
        if step % 10 == 0 or step == steps:
            print(f"step {step}/{steps} " + " ".join(f"{k} {v:.4g}" for k, v in record.items()), flush=True)

    return on_step


import vist3a_synth.train_dit  # noqa: E402, F401 (adds train dit, which builds on this module)
