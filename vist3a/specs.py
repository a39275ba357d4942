"""What a plugin registers: a typed, documented spec rather than a bare class."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from torch.utils.data import Dataset

from vist3a.config import ComponentConfig

C = TypeVar("C", bound=ComponentConfig)


@dataclass(frozen=True)
class ComponentSpec(Generic[C]):
    """A generator, decoder or reward that a plugin provides."""

    name: str
    """Unique id, used in registry.yaml and on the command line (lowercase, no ``:``)."""
    description: str
    """One line shown by ``vist3a plugins``."""
    factory: Callable[[C], Any]
    """Builds the component from a validated ``config``."""
    config: type[C] = ComponentConfig  # type: ignore[assignment]
    """The pydantic model of what ``factory`` accepts; a subclass of ComponentConfig."""
    licence: str = "unspecified"
    """Licence note for the code and the default weights (users must honour the weights' licence)."""


@dataclass(frozen=True)
class GeneratorSpec(ComponentSpec[C]):
    """Registers a :class:`~vist3a.protocols.Generator`."""


@dataclass(frozen=True)
class DecoderSpec(ComponentSpec[C]):
    """Registers a :class:`~vist3a.protocols.Decoder3D`."""


@dataclass(frozen=True)
class RewardSpec(ComponentSpec[C]):
    """Registers a :class:`~vist3a.protocols.Reward`."""


@dataclass(frozen=True)
class DataSourceSpec:
    """A scheme of clip data: ``--data SCHEME:ARG`` opens a dataset (see :func:`vist3a.io.clips.open_clips`)."""

    scheme: str
    """The part before the first ``:`` (lowercase letter, then letters, digits or ``+ . -``; two characters at least)."""
    open: Callable[..., Dataset]
    """``open(arg, *, frames, size, step, seed)`` -> clips ``[3,T,H,W]`` in [-1,1]; raises InputError on a bad ``arg``."""
    help: str
    """The grammar of ``SCHEME:ARG`` in a few words, e.g. ``synthetic:N[:train|val|test]``; shown in errors."""
