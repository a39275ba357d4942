"""CogVideoXGenerator: the CogVideoX family over diffusers' ``CogVideoXPipeline``."""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from torch import Tensor

from vist3a.errors import InputError
from vist3a.generators.diffusers_video import DiffusersVideoGenerator, Embeds, PipelineDenoisingLoop
from vist3a.generators.tiny import eval_mode, tiny_tokenizer, vocab_size
from vist3a.protocols import LatentSpec


def _frames_first(x: Tensor) -> Tensor:
    """``[B,C,T,h,w]`` <-> ``[B,T,C,h,w]`` (its own inverse)."""
    return x.permute(0, 2, 1, 3, 4)


class CogVideoXGenerator(DiffusersVideoGenerator):
    """CogVideoX 1.0 and 1.5. Model space is ``raw * scaling_factor``; the pipeline itself is frames-first.

    The VAE decodes latent frames in pairs after the first, so videos have ``8k+1`` frames (``1+2k`` latent
    frames). CogVideoX 1.5 (``patch_size_t=2``) pads the latent frames at the front to a multiple of 2 while
    denoising; ``sample()`` and :meth:`PipelineDenoisingLoop.to_raw` drop that padding.
    """

    name = "cogvideox"
    pipeline_class = "CogVideoXPipeline"
    text_components = ("text_encoder", "tokenizer")
    checkpoint_example = "THUDM/CogVideoX-2b"
    vae_class = "AutoencoderKLCogVideoX"
    default_vae_checkpoints = ("THUDM/CogVideoX-2b",)

    @staticmethod
    def tiny_pipeline(seed: int = 0) -> Any:
        return build_tiny_pipeline(seed)

    @staticmethod
    def latent_spec(vae_config: Any) -> LatentSpec:
        return LatentSpec(
            channels=vae_config.latent_channels,
            spatial_factor=2 ** (len(vae_config.block_out_channels) - 1),
            temporal_factor=vae_config.temporal_compression_ratio,
            scale=vae_config.scaling_factor,
            latent_frame_step=2,  # the VAE decodes latent frames in pairs after the first
        )

    @property
    def max_sequence_length(self) -> int:
        """The ``max_sequence_length`` option, else the transformer's ``max_text_seq_length`` (226 for real models)."""
        return self.config.max_sequence_length or self.pipe.transformer.config.max_text_seq_length

    def _encode_text(self, prompts: list[str]) -> Embeds:
        embeds, _ = self.pipe.encode_prompt(
            prompts, None, do_classifier_free_guidance=False, max_sequence_length=self.max_sequence_length, device=self.device
        )
        return {"prompt_embeds": embeds}

    def _pipeline_kwargs(self, cond: Embeds, uncond: Embeds | None, guidance: float) -> dict[str, Any]:
        negative = None if uncond is None else uncond["prompt_embeds"]
        return {"prompt_embeds": cond["prompt_embeds"], "negative_prompt_embeds": negative, "guidance_scale": guidance}

    def _size_multiple(self) -> int:
        return math.lcm(8, self.latent.spatial_factor * self.pipe.transformer.config.patch_size)

    def _padding(self, latent_frames: int) -> int:
        """Latent frames CogVideoX 1.5 adds in front so that ``patch_size_t`` divides the count."""
        p_t = self.pipe.transformer.config.patch_size_t
        return 0 if p_t is None or latent_frames % p_t == 0 else p_t - latent_frames % p_t

    def _output_to_model(self, frames: Tensor, num_frames: int) -> Tensor:
        return _frames_first(frames)[:, :, self._padding(self.latent.latent_frames(num_frames)) :]

    def _loop_to_raw(self, latents: Tensor, loop: PipelineDenoisingLoop) -> Tensor:
        return self.latent.to_raw(latents[:, :, loop.state["padding"] :])

    def _training_sample(self, scheduler: Any, clean: Tensor, noise: Tensor, level: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """DDPM noising at an integer timestep per clip; the target is the velocity (v-prediction) or the noise."""
        if padding := self._padding(clean.shape[2]):
            raise InputError(f"{self.name}: training needs a latent frame count divisible by patch_size_t "
                             f"({clean.shape[2]} latent frames would be padded by {padding})")  # fmt: skip
        steps = scheduler.config.num_train_timesteps
        t = (level * steps).long().clamp(max=steps - 1)
        noisy = scheduler.add_noise(clean, noise, t)
        v = scheduler.config.prediction_type == "v_prediction"
        return noisy, t, scheduler.get_velocity(clean, noise, t) if v else noise

    def _prepare_loop(self, loop: PipelineDenoisingLoop, batch: int, num_frames: int, height: int, width: int, steps: int) -> None:
        pipe, device, generator = self.pipe, self.device, loop.state["generator"]
        loop.scheduler.set_timesteps(steps, device=device)
        loop.timesteps = loop.scheduler.timesteps
        padding = self._padding(self.latent.latent_frames(num_frames))
        dtype = loop.cond["prompt_embeds"].dtype
        channels = pipe.transformer.config.in_channels
        frames = num_frames + padding * self.latent.temporal_factor
        native = pipe.prepare_latents(batch, channels, frames, height, width, dtype, device, generator)
        loop.latents = _frames_first(native)
        rotary = None
        if pipe.transformer.config.use_rotary_positional_embeddings:
            rotary = pipe._prepare_rotary_positional_embeddings(height, width, native.size(1), device)
        step_kwargs = pipe.prepare_extra_step_kwargs(generator, 0.0)
        multistep = "old_pred_original_sample" in inspect.signature(loop.scheduler.step).parameters
        loop.state.update(padding=padding, dtype=dtype, rotary=rotary, step_kwargs=step_kwargs, multistep=multistep, old=None)

    def _predict(self, loop: PipelineDenoisingLoop, latents: Tensor, t: Tensor, index: int) -> Tensor:
        guided = loop.uncond is not None
        x = _frames_first(latents)
        x = torch.cat([x, x]) if guided else x
        x = loop.scheduler.scale_model_input(x, t)
        embeds = torch.cat([loop.uncond["prompt_embeds"], loop.cond["prompt_embeds"]]) if guided else loop.cond["prompt_embeds"]
        timestep = t.expand(latents.shape[0]).repeat(2 if guided else 1)
        out = self.pipe.transformer(hidden_states=x, encoder_hidden_states=embeds, timestep=timestep,
                                    image_rotary_emb=loop.state["rotary"], return_dict=False)[0].float()  # fmt: skip
        if guided:
            uncond, cond = out.chunk(2)
            out = uncond + loop.guidance * (cond - uncond)
        return _frames_first(out)

    def _scheduler_step(self, loop: PipelineDenoisingLoop, output: Tensor, t: Tensor, latents: Tensor, index: int) -> Tensor:
        state, scheduler = loop.state, loop.scheduler
        out, x = _frames_first(output), _frames_first(latents)
        if state["multistep"]:
            back = loop.timesteps[index - 1] if index > 0 else None
            x, state["old"] = scheduler.step(out, state["old"], t, back, x, **state["step_kwargs"], return_dict=False)
        else:
            x = scheduler.step(out, t, x, **state["step_kwargs"], return_dict=False)[0]
        return _frames_first(x.to(state["dtype"]))


COGVIDEOX_2B_SCHEDULER = {"beta_end": 0.012, "prediction_type": "v_prediction", "rescale_betas_zero_snr": True,
                          "snr_shift_scale": 3.0, "timestep_spacing": "trailing"}  # fmt: skip
"""The released CogVideoX-2b scheduler settings, so the tiny pipeline samples and trains like the real one."""


def build_tiny_pipeline(seed: int = 0, patch_size_t: int | None = None) -> Any:
    """A random tiny CogVideoXPipeline: see :func:`vist3a_cogvideox.tiny_pipeline`."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    v15 = patch_size_t is not None
    vae = AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2,
        temporal_compression_ratio=4, scaling_factor=0.7 if v15 else 1.15258426,
    )  # fmt: skip
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4, attention_head_dim=16 if v15 else 8, in_channels=4, out_channels=4, time_embed_dim=2, text_embed_dim=32,
        num_layers=1, sample_width=4, sample_height=4, sample_frames=9, patch_size=2, patch_size_t=patch_size_t,
        temporal_compression_ratio=4, max_text_seq_length=16, use_rotary_positional_embeddings=v15,
    )  # fmt: skip
    text_encoder = T5EncoderModel(
        T5Config(vocab_size=vocab_size(), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8)
    )
    pipe = CogVideoXPipeline(tokenizer=tiny_tokenizer(), text_encoder=text_encoder, vae=vae, transformer=transformer,
                             scheduler=CogVideoXDDIMScheduler(**COGVIDEOX_2B_SCHEDULER))  # fmt: skip
    return eval_mode(pipe)
