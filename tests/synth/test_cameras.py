"""Camera paths: OpenCV world-to-camera extrinsics that are rigid, upright and look at the scene centre."""

import math

import pytest
import torch
from vist3a_synth.cameras import intrinsics, scene_cameras
from vist3a_synth.world import Scene, SceneObject, Trajectory

SIZE = (48, 64)
OBJECTS = (SceneObject("cube", "red", "medium", (0.5, -0.2)), SceneObject("sphere", "blue", "small", (-0.4, 0.6)))


def _cameras(kind, views=9):
    scene = Scene(OBJECTS, Trajectory(kind, 0.3, math.radians(25), 4.0, 0.9))
    return scene, *scene_cameras(scene, views, SIZE)


def test_intrinsics():
    k = intrinsics(SIZE, 2)
    assert k.shape == (2, 3, 3)
    assert torch.equal(k[1], torch.tensor([[64.0, 0.0, 32.0], [0.0, 64.0, 24.0], [0.0, 0.0, 1.0]]))


@pytest.mark.parametrize("kind", ["orbit", "arc", "dolly"])
def test_extrinsics_are_rigid_upright_and_aim_at_the_centre(kind):
    scene, k, e = _cameras(kind)
    assert e.shape == (9, 4, 4) and k.shape == (9, 3, 3)
    r = e[:, :3, :3]
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3).expand(9, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(r), torch.ones(9), atol=1e-6)
    assert torch.equal(e[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(9, 4))
    up = r @ torch.tensor([0.0, 0.0, 1.0])  # world up in camera coordinates: no roll, and up is image up (-y)
    assert torch.allclose(up[:, 0], torch.zeros(9), atol=1e-6) and (up[:, 1] < 0).all()
    centre = torch.tensor([*scene.centre, 1.0])
    cam = (e @ centre)[:, :3]
    pixels = (k @ cam[..., None])[..., 0]
    assert (cam[:, 2] > 0).all()
    assert torch.allclose(pixels[:, :2] / pixels[:, 2:], torch.tensor([32.0, 24.0]).expand(9, 2), atol=1e-4)


def _centres(e):
    return torch.linalg.inv(e)[:, :3, 3]


def test_paths_move_smoothly_as_named():
    scene, _, orbit = _cameras("orbit")
    target = torch.tensor(scene.centre)
    distance = (_centres(orbit) - target).norm(dim=-1)
    assert torch.allclose(distance, torch.full((9,), 4.0), atol=1e-5)
    steps = (_centres(orbit)[1:] - _centres(orbit)[:-1]).norm(dim=-1)
    assert torch.allclose(steps, steps.mean().expand(8), rtol=1e-4)  # a constant angular speed
    assert steps.mean() == pytest.approx(2 * 4.0 * math.cos(math.radians(25)) * math.sin(0.9 / 8 / 2), rel=1e-4)
    _, _, dolly = _cameras("dolly")
    assert ((dolly_distance := (_centres(dolly) - target).norm(dim=-1))[1:] < dolly_distance[:-1]).all()
    _, _, arc = _cameras("arc")
    height = _centres(arc)[:, 2]
    assert (height[1:] > height[:-1]).all()


def test_one_view_is_the_first_view():
    _, k, e = _cameras("arc", views=1)
    assert torch.allclose(e[0], _cameras("arc")[2][0]) and k.shape == (1, 3, 3)
