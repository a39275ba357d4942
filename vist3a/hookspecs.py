"""The hooks a vist3a plugin can implement. Each takes a callback or the CLI app, as in ``llm``."""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("vist3a")
hookimpl = pluggy.HookimplMarker("vist3a")


@hookspec
def register_generators(register: Any) -> None:
    """Call ``register(GeneratorSpec(...))`` once for each text-to-video generator the plugin provides."""


@hookspec
def register_decoders(register: Any) -> None:
    """Call ``register(DecoderSpec(...))`` once for each 3D decoder the plugin provides."""


@hookspec
def register_rewards(register: Any) -> None:
    """Call ``register(RewardSpec(...))`` once for each reward the plugin provides."""


@hookspec
def register_data_sources(register: Any) -> None:
    """Call ``register(DataSourceSpec(...))`` once for each ``--data`` scheme (``synthetic:N``) the plugin provides."""


@hookspec
def register_commands(app: Any) -> None:
    """Add commands to the ``vist3a`` typer app with ``app.command()``."""
