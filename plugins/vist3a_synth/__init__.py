"""vist3a_synth: a procedural world of coloured primitives with exact ground truth (``synthetic:N`` data, ``vist3a synth``).

See docs/synth.md. Modules: world (scenes, splits), captions (grammar), cameras (paths), raycast (renderer), data
(the ``synthetic`` data source), cli (the ``vist3a synth`` commands).
"""

from __future__ import annotations

from typing import Any

from vist3a.hookspecs import hookimpl
from vist3a.specs import DataSourceSpec, DecoderSpec


@hookimpl
def register_data_sources(register: Any) -> None:
    from vist3a_synth.data import GRAMMAR, open_synthetic

    register(DataSourceSpec(scheme="synthetic", open=open_synthetic, help=GRAMMAR))


@hookimpl
def register_commands(app: Any) -> None:
    from vist3a_synth.cli import app as synth

    app.add_typer(synth, name="synth")


@hookimpl
def register_rewards(register: Any) -> None:
    from vist3a.specs import RewardSpec
    from vist3a_synth.reward import SynthClipRewardConfig, load_synth_clip

    register(RewardSpec("synth-clip", "CLIP-style score trained on the synthetic world (64x64 frames; shipped weights)",
                        load_synth_clip, SynthClipRewardConfig, licence="code and weights: Apache-2.0 (vist3a)"))  # fmt: skip


@hookimpl
def register_decoders(register: Any) -> None:
    from vist3a_anysplat import AnySplatConfig

    def build(cfg: AnySplatConfig) -> Any:
        from vist3a_synth.decoder import build

        return build(cfg)

    register(DecoderSpec("synth-anysplat", "AnySplat trained on the synthetic world (9 views, 64x64; shipped weights)", build,
                         AnySplatConfig, licence="code and weights: Apache-2.0 (vist3a)"))  # fmt: skip


@hookimpl
def register_generators(register: Any) -> None:
    from vist3a.generators.options import DiffusersVideoConfig
    from vist3a.specs import GeneratorSpec

    def build(config: DiffusersVideoConfig) -> Any:
        from vist3a_synth.generator import load

        return load(config)

    register(GeneratorSpec("synth-wan", "Wan text-to-video trained on the synthetic world (9 frames, 64x64; shipped weights)",
                           build, DiffusersVideoConfig, licence="code and weights: Apache-2.0 (vist3a)"))  # fmt: skip
