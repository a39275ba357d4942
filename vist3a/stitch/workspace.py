"""A pairing workspace: ``pair.yaml`` written by ``vist3a pair`` and read by ``sweep-layers`` and ``stitch``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vist3a.config import StrictModel
from vist3a.errors import InputError
from vist3a.io.atomic import atomic_write_text
from vist3a.io.yaml_files import YamlDocument
from vist3a.protocols import Decoder3D, Generator, StitchPoint
from vist3a.registry import PairingEntry, Registry
from vist3a.stitch.spec import derive_spec

PAIR_FILE = "pair.yaml"
Size = tuple[int, int]


class ComponentRef(StrictModel):
    """A generator or decoder: registry id or spec name, and optionally a local checkpoint."""

    id: str
    checkpoint: str | None = None

    @classmethod
    def parse(cls, text: str) -> ComponentRef:
        """``ID`` or ``PLUGIN:PATH`` (a spec name and a local checkpoint folder or file)."""
        ident, sep, path = text.partition(":")
        if not sep:
            return cls(id=text)
        if not ident or not path:
            raise InputError(f"{text!r}: expected ID or PLUGIN:PATH")
        if not Path(path).exists():
            raise InputError(f"{text!r}: no such checkpoint {path}")
        return cls(id=ident, checkpoint=str(Path(path).resolve()))

    def __str__(self) -> str:
        return f"{self.id}:{self.checkpoint}" if self.checkpoint else self.id


class PointEntry(StrictModel):
    """A compatible stitch point and the adapter derived for it."""

    name: str
    index: int
    grid: Size
    channels: int
    prefix_tokens: int
    spec: str

    def stitch_point(self) -> StitchPoint:
        return StitchPoint(self.name, self.grid, self.channels, self.prefix_tokens, self.index)


class PairWorkspace(StrictModel):
    """The contents of ``pair.yaml``."""

    pairing: str | None = None
    generator: ComponentRef
    decoder: ComponentRef
    generator_resolution: Size
    decoder_resolution: Size
    frames: int
    stitch_points: list[PointEntry]
    default_stitch_point: str | None = None

    def point(self, name: str) -> PointEntry:
        for entry in self.stitch_points:
            if entry.name == name:
                return entry
        raise InputError(f"unknown stitch point {name!r}; this pairing has {', '.join(p.name for p in self.stitch_points)}")

    def save(self, directory: Path, *, overwrite: bool = False) -> Path:
        path = directory / PAIR_FILE
        if path.exists() and not overwrite:
            raise InputError(f"{path} already exists; pass --overwrite to replace it")
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))
        return path

    @classmethod
    def load(cls, directory: Path) -> PairWorkspace:
        path = directory / PAIR_FILE
        if not path.is_file():
            raise InputError(f"{path}: no pairing workspace here; create one with `vist3a pair GEN DEC --out {directory}`")
        return YamlDocument.read(path).validate(cls)

    def load_models(self, device: str = "cpu", dtype: str = "float32") -> tuple[Generator, Decoder3D]:
        import vist3a

        generator = vist3a.load_generator(self.generator.id, self.generator.checkpoint, device=device, dtype=dtype)
        decoder = vist3a.load_decoder(self.decoder.id, self.decoder.checkpoint, device=device, dtype=dtype)
        return generator, decoder


def create_pair(
    generator: ComponentRef,
    decoder: ComponentRef,
    *,
    registry: Registry,
    generator_resolution: Size | None = None,
    decoder_resolution: Size | None = None,
    frames: int | None = None,
    temporal_kernel: int = 5,
) -> tuple[PairWorkspace, list[tuple[str, str]]]:
    """Check a pairing from the models' configs alone (meta device) and derive each stitch point's adapter.

    Settings not given come from a registry pairing of the two ids. Returns the workspace and the stitch points
    that cannot be fed from these latents, with the reason.
    """
    import vist3a

    pairing_id, pairing = _registry_pairing(registry, generator.id, decoder.id)
    if pairing is not None:  # a spec name given without a checkpoint stands for the pairing's registry entry
        generator = generator if generator.checkpoint else ComponentRef(id=pairing.generator)
        decoder = decoder if decoder.checkpoint else ComponentRef(id=pairing.decoder)
    settings = _settings(pairing, generator_resolution, decoder_resolution, frames, f"{generator.id}+{decoder.id}")
    gen = vist3a.load_generator(generator.id, generator.checkpoint, registry=registry, device="meta")
    dec = vist3a.load_decoder(decoder.id, decoder.checkpoint, registry=registry, device="meta")
    latent = gen.latent
    if not latent.is_valid_frames(settings["frames"]):
        raise InputError(
            f"{settings['frames']} frames do not follow {generator.id}'s frame rule {latent.frame_rule}; "
            f"use {latent.valid_frames(settings['frames'])}"
        )
    allowed = set(pairing.stitch_points) if pairing and pairing.stitch_points else None
    entries, rejected = [], []
    for point in dec.stitch_points(settings["decoder_resolution"]):
        if allowed is not None and point.name not in allowed:
            continue
        try:
            spec = derive_spec(latent, point, settings["generator_resolution"], temporal_kernel)
        except InputError as exc:
            rejected.append((point.name, str(exc)))
            continue
        entries.append(PointEntry(name=point.name, index=point.index, grid=point.grid, channels=point.channels,
                                  prefix_tokens=point.prefix_tokens, spec=str(spec)))  # fmt: skip
    if not entries:
        reason = rejected[0][1] if rejected else f"{decoder.id} offers no stitch point"
        raise InputError(f"incompatible pair {generator}+{decoder}: {reason}")
    default = pairing.default_stitch_point if pairing else None
    workspace = PairWorkspace(
        pairing=pairing_id, generator=generator, decoder=decoder, stitch_points=entries,
        default_stitch_point=default if default in {e.name for e in entries} else None, **settings,
    )  # fmt: skip
    return workspace, rejected


def parse_size(text: str) -> Size:
    """``512`` -> (512, 512); ``480x832`` -> (480, 832)."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise InputError(f"invalid resolution {text!r}; expected N or HxW")
    return (int(parts[0]), int(parts[-1]))


def _registry_pairing(registry: Registry, generator: str, decoder: str) -> tuple[str | None, PairingEntry | None]:
    """The first pairing of ``generator`` and ``decoder``, each a registry id or the spec name of one."""

    def matches(ident: str, ref: str, kind: str) -> bool:
        return ident == ref or registry.entries[kind][ident].spec == ref  # type: ignore[index]

    exact = [(i, p) for i, p in registry.pairings.items() if (p.generator, p.decoder) == (generator, decoder)]
    loose = [(i, p) for i, p in registry.pairings.items()
             if matches(p.generator, generator, "generators") and matches(p.decoder, decoder, "decoders")]  # fmt: skip
    return (exact or loose or [(None, None)])[0]


def _settings(pairing: PairingEntry | None, gen_size: Size | None, dec_size: Size | None, frames: int | None,
              name: str) -> dict[str, Any]:  # fmt: skip
    values = {
        "generator_resolution": gen_size or (pairing.generator_resolution if pairing else None),
        "decoder_resolution": dec_size or (pairing.decoder_resolution if pairing else None),
        "frames": frames or (pairing.frames if pairing else None),
    }
    missing = [k for k, v in values.items() if v is None]
    if missing:
        flags = {"generator_resolution": "--resolution", "decoder_resolution": "--decoder-resolution", "frames": "--frames"}
        raise InputError(f"no registry pairing for {name}: pass {', '.join(flags[k] for k in missing)}")
    return values
