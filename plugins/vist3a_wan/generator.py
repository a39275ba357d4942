"""WanGenerator: the Wan family over diffusers' ``WanPipeline`` and ``AutoencoderKLWan``."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from vist3a.generators.diffusers_video import DiffusersVideoGenerator, Embeds, PipelineDenoisingLoop
from vist3a.generators.tiny import eval_mode, tiny_tokenizer, vocab_size
from vist3a.protocols import LatentSpec

_TENSOR = object()  # marks a tensor slot of the VAE's causal feature cache


class WanGenerator(DiffusersVideoGenerator):
    """Wan 2.1 (16-channel VAE) and Wan 2.2 (48-channel VAE; two experts with ``boundary_ratio``).

    Model space is the pipeline's: ``(raw - latents_mean) / latents_std`` per channel, from the VAE config.
    """

    name = "wan"
    pipeline_class = "WanPipeline"
    text_components = ("text_encoder", "tokenizer")
    default_max_sequence_length = 512
    checkpoint_example = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    vae_class = "AutoencoderKLWan"
    default_vae_checkpoints = ("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "Wan-AI/Wan2.1-T2V-14B-Diffusers")

    @staticmethod
    def tiny_pipeline(seed: int = 0) -> Any:
        return build_tiny_pipeline(seed)

    @staticmethod
    def latent_spec(vae_config: Any) -> LatentSpec:
        return LatentSpec(
            channels=vae_config.z_dim,
            spatial_factor=vae_config.scale_factor_spatial,
            temporal_factor=vae_config.scale_factor_temporal,
            shift=tuple(vae_config.latents_mean),
            scale=tuple(1.0 / s for s in vae_config.latents_std),
        )

    def _encode_text(self, prompts: list[str]) -> Embeds:
        embeds, _ = self.pipe.encode_prompt(
            prompts, do_classifier_free_guidance=False, max_sequence_length=self.max_sequence_length, device=self.device
        )
        return {"prompt_embeds": embeds}

    def _pipeline_kwargs(self, cond: Embeds, uncond: Embeds | None, guidance: float) -> dict[str, Any]:
        negative = None if uncond is None else uncond["prompt_embeds"]
        return {"prompt_embeds": cond["prompt_embeds"], "negative_prompt_embeds": negative, "guidance_scale": guidance}

    def _size_multiple(self) -> int:
        return math.lcm(16, self.latent.spatial_factor * self._denoiser().config.patch_size[1])

    def _denoiser(self) -> Any:
        """The (first) transformer; Wan 2.2 A14B pipelines may hold only ``transformer_2``."""
        return self.pipe.transformer if self.pipe.transformer is not None else self.pipe.transformer_2

    def _prepare_loop(self, loop: PipelineDenoisingLoop, batch: int, num_frames: int, height: int, width: int, steps: int) -> None:
        pipe, device = self.pipe, self.device
        loop.scheduler.set_timesteps(steps, device=device)
        loop.timesteps = loop.scheduler.timesteps
        channels = self._denoiser().config.in_channels
        generator = loop.state["generator"]
        loop.latents = pipe.prepare_latents(batch, channels, height, width, num_frames, torch.float32, device, generator)
        loop.scheduler.set_begin_index(0)
        ratio = pipe.config.boundary_ratio
        loop.state["boundary"] = None if ratio is None else ratio * loop.scheduler.config.num_train_timesteps

    def _predict(self, loop: PipelineDenoisingLoop, latents: Tensor, t: Tensor, index: int) -> Tensor:
        """Each clip goes to the expert of its timestep: Wan 2.2 A14B's ``transformer`` at or above the boundary,
        ``transformer_2`` below (training draws a timestep per clip, so a batch may need both)."""
        timesteps = t.expand(latents.shape[0])
        boundary = loop.state["boundary"]
        if boundary is None:
            return self._guided(self.pipe.transformer, loop, latents, timesteps)
        high = timesteps >= boundary
        if high.all() or not high.any():
            expert = self.pipe.transformer if high.all() else self.pipe.transformer_2
            return self._guided(expert, loop, latents, timesteps)
        parts, order = [], []
        for expert, clips in ((self.pipe.transformer, high), (self.pipe.transformer_2, ~high)):
            parts.append(self._guided(expert, loop, latents[clips], timesteps[clips], clips))
            order.append(clips.nonzero().flatten())
        return torch.cat(parts)[torch.cat(order).argsort()]

    def _guided(self, model: Any, loop: PipelineDenoisingLoop, latents: Tensor, timesteps: Tensor,
                clips: Tensor | None = None) -> Tensor:  # fmt: skip
        """``model``'s guided output for ``latents`` at ``timesteps [B]``; ``clips`` selects their prompts."""
        dtype = model.dtype
        x = latents.to(dtype)
        timestep = timesteps
        if self.pipe.config.expand_timesteps:
            tokens = torch.ones(latents.shape[2:], dtype=torch.float32, device=latents.device)[:, ::2, ::2].flatten()
            timestep = timesteps[:, None] * tokens

        def run(embeds: Embeds) -> Tensor:
            prompt = embeds["prompt_embeds"] if clips is None else embeds["prompt_embeds"][clips]
            return model(hidden_states=x, timestep=timestep, encoder_hidden_states=prompt.to(dtype), return_dict=False)[0]

        cond = run(loop.cond)
        if loop.uncond is None:
            return cond
        uncond = run(loop.uncond)
        return uncond + loop.guidance * (cond - uncond)

    def _decode_checkpointed(self, z: Tensor) -> Tensor:
        """Decode latent frame by latent frame, each frame checkpointed, with the causal cache as explicit I/O.

        diffusers' ``AutoencoderKLWan`` has no gradient checkpointing and keeps its causal feature cache in a
        mutable list, so each chunk is wrapped as a pure function ``(frame, cache) -> (frames, cache)``: only the
        cache slices (two frames per causal conv) stay alive between chunks. Matches ``vae.decode`` (untiled).
        """
        from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

        vae = self.pipe.vae
        vae.clear_cache()
        cache: list[Any] = [None] * len(vae._feat_map)
        x = vae.post_quant_conv(z)
        chunks = []
        for i in range(x.shape[2]):
            out, cache = _checkpointed_chunk(vae.decoder, x[:, :, i : i + 1], cache, first=i == 0)
            chunks.append(out)
        out = torch.cat(chunks, dim=2)
        if vae.config.patch_size is not None:
            out = unpatchify(out, patch_size=vae.config.patch_size)
        return out.clamp(-1.0, 1.0)


def _checkpointed_chunk(decoder: Any, x: Tensor, cache: list[Any], *, first: bool) -> tuple[Tensor, list[Any]]:
    """One decoder chunk under ``torch.utils.checkpoint``; ``cache`` holds tensors, None or "Rep" markers."""
    layout = [_TENSOR if isinstance(c, Tensor) else c for c in cache]
    tensors = [c for c in cache if isinstance(c, Tensor)]

    def run(frame: Tensor, *slots: Tensor) -> tuple[Tensor, list[Any]]:
        filled = iter(slots)
        feat = [next(filled) if kind is _TENSOR else kind for kind in layout]
        return decoder(frame, feat_cache=feat, feat_idx=[0], first_chunk=first), feat

    return checkpoint(run, x, *tensors, use_reentrant=False)


def build_tiny_pipeline(seed: int = 0, latent_channels: int = 16) -> Any:
    """A random tiny WanPipeline: see :func:`vist3a_wan.tiny_pipeline`."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    if latent_channels not in (16, 48):
        raise ValueError(f"latent_channels must be 16 (Wan 2.1) or 48 (Wan 2.2), got {latent_channels}")
    torch.manual_seed(seed)
    common = {"dim_mult": [1, 1, 1, 1], "num_res_blocks": 1, "temperal_downsample": [False, True, True]}
    stats = {
        "latents_mean": torch.linspace(-0.3, 0.3, latent_channels).tolist(),
        "latents_std": torch.linspace(0.5, 1.5, latent_channels).tolist(),
    }
    if latent_channels == 48:
        wan22 = {"base_dim": 12, "decoder_base_dim": 16, "is_residual": True, "in_channels": 12, "out_channels": 12,
                 "patch_size": 2, "scale_factor_spatial": 16}  # fmt: skip
        vae = AutoencoderKLWan(z_dim=48, **wan22, **common, **stats)
    else:
        vae = AutoencoderKLWan(base_dim=3, z_dim=16, **common, **stats)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=latent_channels,
        out_channels=latent_channels, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
    )  # fmt: skip
    text_encoder = UMT5EncoderModel(
        UMT5Config(vocab_size=vocab_size(), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8)
    )
    pipe = WanPipeline(
        tokenizer=tiny_tokenizer(), text_encoder=text_encoder, vae=vae, transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), expand_timesteps=latent_channels == 48,
    )  # fmt: skip
    return eval_mode(pipe)
