"""vist3a generator plugin for HunyuanVideo (diffusers ``HunyuanVideoPipeline``, the community port).

``vist3a.load_generator("hunyuanvideo", "hunyuanvideo-community/HunyuanVideo")`` (or a local pipeline folder)
returns a :class:`~vist3a_hunyuanvideo.generator.HunyuanVideoGenerator`. Importing this module is cheap.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from vist3a.generators.options import DiffusersVideoConfig
from vist3a.hookspecs import hookimpl
from vist3a.specs import GeneratorSpec

LICENCE = "plugin: Apache-2.0; HunyuanVideo weights: Tencent Hunyuan Community License (territory restrictions)"


class HunyuanVideoConfig(DiffusersVideoConfig):
    """HunyuanVideo is guidance-distilled: ``sample(guidance=...)`` is the embedded guidance scale."""

    true_cfg_scale: float = Field(default=1.0, ge=1.0)
    """Real classifier-free guidance with the negative prompt when > 1 (two denoiser passes per step)."""


def tiny_pipeline(seed: int = 0) -> Any:
    """A random tiny ``HunyuanVideoPipeline`` (the real classes, Llama + CLIP text towers, in-process tokenizers)."""
    from vist3a_hunyuanvideo.generator import build_tiny_pipeline

    return build_tiny_pipeline(seed)


def _factory(config: HunyuanVideoConfig) -> Any:
    from vist3a_hunyuanvideo.generator import HunyuanVideoGenerator

    return HunyuanVideoGenerator.load(config)


@hookimpl
def register_generators(register: Any) -> None:
    register(GeneratorSpec("hunyuanvideo", "HunyuanVideo text-to-video (diffusers)", _factory, HunyuanVideoConfig, LICENCE))
