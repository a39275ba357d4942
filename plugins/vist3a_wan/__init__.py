"""vist3a generator plugin for Wan 2.1 / 2.2 text-to-video (diffusers ``WanPipeline``).

``vist3a.load_generator("wan", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers")`` (or a local pipeline folder) returns a
:class:`~vist3a_wan.generator.WanGenerator`. Importing this module is cheap: diffusers loads with the model.
"""

from __future__ import annotations

from typing import Any

from vist3a.generators.options import DiffusersVideoConfig
from vist3a.hookspecs import hookimpl
from vist3a.specs import GeneratorSpec

LICENCE = "plugin: Apache-2.0; Wan 2.1 / 2.2 weights: Apache-2.0"


def tiny_pipeline(seed: int = 0, *, latent_channels: int = 16) -> Any:
    """A random tiny ``WanPipeline`` (the real classes, in-process tokenizer), for tests and examples.

    ``latent_channels=16`` mirrors Wan 2.1 (16-channel VAE, /8 space); ``48`` mirrors Wan 2.2 TI2V-5B
    (48-channel residual VAE with 2x2 patchify, /16 space, ``expand_timesteps``).
    """
    from vist3a_wan.generator import build_tiny_pipeline

    return build_tiny_pipeline(seed, latent_channels)


def _factory(config: DiffusersVideoConfig) -> Any:
    from vist3a_wan.generator import WanGenerator

    return WanGenerator.load(config)


@hookimpl
def register_generators(register: Any) -> None:
    register(GeneratorSpec("wan", "Wan 2.1 / 2.2 text-to-video (diffusers)", _factory, DiffusersVideoConfig, LICENCE))
