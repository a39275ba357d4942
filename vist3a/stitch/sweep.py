"""The layer sweep: one pass over the clips fits every candidate stitch point at once, resumably."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from vist3a import distributed
from vist3a.errors import InputError
from vist3a.io.checkpoint import read_state, write_state
from vist3a.io.clips import resize_frames
from vist3a.protocols import Decoder3D, Generator, StitchPoint
from vist3a.stitch.adapter import im2col, interpolate_latents, tokens_to_rows
from vist3a.stitch.spec import StitchSpec
from vist3a.stitch.statistics import LayerFit, SweepStatistics


@dataclass(frozen=True)
class SweepSetup:
    """What a sweep fits: the candidate points, each one's adapter spec, and how frames are sized."""

    points: Sequence[StitchPoint]
    specs: dict[str, str]  # stitch point -> StitchSpec string
    generator_size: tuple[int, int]  # (H, W) the VAE encodes
    decoder_size: tuple[int, int]  # (H, W) the decoder reads
    heldout: float = 0.2  # fraction of clips held out for scoring
    data: str = ""  # identifies the data source, for resuming
    groups: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.heldout < 1.0:
            raise InputError(f"held-out fraction must be in [0, 1), got {self.heldout}")
        missing = [p.name for p in self.points if p.name not in self.specs]
        if missing:
            raise InputError(f"no stitch spec for {', '.join(missing)}")
        groups: dict[str, list[str]] = {}
        for point in self.points:  # points sharing a spec share one design matrix
            groups.setdefault(self.specs[point.name], []).append(point.name)
        object.__setattr__(self, "groups", groups)

    def signature(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if k != "groups"}, sort_keys=True, default=str)


def is_heldout(index: int, fraction: float) -> bool:
    """Clip ``index`` is held out where the running count ``ceil(n * fraction)`` steps up: evenly spread, clip 0
    first, so any positive fraction holds out at least one clip."""
    return math.ceil((index + 1) * fraction) > math.ceil(index * fraction)


class Sweep:
    """Accumulates the sweep statistics clip by clip; ``save``/``load`` make it resumable."""

    def __init__(self, setup: SweepSetup, in_channels: int) -> None:
        self.setup, self.clips_done = setup, 0
        channels = {p.name: p.channels for p in setup.points}
        self.stats = {
            spec: SweepStatistics(in_channels * _volume(StitchSpec.parse(spec).kernel), {n: channels[n] for n in names})
            for spec, names in setup.groups.items()
        }

    def add(self, index: int, latents: Tensor, features: dict[str, Tensor], temporal_factor: int) -> None:
        """Add one batch: RAW ``latents [B,C,T',h,w]`` and each point's tokens ``[B,C_k,T,h_k,w_k]``."""
        split = "heldout" if is_heldout(index, self.setup.heldout) else "fit"
        interpolated = interpolate_latents(latents.detach().cpu().double(), temporal_factor)
        for spec, names in self.setup.groups.items():
            x = im2col(interpolated, StitchSpec.parse(spec))
            self.stats[spec].update(split, x, {n: tokens_to_rows(features[n].detach().cpu()) for n in names})

    def fits(self, ridge: float = 1e-4) -> dict[str, LayerFit]:
        return {n: stats.solve(n, ridge) for spec, stats in self.stats.items() for n in self.setup.groups[spec]}

    def save(self, path: Path) -> None:
        tensors = {f"{i}.{k}": v for i, s in enumerate(self.stats.values()) for k, v in s.state_dict().items()}
        write_state(path, tensors, {"clips_done": str(self.clips_done), "setup": self.setup.signature()})

    def load(self, path: Path) -> None:
        tensors, meta = read_state(path, "sweep state")
        if meta.get("setup") != self.setup.signature():
            raise InputError(f"{path}: saved by a sweep with other settings; delete it to start over")
        for i, stats in enumerate(self.stats.values()):
            stats.load_state_dict({k[len(f"{i}.") :]: v for k, v in tensors.items() if k.startswith(f"{i}.")})
        self.clips_done = int(meta["clips_done"])

    def all_reduce(self) -> None:
        for stats in self.stats.values():
            stats.all_reduce()


def run_sweep(
    generator: Generator,
    decoder: Decoder3D,
    clips: Dataset,
    setup: SweepSetup,
    *,
    state_path: Path | None = None,
    checkpoint_every: int = 8,
    on_clip: Callable[[int, int], None] | None = None,
) -> Sweep:
    """Encode every clip once, read every candidate point once, accumulate; resume from ``state_path`` if present.

    ``on_clip(done, total)`` reports progress after each clip.

    Under ``torch.distributed`` each process takes every ``world``-th clip and the statistics are summed at the end.
    """
    rank, world = distributed.rank(), distributed.world_size()
    if state_path is not None and world > 1:  # each process checkpoints its own share
        state_path = state_path.with_name(f"{state_path.stem}.rank{rank}{state_path.suffix}")
    sweep = Sweep(setup, generator.latent.channels)
    if state_path is not None and state_path.exists():
        sweep.load(state_path)
    names = [p.name for p in setup.points]
    with torch.no_grad():
        for index in range(sweep.clips_done, len(clips)):
            if index % world == rank:
                frames = clips[index][None]  # [1,3,T,H,W]
                latents = generator.encode(resize_frames(frames, setup.generator_size))
                features = decoder.forward_features(decoder.preprocess(resize_frames(frames, setup.decoder_size)), names)
                sweep.add(index, latents, features, generator.latent.temporal_factor)
            sweep.clips_done = index + 1
            if state_path is not None and (sweep.clips_done % checkpoint_every == 0 or sweep.clips_done == len(clips)):
                sweep.save(state_path)
            if on_clip is not None:
                on_clip(sweep.clips_done, len(clips))
    sweep.all_reduce()
    return sweep


def _volume(kernel: tuple[int, int, int]) -> int:
    return kernel[0] * kernel[1] * kernel[2]
