"""The synthetic world: scenes of 1-3 coloured primitives on a ground plane, and their splits.

World coordinates are metric-free units with **z up**; the ground is the plane ``z = 0`` and every object rests on it.
An object of size ``s`` (its half-extent, :data:`SIZES`) fills ``|x|, |y| <= s`` around its position (before yaw) and
``0 <= z <= 2s``: a sphere of radius ``s`` centred at height ``s``; a cube of side ``2s``; a cylinder and a cone (apex
up) of radius ``s`` and height ``2s``. Yaw turns an object about its vertical axis (it only shows on cubes).

Splits hold out the (colour, shape) combinations in :data:`HELD_OUT`: train and val scenes never contain one, every
test scene contains at least one. Val differs from train only by its random stream. The first frame shows at least
half the width of every object (:func:`unoccluded`), so a caption never names a hidden object.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Literal

from vist3a_synth.cameras import first_view_coordinates

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
SHAPES = ("sphere", "cube", "cylinder", "cone")
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "orange": (0.95, 0.50, 0.08),
    "yellow": (0.95, 0.85, 0.15),
    "green": (0.15, 0.65, 0.20),
    "blue": (0.12, 0.30, 0.85),
    "purple": (0.50, 0.20, 0.70),
    "pink": (0.95, 0.50, 0.70),
    "white": (0.95, 0.95, 0.95),
}
SIZES: dict[str, float] = {"small": 0.25, "medium": 0.35, "large": 0.45}
HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    {("red", "cone"), ("blue", "sphere"), ("yellow", "cylinder"), ("purple", "cube")}
)  # 4 of the 32 (colour, shape) pairs: each shape once, four different colours
PAIRS = [(c, s) for c in COLOURS for s in SHAPES]
TRAJECTORIES = ("orbit", "arc", "dolly")
PLACEMENT_RADIUS = 1.0  # object positions lie in this disc around the origin
GAP = 0.1  # at least this much ground between two objects' footprints


@dataclass(frozen=True)
class SceneObject:
    """One primitive: ``shape`` in SHAPES, ``colour`` in COLOURS, ``size`` in SIZES, ``position`` (x, y) on the ground,
    ``yaw`` in radians about the world z axis."""

    shape: str
    colour: str
    size: str
    position: tuple[float, float]
    yaw: float = 0.0

    @property
    def extent(self) -> float:
        """Half-extent ``s`` in world units; the object's height is ``2s``."""
        return SIZES[self.size]

    @property
    def footprint(self) -> float:
        """Radius of a vertical cylinder around the position that holds the object whatever its yaw."""
        return self.extent * (math.sqrt(2) if self.shape == "cube" else 1.0)


@dataclass(frozen=True)
class Trajectory:
    """A smooth camera path around the scene centre (see ``cameras.camera_path``).

    ``kind``: orbit (azimuth sweeps at a fixed height), arc (azimuth and elevation sweep together), dolly (the camera
    moves towards the centre); ``azimuth``/``elevation`` of the first view (radians), ``distance`` to the centre,
    ``sweep``: the azimuth change over the clip (radians, signed; for a dolly, the small drift).
    """

    kind: str
    azimuth: float
    elevation: float
    distance: float
    sweep: float


@dataclass(frozen=True)
class Scene:
    """Objects on the ground plane and the camera path that films them; ``seed`` and ``split`` it was sampled from."""

    objects: tuple[SceneObject, ...]
    trajectory: Trajectory
    seed: int = 0
    split: Split = "train"

    @property
    def centre(self) -> tuple[float, float, float]:
        """The point cameras look at: the mean of the objects' bounding-box centres."""
        n = len(self.objects)
        return (sum(o.position[0] for o in self.objects) / n, sum(o.position[1] for o in self.objects) / n,
                sum(o.extent for o in self.objects) / n)  # fmt: skip


def sample_scene(seed: int, split: Split = "train") -> Scene:
    """The scene of ``(seed, split)``: 1-3 objects of distinct (colour, shape), non-overlapping, and a trajectory."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    rng = random.Random(f"vist3a-synth:{split}:{seed}")
    count = rng.randint(1, 3)
    allowed = [p for p in PAIRS if split == "test" or p not in HELD_OUT]
    pairs = rng.sample(sorted(HELD_OUT) if split == "test" else allowed, 1)  # a test scene has a held-out pair
    pairs += rng.sample([p for p in allowed if p not in pairs], count - 1)
    rng.shuffle(pairs)
    objects = [SceneObject(shape, colour, rng.choice(list(SIZES)), (0.0, 0.0), rng.uniform(0, math.pi / 2)) for colour, shape in pairs]
    while True:
        layout = _layout(rng, objects)
        for _ in range(10):
            if unoccluded(scene := Scene(layout, _trajectory(rng), seed, split)):
                return scene


def unoccluded(scene: Scene) -> bool:
    """Whether the first frame shows at least half the width of every object: in that view, the nearer of two objects
    may cover at most half of the farther one's horizontal extent (footprints, seen from their box centres)."""
    seen = [(x / z, o.footprint / z, z) for (x, z), o in zip(first_view_coordinates(scene), scene.objects)]
    for i, (xa, ra, za) in enumerate(seen):
        for xb, rb, zb in seen[i + 1 :]:
            overlap = min(xa + ra, xb + rb) - max(xa - ra, xb - rb)
            if overlap > (ra if za > zb else rb):  # more than half (one radius) of the farther one's width
                return False
    return True


def _layout(rng: random.Random, objects: list[SceneObject]) -> tuple[SceneObject, ...]:
    """The objects at positions in the placement disc, GAP apart (rejection sampling; starts over when stuck)."""
    while (placed := _try_layout(rng, objects)) is None:
        pass
    return placed


def _try_layout(rng: random.Random, objects: list[SceneObject], tries: int = 50) -> tuple[SceneObject, ...] | None:
    placed: list[SceneObject] = []
    for o in objects:
        for _ in range(tries):
            r, a = PLACEMENT_RADIUS * math.sqrt(rng.random()), rng.uniform(-math.pi, math.pi)
            xy = (round(r * math.cos(a), 4), round(r * math.sin(a), 4))
            if all(math.dist(xy, p.position) >= o.footprint + p.footprint + GAP for p in placed):
                placed.append(replace(o, position=xy))
                break
        else:
            return None
    return tuple(placed)


def _trajectory(rng: random.Random) -> Trajectory:
    kind = rng.choice(TRAJECTORIES)
    sweep = rng.choice([-1, 1]) * (rng.uniform(0.6, 1.2) if kind != "dolly" else rng.uniform(0.0, 0.3))
    return Trajectory(kind, rng.uniform(-math.pi, math.pi), math.radians(rng.uniform(20, 35)), rng.uniform(3.6, 4.4), sweep)
