"""``vist3a synth train dit``: the world's small Wan text-to-video transformer (``synth-wan-dit``).

A diffusers ``WanTransformer3DModel`` trained with :meth:`WanGenerator.training_loss` (flow matching) on the train
clips encoded once by a ``synth-wan-vae``, conditioned on MiniLM embeddings of their captions, 10% of them dropped
to "" for classifier-free guidance. OUT then holds ``synth-wan-vae/`` and ``synth-wan-dit/``: a ``synth-wan``
checkpoint.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Literal

import torch
import typer
from pydantic import PositiveInt
from safetensors.torch import load_file, save
from torch import Tensor

from vist3a.commands.options import DeviceOpt
from vist3a.config import StrictModel
from vist3a.errors import InputError
from vist3a.generators.diffusers_video import NoiseLevels
from vist3a.generators.options import DiffusersVideoConfig
from vist3a.io.atomic import atomic_write_bytes, atomic_write_text
from vist3a_synth.cli import app, train
from vist3a_synth.generator import (
    DIT_NAME,
    FRAMES,
    GUIDANCE,
    SAMPLE_STEPS,
    SIZE,
    VAE_NAME,
    SynthWanGenerator,
    build_pipeline,
    load_vae,
    save_half,
)
from vist3a_synth.preview import _contact_sheet, _save_png
from vist3a_synth.train_vae import (
    METRICS_FILE,
    CacheOpt,
    ConfigOpt,
    OutOpt,
    ScenesOpt,
    SeedOpt,
    StepsOpt,
    TestOpt,
    _printer,
    encode_frames,
)
from vist3a_synth.training import TrainOptions, overrides, read_architecture, rendered
from vist3a_synth.training import train as run_training

FIXED_DIT_CONFIG: dict[str, Any] = {
    "text_dim": 384, "freq_dim": 256, "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "rope_max_seq_len": 32,
}  # fmt: skip
"""``WanTransformer3DModel`` settings no ``--config`` changes (``text_dim`` is MiniLM's width)."""


class DitArchitecture(StrictModel):
    """The ``WanTransformer3DModel`` settings ``train dit --config FILE`` may change; the defaults build the shipped
    DiT. ``patch_size`` (time, height, width) must divide the latents' shape."""

    patch_size: tuple[PositiveInt, PositiveInt, PositiveInt] = (1, 2, 2)
    num_attention_heads: PositiveInt = 4
    attention_head_dim: PositiveInt = 48
    ffn_dim: PositiveInt = 768
    num_layers: PositiveInt = 6

    def diffusers_config(self, channels: int) -> dict[str, Any]:
        """``WanTransformer3DModel`` arguments for ``channels``-channel latents."""
        return {**self.model_dump(), **FIXED_DIT_CONFIG, "in_channels": channels, "out_channels": channels}


CAPTION_DROPOUT = 0.1
SAMPLES_FILE, SAMPLE_ROWS, LOSS_DRAWS, EVAL_BATCH = "samples.png", 8, 8, 16


@train.command("dit")
def dit_command(
    vae: Annotated[
        Path, typer.Option("--vae", help="A folder holding synth-wan-vae/ (the vae command's --out).", show_default=False)
    ],
    out: OutOpt,
    cache: CacheOpt = None,
    steps: StepsOpt = 18000,
    seed: SeedOpt = 0,
    scenes: ScenesOpt = 8000,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Clips per step (a noise level per clip).")] = 16,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Peak learning rate.")] = 1e-3,
    ema: Annotated[float, typer.Option("--ema", min=0.0, max=0.9999, help="Decay of the weights' moving average "
                                       "that the DiT ends with (0: the last step's weights).")] = 0.999,
    levels: Annotated[NoiseLevels, typer.Option("--levels", help="Density of the training noise levels: uniform, "
                                                "or logit_normal (SD3's; the middle levels most often).")] = "logit_normal",
    test_scenes: TestOpt = 64,
    config: ConfigOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Train the text-to-video DiT; OUT becomes a synth-wan checkpoint, with samples.png and metrics.json."""
    torch.set_num_threads(1)
    started = time.monotonic()
    architecture = read_architecture(config, DitArchitecture)
    latent = SynthWanGenerator.meta_latent(DiffusersVideoConfig(checkpoint=str(vae)))
    _check_patches(architecture, latent.latent_shape(FRAMES, SIZE, SIZE)[1:])
    autoencoder = load_vae(vae / VAE_NAME).to(device)
    data, captions = rendered(cache or out, "train", scenes, frames=FRAMES, size=SIZE)
    latents = encoded(autoencoder, data["frames"], out / f"latents-train-{scenes}.safetensors")
    torch.manual_seed(seed)
    pipe = build_pipeline(autoencoder, new_transformer(latents.shape[1], architecture)).to(device)
    generator = SynthWanGenerator(pipe, DiffusersVideoConfig(device=device))
    loss = {} if levels == "uniform" else {"levels": levels}  # uniform runs from before --levels keep resuming
    options = TrainOptions(steps=steps, lr=lr, batch_size=batch_size, seed=seed, warmup=100, checkpoint_every=100,
                           ema=ema, loss=loss, model=overrides(architecture))  # fmt: skip
    run_training(generator.trainable(), caption_loss(generator, latents, captions, batch_size, levels), options, out,
                 on_step=_printer(steps))  # fmt: skip
    save_half(generator.trainable(), out / DIT_NAME)
    if (vae / VAE_NAME).resolve() != (out / VAE_NAME).resolve():
        shutil.copytree(vae / VAE_NAME, out / VAE_NAME, dirs_exist_ok=True)
    test, test_captions = rendered(cache or out, "test", test_scenes, frames=FRAMES, size=SIZE)
    loss = held_out_loss(generator, encoded(autoencoder, test["frames"]), test_captions)
    write_samples(generator, test_captions[:SAMPLE_ROWS], out / SAMPLES_FILE, seed)
    metrics = {"test_flow_loss": round(loss, 4), "test_clips": test_scenes, "seconds": round(time.monotonic() - started)}
    atomic_write_text(out / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    print(f"{out}: synth-wan checkpoint; test flow-matching loss {loss:.4f}; samples in {out / SAMPLES_FILE}")


@app.command("eval-generator")
def eval_generator(
    checkpoint: Annotated[str | None, typer.Option(help="A synth-wan folder (train dit --out); default: the shipped weights.")] = None,
    prompts: Annotated[int, typer.Option(min=1, max=10_000, help="Captions to sample.")] = 64,
    steps: Annotated[int, typer.Option(min=1, help="Sampling steps.")] = SAMPLE_STEPS,
    guidance: Annotated[float, typer.Option(min=0.0, help="Classifier-free guidance scale.")] = GUIDANCE,
    seed: Annotated[int, typer.Option(min=0, help="Scenes' and noise seed.")] = 0,
    split: Annotated[Literal["test", "val"], typer.Option(help="Captions of the test split (unseen combinations) or "
                                                          "of val (seen ones: for choosing settings).")] = "test",
    classifier: Annotated[Path | None, typer.Option(help="A synth-classifier folder; default: the shipped one.",
                                                    file_okay=False, exists=True)] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Attribute accuracy of samples for held-out (test or val) captions, judged by the attribute classifier, beside that of the
    ground-truth renders of the same scenes and of their VAE reconstructions (what the latents can carry)."""
    import vist3a
    from vist3a_synth.classifier import AttributeClassifier, attribute_accuracies
    from vist3a_synth.data import SynthClips

    torch.set_num_threads(1)
    judge = AttributeClassifier.from_pretrained(classifier) if classifier else None
    scenes = SynthClips(prompts, FRAMES, (SIZE, SIZE), seed, split)
    captions = [scenes.caption(i) for i in range(prompts)]
    generator = vist3a.load_generator("synth-wan", checkpoint, device=device)
    noise = torch.Generator().manual_seed(seed)
    truth = torch.stack([scenes.sample(i).frames for i in range(prompts)])
    with torch.no_grad():
        videos = torch.cat([
            generator.decode(generator.sample(captions[i : i + EVAL_BATCH], steps=steps, guidance=guidance, generator=noise))
            for i in range(0, prompts, EVAL_BATCH)
        ]).float().clamp(-1, 1)  # fmt: skip
        rebuilt = torch.cat([generator.decode(generator.encode(truth[i : i + EVAL_BATCH])) for i in range(0, prompts, EVAL_BATCH)])
    scores = {name: attribute_accuracies(clips, captions, classifier=judge) for name, clips in
              (("samples", videos), ("VAE reconstructions", rebuilt.float().clamp(-1, 1)), ("ground-truth renders", truth))}
    label = "held-out" if split == "test" else split
    for kind, heading in (("attributes", f"attribute accuracy over {prompts} {label} captions"), ("colours", "  colours"),
                          ("shapes", "  shapes"), ("unrequested", "unrequested attributes detected")):
        print(f"{heading}: " + ", ".join(f"{name} {score[kind]:.1%}" for name, score in scores.items()))  # fmt: skip


def new_transformer(channels: int, architecture: DitArchitecture | None = None) -> Any:
    """A fresh ``WanTransformer3DModel`` of ``architecture`` (default: the shipped DiT's) for ``channels``-channel
    latents."""
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(**(architecture or DitArchitecture()).diffusers_config(channels))


def _check_patches(architecture: DitArchitecture, latent_shape: tuple[int, ...]) -> None:
    """Refuse patches that do not tile the latents (time, height, width) before any data are rendered."""
    if any(size % patch for size, patch in zip(latent_shape, architecture.patch_size)):
        raise InputError(f"patch_size {list(architecture.patch_size)} does not divide the VAE's latents "
                         f"{list(latent_shape)} (time, height, width)")  # fmt: skip


def caption_loss(generator: SynthWanGenerator, latents: Tensor, captions: list[str], batch_size: int,
                 levels: NoiseLevels = "uniform") -> Any:  # fmt: skip
    """The loss function of :func:`vist3a_synth.training.train`: ``generator.training_loss`` on a random batch, its
    noise levels of density ``levels``, each caption replaced by "" with probability ``CAPTION_DROPOUT``."""

    def loss_fn(step: int, g: torch.Generator) -> dict[str, Tensor]:
        index = torch.randint(len(latents), (batch_size,), generator=g)
        dropped = (torch.rand(batch_size, generator=g) < CAPTION_DROPOUT).tolist()
        prompts = ["" if drop else captions[i] for i, drop in zip(index.tolist(), dropped)]
        return {"loss": generator.training_loss(latents[index].to(generator.device), prompts, generator=g, levels=levels)}

    return loss_fn


def held_out_loss(generator: SynthWanGenerator, latents: Tensor, captions: list[str]) -> float:
    """Mean ``training_loss`` over ``LOSS_DRAWS`` seeded noise draws of the whole set (no dropout, no gradients)."""
    with torch.no_grad():
        draws = [
            generator.training_loss(latents.to(generator.device), captions, generator=torch.Generator().manual_seed(i))
            for i in range(LOSS_DRAWS)
        ]
    return float(torch.stack(draws).mean())


def write_samples(generator: SynthWanGenerator, captions: list[str], path: Path, seed: int) -> None:
    """A contact sheet of one decoded sample per caption (the generator's default sampling settings)."""
    with torch.no_grad():
        frames = generator.decode(generator.sample(captions, generator=torch.Generator().manual_seed(seed))).cpu()
    rows = [SimpleNamespace(frames=clip, caption=caption) for clip, caption in zip(frames, captions)]
    _save_png(path, _contact_sheet(rows))  # type: ignore[arg-type]


def encoded(vae: Any, frames: Tensor, path: Path | None = None) -> Tensor:
    """RAW posterior-mode latents ``[N,C,T',h,w]`` of ``frames`` uint8 ``[N,T,3,H,W]``, cached at ``path`` if given."""
    if path is not None and path.exists():
        return load_file(str(path))["latents"]
    latents = encode_frames(vae, frames)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, save({"latents": latents}))
    return latents
