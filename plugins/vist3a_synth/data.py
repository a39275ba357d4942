"""The ``synthetic`` data source: clips of synthetic-world scenes, with their exact ground truth.

``synthetic:N[:SPLIT]`` is N scenes of SPLIT (train, val or test; train when left out), 1 <= N <= 1,000,000. Scene ``i``
under ``open_clips(..., seed=S)`` is ``sample_scene(S * 1_000_000 + i, SPLIT)``, rendered over ``frames`` views at
``size``; the camera path spans the clip whatever the frame count, so ``step`` is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor
from torch.utils.data import Dataset

from vist3a.errors import InputError
from vist3a.scene import Cameras
from vist3a_synth.cameras import scene_cameras
from vist3a_synth.captions import caption
from vist3a_synth.raycast import raycast
from vist3a_synth.world import SPLITS, Scene, Split, sample_scene

MAX_SCENES = 1_000_000
GRAMMAR = "synthetic:N[:train|val|test]"


@dataclass
class SynthSample:
    """One clip with its ground truth (T frames, OpenCV cameras, see :mod:`vist3a_synth.cameras`).

    Args:
        frames: ``[3,T,H,W]`` in [-1,1], the clip itself (``dataset[i]``).
        depth: ``[T,H,W]`` z-depth (along the optical axis); 0 where the ray sees sky.
        ids: ``[T,H,W]`` int64, k + 1 where object k of ``scene.objects`` is seen, 0 for ground and sky.
        intrinsics: ``[T,3,3]`` in pixels, pixel ``(i, j)`` centred at ``(j + 0.5, i + 0.5)``.
        extrinsics: ``[T,4,4]`` world-to-camera.
        scene: the scene; ``scene.objects`` are the labels (shape, colour, size, position).
        caption: its caption from the grammar in :mod:`vist3a_synth.captions`.
    """

    frames: Tensor
    depth: Tensor
    ids: Tensor
    intrinsics: Tensor
    extrinsics: Tensor
    scene: Scene
    caption: str

    @property
    def valid(self) -> Tensor:
        """``[T,H,W]`` bool: depth is defined (ground or object)."""
        return self.depth > 0

    @property
    def cameras(self) -> Cameras:
        """The cameras as vist3a :class:`~vist3a.scene.Cameras` with a batch of one."""
        return Cameras(self.extrinsics[None], self.intrinsics[None], tuple(self.frames.shape[-2:]))


class SynthClips(Dataset):
    """``count`` scenes of ``split`` as clips ``[3,T,H,W]`` in [-1,1], with ``caption(i)`` and ``sample(i)``."""

    def __init__(self, count: int, frames: int, size: tuple[int, int], seed: int = 0, split: Split = "train") -> None:
        self.count, self.frames, self.size, self.seed, self.split = count, frames, size, seed, split

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Tensor:
        return self.sample(i).frames

    def scene(self, i: int) -> Scene:
        if not 0 <= i < self.count:
            raise IndexError(f"scene {i} out of range for {self.count} scenes")
        return sample_scene(self.seed * MAX_SCENES + i, self.split)

    def caption(self, i: int) -> str:
        return caption(self.scene(i))

    def sample(self, i: int) -> SynthSample:
        """Clip ``i`` with depth, object ids, cameras, scene and caption."""
        scene = self.scene(i)
        intrinsics, extrinsics = scene_cameras(scene, self.frames, self.size)
        render = raycast(scene.objects, intrinsics, extrinsics, self.size)
        frames = render.rgb.transpose(0, 1) * 2 - 1
        return SynthSample(frames, render.depth, render.ids, intrinsics, extrinsics, scene, caption(scene))


def open_synthetic(arg: str, *, frames: int, size: tuple[int, int], step: int = 1, seed: int = 0) -> SynthClips:
    """The ``open`` of the ``synthetic`` data source: ``arg`` is ``N`` or ``N:SPLIT``."""
    count, _, split = arg.partition(":")
    split = split or "train"
    if not count.isdigit() or not 1 <= int(count) <= MAX_SCENES or split not in SPLITS:
        raise InputError(f"invalid data source 'synthetic:{arg}'; expected {GRAMMAR} with 1 <= N <= {MAX_SCENES:,}")
    if min(size) < 1:
        raise InputError(f"synthetic clips need a positive size, got {size[0]}x{size[1]}")
    return SynthClips(int(count), frames, size, seed, split)  # type: ignore[arg-type]
