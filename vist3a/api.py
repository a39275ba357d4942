"""Build generators, decoders and rewards by registry id or registered name."""

from __future__ import annotations

from typing import Any

from vist3a.config import validate
from vist3a.errors import PluginError
from vist3a.plugins import Kind, get_plugins
from vist3a.protocols import Decoder3D, Generator, Reward
from vist3a.registry import Registry, resolve_location

PROTOCOLS: dict[Kind, type] = {"generators": Generator, "decoders": Decoder3D, "rewards": Reward}


def load_generator(ident: str, checkpoint: str | None = None, *, registry: Registry | None = None, **config: Any) -> Generator:
    """The generator ``ident`` (registry id or spec name), from ``checkpoint`` or the registry's default weights."""
    return _load("generators", ident, checkpoint, registry, config)


def load_decoder(ident: str, checkpoint: str | None = None, *, registry: Registry | None = None, **config: Any) -> Decoder3D:
    """The 3D decoder ``ident``, e.g. ``load_decoder("vggt", "path/to/folder")``."""
    return _load("decoders", ident, checkpoint, registry, config)


def load_reward(ident: str, checkpoint: str | None = None, *, registry: Registry | None = None, **config: Any) -> Reward:
    """The reward ``ident``."""
    return _load("rewards", ident, checkpoint, registry, config)


def _load(kind: Kind, ident: str, checkpoint: str | None, registry: Registry | None, overrides: dict[str, Any]) -> Any:
    plugins = get_plugins()
    entry, registration = (registry or Registry.load()).entry(kind, ident, plugins)
    values = {**entry.config, "checkpoint": entry.checkpoint, **overrides}
    if checkpoint is not None:
        values["checkpoint"] = str(checkpoint)
    values["checkpoint"] = resolve_location(values["checkpoint"])
    config = validate(registration.spec.config, values, f"{kind[:-1]} {ident!r}")
    component = registration.spec.factory(config)
    if not isinstance(component, PROTOCOLS[kind]):
        raise PluginError(
            f"plugin {registration.plugin!r}: {registration.spec.name!r} built a {type(component).__name__}, "
            f"which does not implement the {PROTOCOLS[kind].__name__} protocol"
        )
    return component
