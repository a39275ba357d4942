"""registry.yaml: the catalogue of known generators, decoders, rewards and pairings.

The packaged file (the repo-root ``registry.yaml``) is read first; a user file given with ``--registry`` or
``VIST3A_REGISTRY`` adds entries or replaces entries with the same id. Plugin registrations that no entry
mentions are available under their own names.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from vist3a.config import StrictModel
from vist3a.errors import CheckpointError, NotInstalledError, RegistryError, UnknownPluginError
from vist3a.io.yaml_files import YamlDocument
from vist3a.plugins import Kind, Plugins, Registration

ID_PATTERN = r"^[a-z0-9][a-z0-9._+-]*$"
ENV_VAR = "VIST3A_REGISTRY"
Size = tuple[int, int]


class ComponentEntry(StrictModel):
    """A generator, decoder or reward: which plugin provides it and with which defaults."""

    plugin: str
    """Entry-point name of the plugin (as ``vist3a plugins`` lists it)."""
    spec: str
    """Name of the spec the plugin registers."""
    description: str = ""
    checkpoint: str | None = None
    """Default weights: a hub id or a local path."""
    licence: str
    install: str | None = None
    """How to install the plugin when it is missing."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Extra fields for the spec's config model."""


class SamplingDefaults(StrictModel):
    """``vist3a generate`` defaults that suit a pairing (options given on the command line win)."""

    steps: int | None = Field(None, gt=0)
    guidance: float | None = Field(None, ge=0)
    template: str | None = None
    negative_prompt: str | None = None


class PairingEntry(StrictModel):
    """A generator x decoder pairing and the stitching settings known to work for it."""

    generator: str
    decoder: str
    description: str = ""
    stitch_points: list[str] = Field(default_factory=list)
    """Candidate stitch points for the layer sweep; empty means every point the decoder offers."""
    default_stitch_point: str | None = None
    generator_resolution: Size
    """(H, W) of the frames the video VAE sees."""
    decoder_resolution: Size
    """(H, W) of the decoder's input."""
    frames: int = Field(gt=0)
    stitched_checkpoint: str | None = None
    """A stitched-decoder folder in our format (StitchedDecoder.save_pretrained); convert the official VIST3A
    ``anysplat_stitched.pth`` with ``vist3a anysplat-import-release``."""
    generator_lora: str | None = None
    """A PEFT adapter for the generator's denoiser: a folder, a hub id or ``repo:subfolder``."""
    sampling: SamplingDefaults = SamplingDefaults()

    @model_validator(mode="after")
    def _default_is_a_candidate(self) -> PairingEntry:
        if self.default_stitch_point and self.stitch_points and self.default_stitch_point not in self.stitch_points:
            raise ValueError(f"default_stitch_point {self.default_stitch_point!r} is not in stitch_points")
        return self


class RegistryFile(StrictModel):
    """The schema of one registry file."""

    generators: dict[str, ComponentEntry] = Field(default_factory=dict)
    decoders: dict[str, ComponentEntry] = Field(default_factory=dict)
    rewards: dict[str, ComponentEntry] = Field(default_factory=dict)
    pairings: dict[str, PairingEntry] = Field(default_factory=dict)
    default_pairing: str | None = None
    """The pairing ``vist3a generate`` uses when no ``--pair`` is given (a later file overrides it)."""


@dataclass(frozen=True)
class Status:
    """Whether an entry can be used here, and if not, why."""

    installed: bool
    message: str


class Registry:
    """The merged registry (packaged file, then user files) plus what the loaded plugins register."""

    def __init__(self, documents: list[tuple[YamlDocument, RegistryFile]]) -> None:
        self.sources = [doc.path for doc, _ in documents]
        self.entries: dict[Kind, dict[str, ComponentEntry]] = {"generators": {}, "decoders": {}, "rewards": {}}
        self.pairings: dict[str, PairingEntry] = {}
        self.default_pairing: str | None = None
        for _, content in documents:
            for kind in self.entries:
                self.entries[kind].update(getattr(content, kind))
            self.pairings.update(content.pairings)
            self.default_pairing = content.default_pairing or self.default_pairing
        for doc, content in documents:
            self._check(doc, content)

    @classmethod
    def load(cls, user_file: str | Path | None = None) -> Registry:
        """The packaged registry extended by ``user_file`` (default: ``$VIST3A_REGISTRY``)."""
        paths = [packaged_registry_path()]
        user_file = user_file or os.environ.get(ENV_VAR) or None
        if user_file:
            paths.append(Path(user_file))
        docs = [YamlDocument.read(p, RegistryError) for p in paths]
        return cls([(doc, doc.validate(RegistryFile, RegistryError)) for doc in docs])

    def _check(self, doc: YamlDocument, content: RegistryFile) -> None:
        """Ids are well formed and pairings refer to known generators and decoders."""
        for section in ("generators", "decoders", "rewards", "pairings"):
            for ident in getattr(content, section):
                if not re.match(ID_PATTERN, ident):
                    raise RegistryError(f"{doc.where([section, ident])}: invalid id (lowercase letters, digits, . _ + -)")
        if content.default_pairing and content.default_pairing not in self.pairings:
            raise RegistryError(f"{doc.where(['default_pairing'])}: unknown pairing {content.default_pairing!r}")
        for pid, pairing in content.pairings.items():
            for role, kind in (("generator", "generators"), ("decoder", "decoders")):
                ref = getattr(pairing, role)
                if ref not in self.entries[kind]:  # type: ignore[index]
                    known = ", ".join(sorted(self.entries[kind])) or "none"  # type: ignore[index]
                    raise RegistryError(f"{doc.where(['pairings', pid, role])}: unknown {role} {ref!r}; known: {known}")

    def entry(self, kind: Kind, ident: str, plugins: Plugins) -> tuple[ComponentEntry, Registration]:
        """The entry for ``ident`` and the registration that implements it; clear errors otherwise."""
        entry = self.entries[kind].get(ident)
        if entry is None:
            registration = plugins.registrations(kind).get(ident)
            if registration is None:
                known = sorted(set(self.entries[kind]) | set(plugins.registrations(kind)))
                raise UnknownPluginError(f"unknown {kind[:-1]} {ident!r}; known: {', '.join(known) or 'none'}")
            spec = registration.spec
            return ComponentEntry(plugin=registration.plugin, spec=spec.name, licence=spec.licence), registration
        status = self.status(kind, ident, plugins)
        if not status.installed:
            raise NotInstalledError(f"{kind[:-1]} {ident!r}: {status.message}")
        return entry, plugins.registrations(kind)[entry.spec]

    def status(self, kind: Kind, ident: str, plugins: Plugins) -> Status:
        entry = self.entries[kind][ident]
        info = plugins.infos.get(entry.plugin)
        how = f"; install with: {entry.install}" if entry.install else ""
        if info is None:
            return Status(False, f"plugin {entry.plugin!r} is not installed{how}")
        if info.error:
            return Status(False, f"plugin {entry.plugin!r} failed to load: {info.error}")
        registration = plugins.registrations(kind).get(entry.spec)
        if registration is None or registration.plugin != entry.plugin:
            return Status(False, f"plugin {entry.plugin!r} does not provide {kind[:-1]} {entry.spec!r}")
        return Status(True, "installed")

    def pairing_status(self, ident: str, plugins: Plugins) -> Status:
        pairing = self.pairings[ident]
        for kind, ref in (("generators", pairing.generator), ("decoders", pairing.decoder)):
            status = self.status(kind, ref, plugins)  # type: ignore[arg-type]
            if not status.installed:
                return Status(False, f"{ref}: {status.message}")
        return Status(True, "installed")


PACKAGE_PREFIX = "package:"


def resolve_location(value: str | None) -> str | None:
    """``package:MODULE/PATH`` -> the file system path of ``PATH`` inside the installed package ``MODULE`` (weights
    shipped with a plugin); any other checkpoint location (a folder, a file, a hub id) is returned unchanged."""
    if value is None or not value.startswith(PACKAGE_PREFIX):
        return value
    module, _, inner = value.removeprefix(PACKAGE_PREFIX).partition("/")
    try:
        root = files(module)
    except ModuleNotFoundError:
        raise CheckpointError(f"{value}: the package {module!r} is not installed") from None
    return str(Path(str(root)) / inner)


def packaged_registry_path() -> Path:
    """The registry that ships with the package (a copy of the repo-root ``registry.yaml``)."""
    return Path(str(files("vist3a") / "data" / "registry.yaml"))

