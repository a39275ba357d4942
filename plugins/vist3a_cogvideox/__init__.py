"""vist3a generator plugin for CogVideoX 2b / 5b / 1.5-5B (diffusers ``CogVideoXPipeline``).

``vist3a.load_generator("cogvideox", "THUDM/CogVideoX-2b")`` (or a local pipeline folder) returns a
:class:`~vist3a_cogvideox.generator.CogVideoXGenerator`. Importing this module is cheap.
"""

from __future__ import annotations

from typing import Any

from vist3a.generators.options import DiffusersVideoConfig
from vist3a.hookspecs import hookimpl
from vist3a.specs import GeneratorSpec

LICENCE = "plugin: Apache-2.0; weights: CogVideoX-2b Apache-2.0, CogVideoX-5b and 1.5-5B the CogVideoX License"


def tiny_pipeline(seed: int = 0, *, patch_size_t: int | None = None) -> Any:
    """A random tiny ``CogVideoXPipeline`` (the real classes, in-process tokenizer), for tests and examples.

    ``patch_size_t=None`` mirrors CogVideoX 1.0 (sin-cos positions, scaling factor 1.15258426); ``2`` mirrors
    CogVideoX 1.5 (rotary positions, temporal patches, scaling factor 0.7, padding latent frames).
    """
    from vist3a_cogvideox.generator import build_tiny_pipeline

    return build_tiny_pipeline(seed, patch_size_t)


def _factory(config: DiffusersVideoConfig) -> Any:
    from vist3a_cogvideox.generator import CogVideoXGenerator

    return CogVideoXGenerator.load(config)


@hookimpl
def register_generators(register: Any) -> None:
    register(GeneratorSpec("cogvideox", "CogVideoX text-to-video (diffusers)", _factory, DiffusersVideoConfig, LICENCE))
