"""Exporters: 3DGS and point-cloud PLY (checked through plyfile), nerfstudio cameras, depth."""

import json

import numpy as np
import pytest
import torch
from plyfile import PlyData

from vist3a.errors import InputError
from vist3a.io.export import (
    read_cameras_json,
    read_gaussians_ply,
    read_point_cloud,
    write_cameras_json,
    write_gaussians_ply,
    write_point_cloud,
)
from vist3a.scene import Cameras, Gaussians


def _gaussians(n=5, degree=2):
    g = torch.Generator().manual_seed(0)
    quats = torch.nn.functional.normalize(torch.randn(1, n, 4, generator=g), dim=-1)
    return Gaussians(torch.randn(1, n, 3, generator=g), torch.rand(1, n, 3, generator=g) + 0.01, quats,
                     torch.rand(1, n, generator=g) * 0.98 + 0.01, torch.randn(1, n, (degree + 1) ** 2, 3, generator=g))  # fmt: skip


def test_gaussian_ply_has_the_standard_3dgs_layout(tmp_path):
    gaussians = _gaussians()
    path = write_gaussians_ply(tmp_path / "scene.ply", gaussians)
    vertex = PlyData.read(str(path))["vertex"]
    names = [p.name for p in vertex.properties]
    rest = [f"f_rest_{i}" for i in range(3 * 8)]
    assert names == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", *rest, "opacity",
                     "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]  # fmt: skip
    sh = gaussians.sh[0]
    assert np.allclose(vertex["f_rest_0"], sh[:, 1, 0]) and np.allclose(vertex["f_rest_8"], sh[:, 1, 1])  # channel-major
    assert np.allclose(vertex["opacity"], torch.logit(gaussians.opacities[0]), atol=1e-5)
    assert np.allclose(vertex["scale_1"], gaussians.scales[0, :, 1].log(), atol=1e-6)
    assert np.allclose(vertex["rot_0"], gaussians.quats[0, :, 0])  # w first


def test_gaussian_ply_round_trip(tmp_path):
    gaussians = _gaussians(degree=4)
    loaded = read_gaussians_ply(write_gaussians_ply(tmp_path / "scene.ply", gaussians))
    for name, tensor in gaussians.tensors():
        assert torch.allclose(getattr(loaded, name), tensor, atol=1e-5), name


def test_point_cloud_round_trip(tmp_path):
    points, colours = torch.randn(7, 3), torch.rand(7, 3)
    xyz, rgb = read_point_cloud(write_point_cloud(tmp_path / "points.ply", points, colours))
    assert np.allclose(xyz, points.numpy()) and np.array_equal(rgb, (colours * 255).round().byte().numpy())


def _camera_at(centre, image_size=(40, 60)):
    """An OpenCV camera at ``centre`` looking along world +z (identity rotation)."""
    extrinsics = torch.eye(4)
    extrinsics[:3, 3] = -torch.tensor(centre)
    intrinsics = torch.tensor([[50.0, 0, 30], [0, 55.0, 20], [0, 0, 1]])
    return Cameras(extrinsics[None, None], intrinsics[None, None], image_size)


def test_cameras_json_follows_nerfstudio(tmp_path):
    path = write_cameras_json(tmp_path / "cameras.json", _camera_at([1.0, 2.0, 3.0]), file_paths=["frames/0.png"])
    frame = json.loads(path.read_text())["frames"][0]
    c2w = np.array(frame["transform_matrix"])
    assert np.allclose(c2w[:3, 3], [1, 2, 3])  # the camera centre
    assert np.allclose(c2w[:3, 2], [0, 0, -1])  # OpenGL z points backwards: the camera looks along +z
    assert np.allclose(c2w[:3, 1], [0, -1, 0])  # OpenGL y is up = OpenCV -y
    assert (frame["fl_x"], frame["cx"], frame["w"], frame["h"], frame["file_path"]) == (50.0, 30.0, 60, 40, "frames/0.png")
    loaded = read_cameras_json(path)
    original = _camera_at([1.0, 2.0, 3.0])
    assert torch.allclose(loaded.extrinsics, original.extrinsics, atol=1e-6)
    assert torch.allclose(loaded.intrinsics, original.intrinsics) and loaded.image_size == (40, 60)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), ("{}", "not a transforms.json"), ('{"frames": [{"transform_matrix": [[1]]}]}', "not a transforms.json")],
)
def test_bad_cameras_json(tmp_path, content, message):
    path = tmp_path / "cameras.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_cameras_json(path)


def test_bad_ply_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_gaussians_ply(tmp_path / "none.ply")
    (tmp_path / "junk.ply").write_text("not a ply")
    with pytest.raises(InputError, match="not a readable PLY file"):
        read_gaussians_ply(tmp_path / "junk.ply")
    write_point_cloud(tmp_path / "points.ply", torch.zeros(2, 3))
    with pytest.raises(InputError, match="PLY vertices lack f_dc_0"):
        read_gaussians_ply(tmp_path / "points.ply")
