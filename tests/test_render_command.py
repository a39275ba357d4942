"""`vist3a render`: orbit and camera-path videos of a 3DGS .ply, and its bad-input paths."""

import torch
from PIL import Image

from vist3a.cli import main
from vist3a.io.export import write_cameras_json, write_gaussians_ply
from vist3a.render.paths import orbit_cameras
from vist3a.scene import Gaussians


def write_scene(tmp_path):
    """A small random 3DGS scene written to tmp_path/scene.ply: (path, Gaussians)."""
    g = torch.Generator().manual_seed(0)
    n = 30
    quats = torch.tensor([1.0, 0, 0, 0]).repeat(1, n, 1)
    gaussians = Gaussians(torch.randn(1, n, 3, generator=g) * 0.3, torch.full((1, n, 3), 0.1), quats,
                          torch.full((1, n), 0.8), torch.randn(1, n, 1, 3, generator=g))  # fmt: skip
    return write_gaussians_ply(tmp_path / "scene.ply", gaussians), gaussians


def test_orbit_cameras_circle_the_scene_and_face_it():
    gaussians = Gaussians(torch.tensor([[[1.0, 2.0, 3.0]]]), torch.ones(1, 1, 3), torch.tensor([[[1.0, 0, 0, 0]]]),
                          torch.ones(1, 1), torch.zeros(1, 1, 1, 3))  # fmt: skip
    cameras = orbit_cameras(gaussians, 8, (32, 48))
    centre = torch.tensor([1.0, 2.0, 3.0])
    in_camera = cameras.extrinsics[0, :, :3, :3] @ centre + cameras.extrinsics[0, :, :3, 3]
    assert torch.allclose(in_camera[:, :2], torch.zeros(8, 2), atol=1e-5) and (in_camera[:, 2] > 0).all()  # straight ahead
    distances = (cameras.centers[0] - centre).norm(dim=-1)
    assert torch.allclose(distances, distances[0].expand(8), atol=1e-4)
    assert (cameras.centers[0, :, 1] < centre[1]).all()  # above the scene: world up is -y
    assert cameras.intrinsics[0, 0, 0, 2] == 24 and cameras.image_size == (32, 48)


def test_render_orbit_and_camera_path(tmp_path, capsys):
    scene, gaussians = write_scene(tmp_path)
    assert main(["render", str(scene), "--out", str(tmp_path / "orbit.gif"), "--frames", "3", "--size", "24"]) == 0
    with Image.open(tmp_path / "orbit.gif") as image:
        assert image.n_frames == 3 and image.size == (24, 24)
    cameras = write_cameras_json(tmp_path / "cameras.json", orbit_cameras(gaussians, 2, (16, 20)))
    argv = ["render", str(scene), "--cameras", str(cameras), "--out", str(tmp_path / "path.gif")]
    assert main(argv) == 0
    with Image.open(tmp_path / "path.gif") as image:
        assert image.n_frames == 2 and image.size == (20, 16)
    assert "Wrote" in capsys.readouterr().out


def test_render_bad_input(tmp_path, capsys):
    scene, _ = write_scene(tmp_path)
    (tmp_path / "taken.gif").write_bytes(b"mine")
    assert main(["render", str(scene), "--out", str(tmp_path / "taken.gif")]) == 2
    assert (tmp_path / "taken.gif").read_bytes() == b"mine"
    assert main(["render", str(tmp_path / "none.ply"), "--out", str(tmp_path / "x.gif")]) == 2
    assert main(["render", str(scene), "--out", str(tmp_path / "x.gif"), "--backend", "vulkan"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"Error: {tmp_path / 'taken.gif'} already exists; pass --overwrite to replace it",
        f"Error: {tmp_path / 'none.ply'}: no such file",
        "Error: --backend must be auto, torch or gsplat, got 'vulkan'",
    ]
