"""The ray caster against analytic geometry: depths of hand-placed shapes, and unprojected depth on every surface."""

import math

import pytest
import torch
from vist3a_synth.cameras import scene_cameras
from vist3a_synth.raycast import raycast
from vist3a_synth.world import SceneObject, sample_scene

from vist3a.errors import ShapeError

SIZE = (33, 33)  # odd, so the centre pixel's ray is the optical axis
K = torch.tensor([[[30.0, 0.0, 16.5], [0.0, 30.0, 16.5], [0.0, 0.0, 1.0]]])
CENTRE = (16, 16)


def _camera(eye, right, down, forward):
    """World-to-camera [1,4,4] from a camera centre and its axes in world coordinates (written out, not look_at)."""
    rotation = torch.tensor([right, down, forward], dtype=torch.float32)
    extrinsics = torch.eye(4)
    extrinsics[:3, :3] = rotation
    extrinsics[:3, 3] = -rotation @ torch.tensor(eye, dtype=torch.float32)
    return extrinsics[None]


def _front(d, height):
    """A camera at distance d on the -y side, at ``height``, looking along +y (world z up)."""
    return _camera((0.0, -d, height), (1, 0, 0), (0, 0, -1), (0, 1, 0))


def _top(height):
    """A camera straight above the origin looking down; image right = world +x, image down = world -y."""
    return _camera((0.0, 0.0, height), (1, 0, 0), (0, -1, 0), (0, 0, -1))


@pytest.mark.parametrize(
    ("shape", "yaw", "expected"),
    [
        ("sphere", 0.0, 3.0 - 0.45),  # the nearest point of the sphere ("large": half-extent 0.45)
        ("cube", 0.0, 3.0 - 0.45),  # the front face y = -s
        ("cube", math.pi / 4, 3.0 - 0.45 * math.sqrt(2)),  # an edge, half a diagonal nearer
        ("cylinder", 0.0, 3.0 - 0.45),
        ("cone", 0.0, 3.0 - 0.45 / 2),  # at mid-height the cone's radius is half the base radius
    ],
)
def test_centre_depth_seen_from_the_front_at_mid_height(shape, yaw, expected):
    render = raycast([SceneObject(shape, "red", "large", (0.0, 0.0), yaw)], K, _front(3.0, height=0.45), SIZE)
    assert render.ids[0][CENTRE] == 1
    assert render.depth[0][CENTRE].item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("shape", ["sphere", "cube", "cylinder", "cone"])
def test_centre_depth_seen_from_above(shape):
    render = raycast([SceneObject(shape, "blue", "medium", (0.0, 0.0), 0.3)], K, _top(2.5), SIZE)
    assert render.depth[0][CENTRE].item() == pytest.approx(2.5 - 2 * 0.35, abs=1e-5)  # every shape is 2s tall
    assert render.ids[0][CENTRE] == 1


def test_sphere_silhouette_along_the_centre_row():
    """Pixel j sees the sphere iff its ray passes within s of the centre: d * sin(angle off axis) < s."""
    d, s = 3.0, 0.45
    render = raycast([SceneObject("sphere", "red", "large", (0.0, 0.0))], K, _front(d, height=s), SIZE)
    for j in range(SIZE[1]):
        angle = math.atan((j + 0.5 - 16.5) / 30.0)
        miss = d * math.sin(abs(angle)) - s
        if abs(miss) > 1e-3:
            assert (render.ids[0, 16, j] == 1) == (miss < 0), j


def test_ground_and_sky():
    """A camera 2 up, pitched 45 degrees down: the axis meets the ground 2*sqrt(2) away; rays above the horizon see sky."""
    c = math.sqrt(0.5)
    render = raycast([], K, _camera((0.0, 0.0, 2.0), (1, 0, 0), (0, c, -c), (0, c, -c)), SIZE)
    assert render.depth[0][CENTRE].item() == pytest.approx(2 * math.sqrt(2), rel=1e-5)
    assert render.valid.all()  # half the vertical field of view, atan(16.5 / 30), is under 45 degrees: all ground and (render.ids == 0).all()
    up = raycast([], K, _camera((0.0, 0.0, 2.0), (1, 0, 0), (0, 0, -1), (0, 1, 0)), SIZE)  # looking at the horizon
    assert (up.depth[0, :16] == 0).all() and (up.depth[0, 17:] > 0).all()
    assert torch.allclose(up.rgb[0, :, 0, 0], torch.tensor([0.62, 0.76, 0.93]))


def _implicit(obj: SceneObject, p: torch.Tensor) -> torch.Tensor:
    """A function that is 0 exactly on the object's surface, in world units (the object's own definition)."""
    c, s = math.cos(obj.yaw), math.sin(obj.yaw)
    x0, y0 = p[:, 0] - obj.position[0], p[:, 1] - obj.position[1]
    x, y, z = c * x0 + s * y0, -s * x0 + c * y0, p[:, 2]
    e = obj.extent
    radial = (x * x + y * y).sqrt()
    if obj.shape == "sphere":
        return (x * x + y * y + (z - e) ** 2).sqrt() - e
    if obj.shape == "cube":
        return torch.stack([x.abs() - e, y.abs() - e, (z - e).abs() - e]).amax(0)
    if obj.shape == "cylinder":
        return torch.stack([radial - e, (z - e).abs() - e]).amax(0)
    return torch.stack([(radial - (2 * e - z) / 2) / math.sqrt(1.25), -z, z - 2 * e]).amax(0)  # cone, apex up


@pytest.mark.parametrize("split", ["train", "test"])
def test_unprojected_depth_lies_on_the_surfaces(split):
    """points_world = inv(E) @ (depth * K^-1 [u, v, 1]) must lie on the object each pixel's id names, or on z = 0."""
    size = (48, 64)
    for seed in range(6):
        scene = sample_scene(seed, split)
        intrinsics, extrinsics = scene_cameras(scene, 3, size)
        render = raycast(scene.objects, intrinsics, extrinsics, size)
        ys, xs = torch.meshgrid(torch.arange(size[0]) + 0.5, torch.arange(size[1]) + 0.5, indexing="ij")
        pixels = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).double()  # [H,W,3]
        for v in range(3):
            cam = render.depth[v, ..., None].double() * (pixels @ torch.linalg.inv(intrinsics[v].double()).T)
            world = (torch.cat([cam, torch.ones_like(cam[..., :1])], -1) @ torch.linalg.inv(extrinsics[v].double()).T)[..., :3]
            ground = render.valid[v] & (render.ids[v] == 0)
            assert ground.any()
            assert (world[ground][:, 2].abs() <= 1e-5 * render.depth[v][ground]).all()
            for k, obj in enumerate(scene.objects, start=1):
                on = render.ids[v] == k
                assert (_implicit(obj, world[on]).abs() < 1e-5).all(), (seed, v, obj)


def test_shapes_are_checked():
    with pytest.raises(ShapeError, match=r"got \[3, 3\] and \[1, 4, 4\]"):
        raycast([], K[0], _top(2.0), SIZE)
