"""The caption grammar: captions name every object, parse back to attributes, and relations follow the first view."""

import math

import pytest
from vist3a_synth.captions import RELATIONS, caption, caption_objects, parse_caption, relation
from vist3a_synth.world import Scene, SceneObject, Trajectory, sample_scene

# The first camera at azimuth -90 degrees sits on the -y side looking along +y: image right is world +x, and
# larger y is farther away.
FROM_MINUS_Y = Trajectory("orbit", -math.pi / 2, math.radians(30), 4.0, 0.8)


def _scene(*objects):
    return Scene(tuple(objects), FROM_MINUS_Y)


def test_captions_of_hand_placed_scenes():
    red_sphere, blue_cube = SceneObject("sphere", "red", "small", (-0.8, 0.0)), SceneObject("cube", "blue", "large", (0.8, 0.0))
    assert caption(_scene(SceneObject("cone", "green", "large", (0.0, 0.0)))) == "a large green cone"
    assert caption(_scene(red_sphere, blue_cube)) == "a red sphere to the left of a blue cube"
    assert caption(_scene(blue_cube, red_sphere)) == "a blue cube to the right of a red sphere"
    far_cone = SceneObject("cone", "white", "medium", (0.8, 0.9))  # straight behind the cube
    assert caption(_scene(red_sphere, blue_cube, far_cone)) == (
        "a red sphere to the left of a blue cube, and a white cone behind the blue cube"
    )


def test_relations():
    assert relation((-1.0, 0.1), (0.0, 0.0)) == "to the left of"
    assert relation((0.1, -1.0), (0.0, 0.0)) == "in front of"
    assert relation((0.0, 2.0), (0.1, 0.0)) == "behind"
    assert relation((1.0, 1.0), (0.0, 0.0)) == "next to"  # a diagonal has no dominant axis


def test_captions_parse_back_to_the_scene_objects():
    for split in ("train", "test"):
        for seed in range(300):
            scene = sample_scene(seed, split)
            text = caption(scene)
            assert caption_objects(text) == [(o.colour, o.shape) for o in scene.objects]
            assert all(value in RELATIONS for key, value in parse_caption(text).items() if key.startswith("rel"))


def test_parse_caption():
    assert parse_caption("a white cone behind a pink cone") == {
        "colour0": "white", "shape0": "cone", "rel01": "behind", "colour1": "pink", "shape1": "cone",
    }  # fmt: skip
    assert parse_caption("a small red cube") == {"size0": "small", "colour0": "red", "shape0": "cube"}
    for bad in ["a red dodecahedron", "a red sphere near a blue cube", "a red sphere to the left of a blue cube, and a "
                "green cone behind the white cube"]:  # fmt: skip
        with pytest.raises(ValueError, match="not a caption of the synthetic world"):
            parse_caption(bad)
