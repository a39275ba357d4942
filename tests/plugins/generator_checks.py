"""Checks shared by the generator plugin tests; each family test calls them on its tiny pipelines.

Expected values always come from diffusers itself (the pipeline, the VAE) or from the documented conventions,
never from the code under test.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor

import vist3a
from vist3a.align.rollout import run_loop
from vist3a.errors import CheckpointError, InputError, Vist3aError
from vist3a.generators.options import FrameCountError
from vist3a.protocols import DenoisingLoop, Generator, SteppableGenerator

REQUEST = {"num_frames": 9, "height": 32, "width": 32, "steps": 2, "guidance": 5.0, "negative_prompt": "blue"}
PROMPTS = ["a red cat", "a dog on a car"]


def seeded(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def video(frames: int, size: int = 32, batch: int = 2, seed: int = 0) -> Tensor:
    return torch.rand(batch, 3, frames, size, size, generator=seeded(seed)) * 2 - 1


def check_protocols(gen: object) -> None:
    assert isinstance(gen, Generator) and isinstance(gen, SteppableGenerator)


def check_encode_decode_shapes(gen, frame_counts: list[int], size: int = 32) -> None:
    """encode gives [B,C,T',h,w] by the frame rule, decode gives back T frames; the posterior mode is diffusers'."""
    spec = gen.latent
    for frames in frame_counts:
        x = video(frames, size)
        with torch.no_grad():
            z = gen.encode(x)
            expected = gen.pipe.vae.encode(x).latent_dist.mode()
            out = gen.decode(z)
        assert z.shape == (2, *spec.latent_shape(frames, size, size))
        assert torch.equal(z, expected)
        assert out.shape == x.shape


def check_encode_sample(gen) -> None:
    """encode(sample=True) draws from the posterior with the given generator."""
    x = video(gen.valid_frames(5))
    with torch.no_grad():
        a, b = gen.encode(x, sample=True, generator=seeded(3)), gen.encode(x, sample=True, generator=seeded(3))
        mode = gen.encode(x)
    assert torch.equal(a, b) and not torch.equal(a, mode)


def saved_bytes(fn: Callable[[], Tensor]) -> tuple[Tensor, int]:
    """Run ``fn`` and count the bytes autograd saves for backward."""
    total = 0

    def pack(t: Tensor) -> Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, total


def check_checkpointed_decode(gen, frames: int = 9, size: int = 32) -> None:
    """Gradients reach the latents through decode; with checkpointing they are identical and less is saved."""
    with torch.no_grad():
        z0 = gen.encode(video(frames, size))
    grads, saved = [], []
    for enabled in (False, True):
        gen.set_decode_checkpointing(enabled)
        z = z0.clone().requires_grad_(True)
        out, n = saved_bytes(lambda z=z: gen.decode(z))
        out.square().mean().backward()
        grads.append(z.grad)
        saved.append(n)
    gen.set_decode_checkpointing(False)
    assert grads[0].abs().sum() > 0
    assert torch.equal(grads[0], grads[1])
    assert saved[1] < saved[0]


def check_round_trip(gen, raw_from_normalised: Callable[[Tensor], Tensor]) -> None:
    """to_raw matches the pipeline's own de-normalisation, and raw -> model -> raw is the identity."""
    spec = gen.latent
    x = torch.randn(2, spec.channels, 3, 4, 4, generator=seeded(4))
    torch.testing.assert_close(spec.to_raw(x), raw_from_normalised(x), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(spec.to_raw(spec.to_model(x)), x, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(spec.to_model(spec.to_raw(x)), x, rtol=1e-6, atol=1e-6)


def check_sample_matches_pipeline(gen, pipeline_raw: Callable[..., Tensor], request: dict | None = None) -> Tensor:
    """sample() = the pipeline called with the prompts (its own text path), converted to raw by the documented rule."""
    request = request or REQUEST
    raw = gen.sample(PROMPTS, generator=seeded(), **request)
    assert raw.shape == (len(PROMPTS), *gen.latent.latent_shape(request["num_frames"], request["height"], request["width"]))
    expected = pipeline_raw(PROMPTS, generator=seeded(), **request)
    torch.testing.assert_close(raw, expected, rtol=1e-5, atol=1e-5)
    return raw


def check_seam_equals_sample(gen, request: dict | None = None) -> None:
    """Running the DenoisingLoop step by step reproduces sample() exactly; a grad step reaches the denoiser."""
    request = request or REQUEST
    raw = gen.sample(PROMPTS, generator=seeded(), **request)
    loop = gen.denoising(PROMPTS, generator=seeded(), **request)
    assert isinstance(loop, DenoisingLoop)
    latents = loop.latents
    for i in range(len(loop.timesteps)):
        with torch.no_grad():
            latents = loop.step(latents, i)
    assert torch.equal(loop.to_raw(latents), raw)

    loop = gen.denoising(PROMPTS, generator=seeded(), **request)
    gen.trainable().zero_grad(set_to_none=True)
    final = run_loop(loop, [len(loop.timesteps) - 1])
    assert torch.equal(loop.to_raw(final).detach(), raw)
    loop.to_raw(final).square().mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in gen.trainable().parameters())
    gen.trainable().zero_grad(set_to_none=True)
    with pytest.raises(Vist3aError, match="in order"):
        gen.denoising(PROMPTS, generator=seeded(), **request).step(loop.latents, 1)


def check_prompt_cache(gen_factory: Callable[[], object]) -> None:
    """After releasing the text encoders, cached prompts still sample; new ones fail with one clear line."""
    gen = gen_factory()
    before = gen.sample(PROMPTS, generator=seeded(), **REQUEST)
    gen.release_text_encoders()
    assert all(getattr(gen.pipe, name, None) is None for name in gen.text_components)
    assert torch.equal(gen.sample(PROMPTS, generator=seeded(), **REQUEST), before)
    with pytest.raises(Vist3aError, match="not in the prompt cache"):
        gen.sample(["a green room"], generator=seeded(), **REQUEST)


def check_frame_errors(gen, bad: int) -> None:
    """A frame count outside the rule: one-line FrameCountError; pad=True repeats the last frame instead."""
    x = video(bad)
    with pytest.raises(FrameCountError) as info:
        gen.encode(x)
    assert "\n" not in str(info.value) and "pad_frames" in str(info.value)
    with pytest.raises(FrameCountError):
        gen.sample(PROMPTS, **{**REQUEST, "num_frames": bad})
    target = gen.valid_frames(bad)
    padded = torch.cat([x, x[:, :, -1:].expand(-1, -1, target - bad, -1, -1)], dim=2)
    with torch.no_grad():
        assert torch.equal(gen.encode(x, pad=True), gen.encode(padded))
    with pytest.raises(InputError, match="multiples of"):
        gen.encode(video(gen.valid_frames(1), size=36))


def check_saved_folder(name: str, pipe, folder: Path, entry_point_plugins, gen, **options) -> None:
    """A saved tiny pipeline loads offline through vist3a.load_generator and samples like the original."""
    pipe.save_pretrained(folder)
    entry_point_plugins(f"vist3a_{name}")
    loaded = vist3a.load_generator(name, str(folder), local_files_only=True, **options)
    assert type(loaded) is type(gen) and loaded.latent == gen.latent
    assert torch.equal(loaded.sample(PROMPTS, generator=seeded(), **REQUEST), gen.sample(PROMPTS, generator=seeded(), **REQUEST))


def check_missing_files(name: str, folder: Path, entry_point_plugins) -> None:
    """Missing weights, a missing folder and an uncached hub id give one-line CheckpointErrors saying what to do."""
    entry_point_plugins(f"vist3a_{name}")
    for weights in (folder / "transformer").glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(CheckpointError, match=r"missing transformer/\*\.safetensors.*hf download") as info:
        vist3a.load_generator(name, str(folder), local_files_only=True)
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="no such folder"):
        vist3a.load_generator(name, str(folder / "nowhere"), local_files_only=True)
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache.*hf download"):
        vist3a.load_generator(name, "vist3a-tests/not-a-real-model", local_files_only=True)
    with pytest.raises(CheckpointError, match="no checkpoint|not in the local Hugging Face cache"):
        vist3a.load_generator(name)  # the registry's default hub id when an entry has this id


def flow_matching_sample(scheduler, clean: Tensor, noise: Tensor, level: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Rectified flow with the scheduler's shift, clip by clip: x = (1-s) x0 + s noise, velocity noise - x0
    (Esser et al. 2024)."""
    shift = scheduler.config.get("flow_shift") or scheduler.config.get("shift")
    sigma = shift * level / (1 + (shift - 1) * level)
    s = sigma.view(-1, 1, 1, 1, 1)
    return (1 - s) * clean + s * noise, sigma * 1000, noise - clean


def check_training_loss(gen, expected_sample: Callable[..., tuple[Tensor, Tensor, Tensor]], frames: int = 9) -> None:
    """``training_loss`` noises each clip at its own level (uniform, then logit-normal) by the family's rule and
    scores the denoiser against its target; its gradient reaches the denoiser, and a few optimiser steps on one clip
    lower it."""
    with torch.no_grad():
        latents = gen.encode(video(frames, batch=2))
    seen = {}

    def fake_predict(loop, noisy, t, index):
        seen.update(noisy=noisy, t=t)
        return torch.zeros_like(noisy)

    draws = {"uniform": lambda g: torch.rand(2, generator=g),
             "logit_normal": lambda g: torch.sigmoid(torch.randn(2, generator=g))}  # fmt: skip
    for levels, draw in draws.items():
        original, gen._predict = gen._predict, fake_predict
        try:
            loss = gen.training_loss(latents, ["a red cat", "a blue dog"], generator=seeded(5), levels=levels)
        finally:
            gen._predict = original
        g = seeded(5)
        clean = gen.latent.to_model(latents)
        noise = torch.randn(clean.shape, generator=g)
        level = draw(g)
        noisy, t, target = expected_sample(gen.pipe.scheduler, clean, noise, level)
        assert level[0] != level[1]
        torch.testing.assert_close(seen["noisy"], noisy)
        torch.testing.assert_close(seen["t"].float(), torch.as_tensor(t).float())
        torch.testing.assert_close(loss, target.square().mean())
    with pytest.raises(Vist3aError, match="density 'beta'"):
        gen.training_loss(latents, ["a red cat", "a blue dog"], levels="beta")
    latents = latents[:1]

    denoiser = gen.trainable()
    optimiser = torch.optim.Adam(denoiser.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        loss = torch.stack([gen.training_loss(latents, ["a red cat"], generator=seeded(s)) for s in range(4)]).mean()
        optimiser.zero_grad()
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in denoiser.parameters())
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    with pytest.raises(Vist3aError, match="prompts"):
        gen.training_loss(latents, ["one", "two"])
