"""vist3a_wan at tiny configs: Wan 2.1 (16 channels) and a Wan 2.2-style 48-channel VAE with expand_timesteps."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import diffusers
import pytest
import torch
from vist3a_wan import tiny_pipeline
from vist3a_wan.generator import WanGenerator

from vist3a.generators.options import DiffusersVideoConfig

from . import generator_checks as checks

OPTIONS = {"max_sequence_length": 16}


def make(latent_channels: int = 16) -> WanGenerator:
    return WanGenerator(tiny_pipeline(latent_channels=latent_channels), DiffusersVideoConfig(**OPTIONS))


@pytest.fixture(scope="module")
def gen() -> WanGenerator:
    return make()


@pytest.fixture(scope="module")
def gen22() -> WanGenerator:
    return make(48)


def pipeline_raw(gen: WanGenerator):
    """The pipeline's own latent output, de-normalised with the VAE config: z = x * std + mean."""

    def run(prompts, *, num_frames, height, width, steps, guidance, negative_prompt, generator):
        out = gen.pipe(prompt=prompts, negative_prompt=negative_prompt, num_frames=num_frames, height=height, width=width,
                       num_inference_steps=steps, guidance_scale=guidance, generator=generator, output_type="latent",
                       max_sequence_length=OPTIONS["max_sequence_length"]).frames  # fmt: skip
        return denormalise(gen, out)

    return run


def denormalise(gen: WanGenerator, x: torch.Tensor) -> torch.Tensor:
    cfg = gen.pipe.vae.config
    return x * torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1) + torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1)


def test_latent_spec_of_the_real_vaes() -> None:
    defaults = {k: p.default for k, p in inspect.signature(diffusers.AutoencoderKLWan.__init__).parameters.items()}
    wan21 = WanGenerator.latent_spec(SimpleNamespace(**defaults))  # the class defaults are the Wan 2.1 VAE
    assert (wan21.channels, wan21.spatial_factor, wan21.temporal_factor) == (16, 8, 4)
    assert wan21.shift == tuple(defaults["latents_mean"])
    wan22 = WanGenerator.latent_spec(SimpleNamespace(**{**defaults, "z_dim": 48, "scale_factor_spatial": 16,
                                                        "latents_mean": [0.0] * 48, "latents_std": [2.0] * 48}))  # fmt: skip
    assert (wan22.channels, wan22.spatial_factor, wan22.scale) == (48, 16, (0.5,) * 48)


def test_protocols(gen) -> None:
    checks.check_protocols(gen)


def test_encode_decode_shapes(gen, gen22) -> None:
    checks.check_encode_decode_shapes(gen, [1, 5, 9])
    checks.check_encode_decode_shapes(gen22, [1, 9], size=64)
    checks.check_encode_sample(gen)


def test_checkpointed_decode_through_the_causal_cache(gen, gen22) -> None:
    checks.check_checkpointed_decode(gen)
    checks.check_checkpointed_decode(gen22, size=32)


def test_round_trip(gen, gen22) -> None:
    checks.check_round_trip(gen, lambda x: denormalise(gen, x))
    checks.check_round_trip(gen22, lambda x: denormalise(gen22, x))


def test_sample_matches_pipeline(gen, gen22) -> None:
    checks.check_sample_matches_pipeline(gen, pipeline_raw(gen))
    checks.check_sample_matches_pipeline(gen22, pipeline_raw(gen22))


def test_seam_equals_sample(gen, gen22) -> None:
    checks.check_seam_equals_sample(gen)
    checks.check_seam_equals_sample(gen22)


def test_scheduler_shift(gen) -> None:
    """shift=3 equals the pipeline run with a scheduler built with shift=3."""
    shifted = gen.sample(checks.PROMPTS, generator=checks.seeded(), shift=3.0, **checks.REQUEST)
    original = gen.pipe.scheduler
    gen.pipe.scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_config(original.config, shift=3.0)
    try:
        expected = gen.sample(checks.PROMPTS, generator=checks.seeded(), **checks.REQUEST)
    finally:
        gen.pipe.scheduler = original
    assert torch.equal(shifted, expected)
    assert not torch.equal(shifted, gen.sample(checks.PROMPTS, generator=checks.seeded(), **checks.REQUEST))


def test_prompt_cache_and_release() -> None:
    checks.check_prompt_cache(make)


def test_frame_errors(gen) -> None:
    checks.check_frame_errors(gen, bad=7)


def test_saved_folder_loads_offline_and_missing_files(gen, tmp_path, entry_point_plugins) -> None:
    checks.check_saved_folder("wan", gen.pipe, tmp_path / "wan", entry_point_plugins, gen, **OPTIONS)
    checks.check_missing_files("wan", tmp_path / "wan", entry_point_plugins)


def test_tiny_option_and_bad_options(entry_point_plugins) -> None:
    import vist3a
    from vist3a.errors import ConfigError

    entry_point_plugins("vist3a_wan")
    tiny = vist3a.load_generator("wan", tiny=True, **OPTIONS)
    assert tiny.latent.channels == 16
    with pytest.raises(ConfigError, match="cpu_offload"):
        vist3a.load_generator("wan", tiny=True, cpu_offload=True)
    with pytest.raises(ConfigError, match="unknown field"):
        vist3a.load_generator("wan", tiny=True, variant="x")


def test_training_loss_is_flow_matching() -> None:
    checks.check_training_loss(make(), checks.flow_matching_sample)


def test_each_clip_goes_to_the_expert_of_its_timestep() -> None:
    """Wan 2.2 A14B: in one batch, clips at or above the boundary go to ``transformer``, the others to ``transformer_2``."""
    from diffusers import WanPipeline, WanTransformer3DModel

    base = tiny_pipeline()
    torch.manual_seed(1)
    second = WanTransformer3DModel(**base.transformer.config).eval()
    parts = {k: getattr(base, k) for k in ("tokenizer", "text_encoder", "vae", "transformer", "scheduler")}
    gen = WanGenerator(WanPipeline(**parts, transformer_2=second, boundary_ratio=0.5), DiffusersVideoConfig(**OPTIONS))
    loop = gen.denoising(["a red cat", "a blue dog", "a cat"], num_frames=5, height=32, width=32, steps=1, guidance=1.0)
    latents, t = torch.randn(3, 16, 2, 4, 4, generator=checks.seeded(0)), torch.tensor([900.0, 100.0, 700.0])
    with torch.no_grad():
        routed = gen._predict(loop, latents, t, 0)
        for i, (expert, other) in enumerate([(base.transformer, second), (second, base.transformer), (base.transformer, second)]):
            inputs = {"hidden_states": latents[i : i + 1], "timestep": t[i : i + 1],
                      "encoder_hidden_states": loop.cond["prompt_embeds"][i : i + 1], "return_dict": False}  # fmt: skip
            torch.testing.assert_close(routed[i : i + 1], expert(**inputs)[0])
            assert not torch.allclose(routed[i : i + 1], other(**inputs)[0])


def test_half_precision_keeps_the_fp32_modules(entry_point_plugins) -> None:
    """A pipeline built in float32 and placed in bfloat16 keeps Wan's ``_keep_in_fp32_modules`` in float32, as
    ``from_pretrained(torch_dtype=...)`` would."""
    import vist3a

    entry_point_plugins("vist3a_wan")
    transformer = vist3a.load_generator("wan", tiny=True, dtype="bfloat16").pipe.transformer
    dtypes = {name: p.dtype for name, p in transformer.named_parameters()}
    assert dtypes["scale_shift_table"] == torch.float32 and dtypes["blocks.0.norm2.weight"] == torch.float32
    assert dtypes["patch_embedding.weight"] == torch.bfloat16 and dtypes["blocks.0.attn1.to_q.weight"] == torch.bfloat16
