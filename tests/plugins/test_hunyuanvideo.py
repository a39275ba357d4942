"""vist3a_hunyuanvideo at a tiny config (Llama + CLIP text towers with in-process tokenizers)."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import diffusers
import pytest
import torch
from vist3a_hunyuanvideo import HunyuanVideoConfig, tiny_pipeline
from vist3a_hunyuanvideo.generator import HunyuanVideoGenerator

from vist3a.align.rollout import run_loop

from . import generator_checks as checks

OPTIONS = {"max_sequence_length": 16}


def make(**options) -> HunyuanVideoGenerator:
    return HunyuanVideoGenerator(tiny_pipeline(), HunyuanVideoConfig(**OPTIONS, **options))


@pytest.fixture(scope="module")
def gen() -> HunyuanVideoGenerator:
    return make()


def pipeline_raw(gen: HunyuanVideoGenerator):
    """The pipeline's latents / scaling_factor; negative prompt only with true CFG, as the pipeline defines it."""

    def run(prompts, *, num_frames, height, width, steps, guidance, negative_prompt, generator):
        true_cfg = gen.config.true_cfg_scale
        out = gen.pipe(prompt=prompts, negative_prompt=negative_prompt if true_cfg > 1 else None, num_frames=num_frames,
                       height=height, width=width, num_inference_steps=steps, guidance_scale=guidance,
                       true_cfg_scale=true_cfg, generator=generator, output_type="latent",
                       max_sequence_length=OPTIONS["max_sequence_length"]).frames  # fmt: skip
        return out / gen.pipe.vae.config.scaling_factor

    return run


def test_latent_spec_of_the_real_vae() -> None:
    """The class defaults are the real VAE: 16 channels, /8, /4, scaling factor 0.476986."""
    defaults = {k: p.default for k, p in inspect.signature(diffusers.AutoencoderKLHunyuanVideo.__init__).parameters.items()}
    spec = HunyuanVideoGenerator.latent_spec(SimpleNamespace(**defaults))
    assert (spec.channels, spec.spatial_factor, spec.temporal_factor, spec.shift, spec.scale) == (16, 8, 4, 0.0, 0.476986)


def test_protocols(gen) -> None:
    checks.check_protocols(gen)


def test_encode_decode_shapes(gen) -> None:
    checks.check_encode_decode_shapes(gen, [1, 5, 9])
    checks.check_encode_sample(gen)


def test_checkpointed_decode(gen) -> None:
    checks.check_checkpointed_decode(gen)


def test_round_trip(gen) -> None:
    checks.check_round_trip(gen, lambda x: x / gen.pipe.vae.config.scaling_factor)


def test_sample_matches_pipeline(gen) -> None:
    checks.check_sample_matches_pipeline(gen, pipeline_raw(gen))
    true_cfg = make(true_cfg_scale=3.0)
    checks.check_sample_matches_pipeline(true_cfg, pipeline_raw(true_cfg))


def test_seam_equals_sample(gen) -> None:
    checks.check_seam_equals_sample(gen)
    checks.check_seam_equals_sample(make(true_cfg_scale=3.0))


def test_scheduler_shift(gen) -> None:
    shifted = gen.sample(checks.PROMPTS, generator=checks.seeded(), shift=3.0, **checks.REQUEST)
    assert not torch.equal(shifted, gen.sample(checks.PROMPTS, generator=checks.seeded(), **checks.REQUEST))
    loop = gen.denoising(checks.PROMPTS, generator=checks.seeded(), shift=3.0, **checks.REQUEST)
    assert torch.equal(loop.to_raw(run_loop(loop)), shifted)


def test_prompt_cache_and_release() -> None:
    checks.check_prompt_cache(make)


def test_frame_errors(gen) -> None:
    checks.check_frame_errors(gen, bad=6)


def test_saved_folder_loads_offline_and_missing_files(gen, tmp_path, entry_point_plugins) -> None:
    checks.check_saved_folder("hunyuanvideo", gen.pipe, tmp_path / "hy", entry_point_plugins, gen, **OPTIONS)
    checks.check_missing_files("hunyuanvideo", tmp_path / "hy", entry_point_plugins)


def test_training_loss_is_flow_matching() -> None:
    checks.check_training_loss(make(), checks.flow_matching_sample)
