"""Scenes: determinism, valid objects on the ground, and splits that hold out (colour, shape) combinations."""

import math
from collections import Counter

import pytest
from vist3a_synth.cameras import scene_cameras
from vist3a_synth.raycast import raycast
from vist3a_synth.world import (
    COLOURS,
    GAP,
    HELD_OUT,
    PLACEMENT_RADIUS,
    SHAPES,
    SIZES,
    TRAJECTORIES,
    Scene,
    SceneObject,
    Trajectory,
    sample_scene,
    unoccluded,
)

TRAIN = [sample_scene(seed, "train") for seed in range(600)]
VAL = [sample_scene(seed, "val") for seed in range(200)]
TEST = [sample_scene(seed, "test") for seed in range(300)]


def _pairs(scene):
    return {(o.colour, o.shape) for o in scene.objects}


def test_scenes_are_deterministic_by_seed_and_split():
    assert sample_scene(7, "train") == sample_scene(7, "train") == TRAIN[7]
    assert sum(sample_scene(s, "val") != sample_scene(s, "train") for s in range(20)) >= 19  # separate random streams
    assert len({sample_scene(s).objects for s in range(50)}) == 50


def test_held_out_combinations_never_appear_in_train_or_val():
    assert 0.08 <= len(HELD_OUT) / (len(COLOURS) * len(SHAPES)) <= 0.15
    assert not any(_pairs(s) & HELD_OUT for s in TRAIN + VAL)


def test_every_test_scene_holds_a_held_out_combination():
    assert all(_pairs(s) & HELD_OUT for s in TEST)
    assert set().union(*map(_pairs, TEST)) >= HELD_OUT


def test_train_covers_every_attribute():
    objects = [o for s in TRAIN for o in s.objects]
    assert {o.colour for o in objects} == set(COLOURS) and {o.shape for o in objects} == set(SHAPES)
    assert {o.size for o in objects} == set(SIZES)
    assert {s.trajectory.kind for s in TRAIN} == set(TRAJECTORIES)
    assert set(Counter(len(s.objects) for s in TRAIN)) == {1, 2, 3}


@pytest.mark.parametrize("scenes", [TRAIN, TEST], ids=["train", "test"])
def test_objects_are_distinct_in_the_disc_and_apart(scenes):
    for scene in scenes:
        objects = scene.objects
        assert len(_pairs(scene)) == len(objects)  # a caption can name each object by colour and shape
        assert all(math.hypot(*o.position) <= PLACEMENT_RADIUS + 1e-3 for o in objects)
        for i, a in enumerate(objects):
            for b in objects[i + 1 :]:
                # footprints: radius s, or half a diagonal (s * sqrt 2) for a cube, whatever its yaw
                ra, rb = (SIZES[o.size] * (math.sqrt(2) if o.shape == "cube" else 1) for o in (a, b))
                assert math.dist(a.position, b.position) >= ra + rb + GAP - 1e-3


def test_the_first_frame_shows_every_object():
    """Each object keeps at least a third of the pixels it covers when rendered alone (the rest may hide it)."""
    for scene in TRAIN[:40]:
        k, e = scene_cameras(scene, 1, (64, 64))
        ids = raycast(scene.objects, k, e, (64, 64)).ids[0]
        for i, obj in enumerate(scene.objects):
            alone = (raycast([obj], k, e, (64, 64)).ids[0] == 1).sum()
            assert alone > 0 and (ids == i + 1).sum() >= alone / 3, (scene.seed, obj)


def test_an_object_hidden_behind_another_is_occluded():
    """The first camera at azimuth -90 degrees looks along +y: a small sphere straight behind a large cube is hidden."""
    trajectory = Trajectory("orbit", -math.pi / 2, math.radians(20), 4.0, 0.5)
    cube, sphere = SceneObject("cube", "red", "large", (0.0, -0.5)), SceneObject("sphere", "blue", "small", (0.0, 0.6))
    assert not unoccluded(Scene((cube, sphere), trajectory))
    assert unoccluded(Scene((cube, SceneObject("sphere", "blue", "small", (1.0, 0.6))), trajectory))


def test_unknown_split():
    with pytest.raises(ValueError, match="split must be one of train, val, test"):
        sample_scene(0, "holdout")
