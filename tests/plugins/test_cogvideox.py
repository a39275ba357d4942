"""vist3a_cogvideox at tiny configs: CogVideoX 1.0 and a 1.5-style model (temporal patches, padding frames)."""

from __future__ import annotations

from types import SimpleNamespace

import diffusers
import pytest
import torch
from vist3a_cogvideox import tiny_pipeline
from vist3a_cogvideox.generator import CogVideoXGenerator

from vist3a.errors import InputError
from vist3a.generators.options import DiffusersVideoConfig

from . import generator_checks as checks

V15_REQUEST = {**checks.REQUEST, "num_frames": 9}  # 3 latent frames, padded to 4 for patch_size_t=2


def make(patch_size_t: int | None = None) -> CogVideoXGenerator:
    return CogVideoXGenerator(tiny_pipeline(patch_size_t=patch_size_t), DiffusersVideoConfig())


@pytest.fixture(scope="module")
def gen() -> CogVideoXGenerator:
    return make()


@pytest.fixture(scope="module")
def gen15() -> CogVideoXGenerator:
    return make(2)


def pipeline_raw(gen: CogVideoXGenerator):
    """The pipeline's frames-first latents [B,T',C,h,w], padding frames dropped from the front, / scaling_factor."""

    def run(prompts, *, num_frames, height, width, steps, guidance, negative_prompt, generator):
        out = gen.pipe(prompt=prompts, negative_prompt=negative_prompt, num_frames=num_frames, height=height, width=width,
                       num_inference_steps=steps, guidance_scale=guidance, generator=generator, output_type="latent",
                       max_sequence_length=16).frames  # fmt: skip
        latent_frames = (num_frames - 1) // 4 + 1
        return out[:, -latent_frames:].permute(0, 2, 1, 3, 4) / gen.pipe.vae.config.scaling_factor

    return run


def test_latent_spec_of_the_real_vaes() -> None:
    """2b: the class default scaling factor 1.15258426; 5b and 1.5: 0.7."""
    config = SimpleNamespace(latent_channels=16, block_out_channels=(128, 256, 256, 512), temporal_compression_ratio=4)
    for scaling in (1.15258426, 0.7):
        spec = CogVideoXGenerator.latent_spec(SimpleNamespace(**vars(config), scaling_factor=scaling))
        assert (spec.channels, spec.spatial_factor, spec.temporal_factor, spec.shift, spec.scale) == (16, 8, 4, 0.0, scaling)
    assert diffusers.AutoencoderKLCogVideoX().config.scaling_factor == pytest.approx(1.15258426)


def test_protocols(gen) -> None:
    checks.check_protocols(gen)


def test_encode_decode_shapes(gen) -> None:
    checks.check_encode_decode_shapes(gen, [1, 9, 17])
    checks.check_encode_sample(gen)


def test_checkpointed_decode(gen) -> None:
    checks.check_checkpointed_decode(gen, frames=17)


def test_round_trip(gen) -> None:
    checks.check_round_trip(gen, lambda x: x / gen.pipe.vae.config.scaling_factor)


def test_sample_matches_pipeline(gen, gen15) -> None:
    checks.check_sample_matches_pipeline(gen, pipeline_raw(gen))
    raw = checks.check_sample_matches_pipeline(gen15, pipeline_raw(gen15), V15_REQUEST)
    assert raw.shape[2] == 3  # the padding latent frame is gone


def test_seam_equals_sample(gen, gen15) -> None:
    checks.check_seam_equals_sample(gen)
    checks.check_seam_equals_sample(gen15, V15_REQUEST)


def test_dpm_scheduler_seam() -> None:
    """The multistep CogVideoXDPMScheduler (state carried between steps) also matches exactly."""
    gen = make()
    gen.pipe.scheduler = diffusers.CogVideoXDPMScheduler.from_config(gen.pipe.scheduler.config)
    checks.check_seam_equals_sample(gen, {**checks.REQUEST, "steps": 3})


def test_no_scheduler_shift(gen) -> None:
    with pytest.raises(InputError, match="no timestep shift"):
        gen.sample(checks.PROMPTS, shift=3.0, **checks.REQUEST)


def test_prompt_cache_and_release() -> None:
    checks.check_prompt_cache(make)


def test_frame_errors(gen) -> None:
    """The VAE decodes latent frames in pairs after the first: 13 frames (4 latent frames) are refused."""
    checks.check_frame_errors(gen, bad=13)
    with pytest.raises(InputError, match="latent frames"):
        gen.decode(torch.zeros(1, 4, 4, 4, 4))


def test_saved_folder_loads_offline_and_missing_files(gen, tmp_path, entry_point_plugins) -> None:
    checks.check_saved_folder("cogvideox", gen.pipe, tmp_path / "cog", entry_point_plugins, gen)
    checks.check_missing_files("cogvideox", tmp_path / "cog", entry_point_plugins)


def ddpm_velocity_sample(scheduler, clean, noise, level):
    """DDPM noising at t = floor(level * 1000) per clip: x = sqrt(a) x0 + sqrt(1-a) noise; v = sqrt(a) noise - sqrt(1-a) x0."""
    t = (level * 1000).long()
    a = scheduler.alphas_cumprod[t].to(clean.dtype).view(-1, 1, 1, 1, 1)
    return a.sqrt() * clean + (1 - a).sqrt() * noise, t, a.sqrt() * noise - (1 - a).sqrt() * clean


def test_training_loss_is_v_prediction() -> None:
    gen = make()
    assert gen.pipe.scheduler.config.prediction_type == "v_prediction"
    checks.check_training_loss(gen, ddpm_velocity_sample, frames=17)


def test_training_loss_refuses_padded_latents(gen15) -> None:
    with torch.no_grad():
        latents = gen15.encode(checks.video(9, batch=1))  # 3 latent frames; patch_size_t=2 would pad one
    with pytest.raises(InputError, match="patch_size_t"):
        gen15.training_loss(latents, ["a red cat"])
