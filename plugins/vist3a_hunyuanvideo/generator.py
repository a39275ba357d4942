"""HunyuanVideoGenerator: HunyuanVideo over diffusers' ``HunyuanVideoPipeline``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vist3a.generators.diffusers_video import DiffusersVideoGenerator, Embeds, PipelineDenoisingLoop
from vist3a.generators.tiny import eval_mode, tiny_tokenizer, vocab_size
from vist3a.protocols import LatentSpec


class HunyuanVideoGenerator(DiffusersVideoGenerator):
    """HunyuanVideo: model space is ``raw * scaling_factor`` (0.476986). ``guidance`` is the embedded
    (distilled) guidance; real CFG with the negative prompt runs when the ``true_cfg_scale`` option is > 1."""

    name = "hunyuanvideo"
    pipeline_class = "HunyuanVideoPipeline"
    text_components = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
    default_max_sequence_length = 256
    checkpoint_example = "hunyuanvideo-community/HunyuanVideo"
    vae_class = "AutoencoderKLHunyuanVideo"
    default_vae_checkpoints = ("hunyuanvideo-community/HunyuanVideo",)

    @staticmethod
    def tiny_pipeline(seed: int = 0) -> Any:
        return build_tiny_pipeline(seed)

    @staticmethod
    def latent_spec(vae_config: Any) -> LatentSpec:
        return LatentSpec(
            channels=vae_config.latent_channels,
            spatial_factor=vae_config.spatial_compression_ratio,
            temporal_factor=vae_config.temporal_compression_ratio,
            scale=vae_config.scaling_factor,
        )

    def _uses_negative(self, guidance: float) -> bool:
        return self.config.true_cfg_scale > 1.0

    def _encode_text(self, prompts: list[str]) -> Embeds:
        embeds, pooled, mask = self.pipe.encode_prompt(prompt=prompts, device=self.device, max_sequence_length=self.max_sequence_length)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled, "prompt_attention_mask": mask}

    def _pipeline_kwargs(self, cond: Embeds, uncond: Embeds | None, guidance: float) -> dict[str, Any]:
        kwargs = {**cond, "guidance_scale": guidance, "true_cfg_scale": self.config.true_cfg_scale}
        if uncond is not None:
            kwargs.update({f"negative_{k}": v for k, v in uncond.items()})
        return kwargs

    def _size_multiple(self) -> int:
        return math.lcm(16, self.latent.spatial_factor * self.pipe.transformer.config.patch_size)

    def _prepare_loop(self, loop: PipelineDenoisingLoop, batch: int, num_frames: int, height: int, width: int, steps: int) -> None:
        pipe, device, dtype = self.pipe, self.device, self._transformer_dtype
        loop.scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1], device=device)
        loop.timesteps = loop.scheduler.timesteps
        channels = pipe.transformer.config.in_channels
        loop.latents = pipe.prepare_latents(batch, channels, height, width, num_frames, torch.float32, device, loop.state["generator"])
        loop.state["guidance"] = torch.tensor([loop.guidance] * batch, dtype=dtype, device=device) * 1000.0
        loop.scheduler.set_begin_index(0)

    def _predict(self, loop: PipelineDenoisingLoop, latents: Tensor, t: Tensor, index: int) -> Tensor:
        dtype = self._transformer_dtype
        x, timestep = latents.to(dtype), t.expand(latents.shape[0]).to(latents.dtype)

        def run(embeds: Embeds) -> Tensor:
            return self.pipe.transformer(
                hidden_states=x, timestep=timestep, encoder_hidden_states=embeds["prompt_embeds"].to(dtype),
                encoder_attention_mask=embeds["prompt_attention_mask"].to(dtype),
                pooled_projections=embeds["pooled_prompt_embeds"].to(dtype), guidance=loop.state["guidance"],
                return_dict=False,
            )[0]  # fmt: skip

        cond = run(loop.cond)
        if loop.uncond is None:
            return cond
        uncond = run(loop.uncond)
        return uncond + self.config.true_cfg_scale * (cond - uncond)


def build_tiny_pipeline(seed: int = 0) -> Any:
    """A random tiny HunyuanVideoPipeline: see :func:`vist3a_hunyuanvideo.tiny_pipeline`."""
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    torch.manual_seed(seed)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=1, num_single_layers=1,
        num_refiner_layers=1, patch_size=1, patch_size_t=1, guidance_embeds=True, text_embed_dim=16,
        pooled_projection_dim=8, rope_axes_dim=(2, 4, 4),
    )  # fmt: skip
    vae = AutoencoderKLHunyuanVideo(latent_channels=4, block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4)
    llama = LlamaModel(LlamaConfig(hidden_size=16, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                                   vocab_size=vocab_size(), pad_token_id=0, bos_token_id=3, eos_token_id=1))  # fmt: skip
    clip = CLIPTextModel(CLIPTextConfig(hidden_size=8, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                                        vocab_size=vocab_size(), projection_dim=32, pad_token_id=0, bos_token_id=3,
                                        eos_token_id=1))  # fmt: skip
    pipe = HunyuanVideoPipeline(
        text_encoder=llama, tokenizer=tiny_tokenizer(), transformer=transformer, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=clip, tokenizer_2=tiny_tokenizer(),
    )  # fmt: skip
    return eval_mode(pipe)
