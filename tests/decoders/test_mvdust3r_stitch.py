"""MV-DUSt3R through the stitching engine (protocol only), cameras from point maps and the Gaussian refinement."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch
import yaml

import vist3a
from tests.decoders.reference import REFERENCE, TOL, max_error
from vist3a.cli import main
from vist3a.errors import InputError
from vist3a.registry import Registry
from vist3a.scene import Cameras, Gaussians
from vist3a.stitch.adapter import AdapterConfig
from vist3a.stitch.spec import StitchSpec
from vist3a.stitch.stitched import LoraSettings, StitchedConfig, StitchedDecoder

TINY = REFERENCE / "mvdust3r-tiny-a"
GENERATORS = ("vist3a_wan", "vist3a_cogvideox", "vist3a_hunyuanvideo")


@pytest.fixture
def tiny(entry_point_plugins):
    entry_point_plugins("vist3a_mvdust3r")
    return vist3a.load_decoder("mvdust3r", str(TINY))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Three views (n_ref of the reference model) at 16x24, the smallest inputs that keep every path."""
    return torch.rand(1, 3, 3, 16, 24, generator=torch.Generator().manual_seed(0))


def test_pair_wan_mvdust3r_offline_derives_the_papers_adapter(entry_point_plugins, tmp_path, capsys):
    entry_point_plugins("vist3a_wan", "vist3a_mvdust3r")
    assert main(["pair", "wan", "mvdust3r", "--out", str(tmp_path)]) == 0, capsys.readouterr().err
    workspace = yaml.safe_load((tmp_path / "pair.yaml").read_text())
    assert workspace["pairing"] == "wan2.1-t2v-1.3b+mvdust3r" and workspace["decoder"]["id"] == "mvdust3r"
    points = {p["name"]: p for p in workspace["stitch_points"]}
    assert list(points) == [f"enc_blocks_{k}" for k in range(1, 25)]
    assert {p["spec"] for p in points.values()} == {"conv3d_k5x7x7_o1024_s1x3x3_p2x0x0"}  # the paper's spec at 384 px
    assert points["enc_blocks_1"]["grid"] == [14, 14] and points["enc_blocks_1"]["prefix_tokens"] == 0


def test_every_mvdust3r_pairing_derives_its_adapter_offline(entry_point_plugins, tmp_path, capsys):
    entry_point_plugins(*GENERATORS, "vist3a_mvdust3r")
    registry = Registry.load()
    pairings = {i: p for i, p in registry.pairings.items() if p.decoder == "mvdust3r"}
    released = {i for i, e in registry.entries["generators"].items() if e.plugin in GENERATORS}  # not the synthetic world's
    assert {p.generator for p in pairings.values()} == released
    for pairing, entry in pairings.items():
        out = tmp_path / pairing
        assert main(["pair", entry.generator, "mvdust3r", "--out", str(out)]) == 0, (pairing, capsys.readouterr().err)
        workspace = yaml.safe_load((out / "pair.yaml").read_text())
        factor = vist3a.load_generator(entry.generator, device="meta").latent.spatial_factor
        latent = (workspace["frames"], *(n // factor for n in workspace["generator_resolution"]))
        for point in workspace["stitch_points"]:
            assert StitchSpec.parse(point["spec"]).output_size(latent) == (workspace["frames"], 14, 14), (pairing, point)


def _identity_stitch(decoder, point: str) -> StitchedDecoder:
    """A stitched decoder whose adapter passes tokens through unchanged (1x1x1 identity conv, no temporal change)."""
    dim = decoder.arch.args.enc_embed_dim
    config = StitchedConfig(
        decoder="mvdust3r", stitch_point=point, decoder_resolution=(16, 24), lora=LoraSettings(rank=2, alpha=4),
        adapter=AdapterConfig(spec=f"conv3d_k1x1x1_o{dim}_s1x1x1_p0x0x0", in_channels=dim, temporal_factor=1),
    )  # fmt: skip
    stitched = StitchedDecoder(config, decoder)
    with torch.no_grad():
        stitched.adapter.conv.weight.copy_(torch.eye(dim).view(dim, dim, 1, 1, 1))
        stitched.adapter.conv.bias.zero_()
    return stitched


def test_stitched_forward_with_the_true_tokens_equals_the_original(tiny, images):
    with torch.no_grad():
        teacher = tiny(images)
        tokens = tiny.forward_features(images, ["enc_blocks_1"])["enc_blocks_1"]
    stitched = _identity_stitch(tiny, "enc_blocks_1").eval()
    assert stitched.full_parameters == [] and any("lora_" in n for n, _ in tiny.named_parameters())
    with torch.no_grad():
        student = stitched(tokens, images.transpose(1, 2) * 2 - 1)  # frames [B,3,T,H,W] in [-1,1], as the pipeline passes
    errors = {k: max_error(student.heads[k], v) for k, v in teacher.heads.items()}
    assert max(errors.values()) <= TOL, errors
    with pytest.raises(ValueError, match="reads RGB frames after the stitch point"):
        stitched(tokens)


def test_distillation_trains_lora_and_keeps_batchnorm_statistics(tiny, images):
    with torch.no_grad():
        teacher = tiny(images)
        tokens = tiny.forward_features(images, ["enc_blocks_2"])["enc_blocks_2"]
    stitched = _identity_stitch(tiny, "enc_blocks_2").train()
    running = tiny.model.downstream_head1.skip_proj[0].norm.running_mean.clone()
    student = stitched(tokens + 0.1, images.transpose(1, 2) * 2 - 1)
    loss = sum(tiny.distill_loss(student, teacher).values())
    loss.backward()
    grads = {n for n, p in stitched.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert "adapter.conv.weight" in grads and any(".lora_A." in n or ".lora_B." in n for n in grads)
    assert torch.equal(tiny.model.downstream_head1.skip_proj[0].norm.running_mean, running)


def test_gradient_checkpointing_gives_the_same_gradients(tiny, images):
    def gradients():
        tiny.zero_grad()
        decoded = tiny.forward(images)
        (decoded.points.points.square().mean() + decoded.gaussians.scales.mean()).backward()
        return {n: p.grad.clone() for n, p in tiny.named_parameters() if p.grad is not None}

    plain = gradients()
    tiny.set_gradient_checkpointing(True)
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys() and len(plain) > 50
    for name, grad in plain.items():
        assert torch.allclose(grad, checkpointed[name], atol=1e-6), name


def _planted_camera(height: int = 24, width: int = 32, focal: float = 30.0):
    """A random depth map seen by a known camera: its points in camera and in world coordinates, K and the pose."""
    from vist3a_mvdust3r.geometry import intrinsics_matrix, pixel_grid

    generator = torch.Generator().manual_seed(1)
    depth = 2 + torch.rand(1, height, width, generator=generator)
    camera = torch.cat(((pixel_grid(height, width, depth) - torch.tensor([width / 2, height / 2])) / focal * depth[..., None],
                        depth[..., None]), -1)  # fmt: skip
    a = 0.4
    rotation = torch.tensor([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])
    translation = torch.tensor([0.3, -0.2, 0.1])
    world = (camera - translation) @ rotation  # x_world = R^T (x_cam - t)
    return camera, world, intrinsics_matrix(torch.tensor([focal]), (height, width)), rotation, translation


def test_focal_and_pose_are_recovered_from_planted_point_maps():
    from vist3a_mvdust3r.decoder import cameras_from_points
    from vist3a_mvdust3r.geometry import estimate_focal, solve_pose

    camera, world, k, rotation, translation = _planted_camera()
    weights = torch.ones(camera.shape[:3])
    assert abs(estimate_focal(camera, weights).item() - 30.0) < 1e-3
    pose = solve_pose(world, k, weights)[0]
    assert max_error(pose[:3, :3], rotation) < 1e-4 and max_error(pose[:3, 3], translation) < 1e-4
    conf = torch.full((1, 2, *camera.shape[1:3]), math.e**2)
    cameras = cameras_from_points(torch.stack((camera, world), 1), conf)
    assert max_error(cameras.extrinsics[0, 1, :3, :3], rotation) < 1e-4 and abs(cameras.intrinsics[0, 1, 0, 0].item() - 30.0) < 1e-3


def _scene(scale: float) -> tuple[Gaussians, Cameras]:
    """Two views of 8x8 pixels, one Gaussian per pixel of view 0 at depth 2, isotropic ``scale``."""
    from vist3a_mvdust3r.geometry import intrinsics_matrix, pixel_grid

    k = intrinsics_matrix(torch.tensor([8.0]), (8, 8))
    depth = torch.full((1, 8, 8), 2.0)
    means = torch.cat(((pixel_grid(8, 8, depth) - 4) / 8 * depth[..., None], depth[..., None]), -1).reshape(1, 64, 3)
    colours = torch.rand(1, 64, 1, 3, generator=torch.Generator().manual_seed(2)) - 0.5
    gaussians = Gaussians(means, torch.full((1, 64, 3), scale), torch.tensor([1.0, 0, 0, 0]).expand(1, 64, 4),
                          torch.full((1, 64), 0.8), colours)  # fmt: skip
    shifted = torch.eye(4).repeat(1, 2, 1, 1)
    shifted[0, 1, 0, 3] = 0.05
    return gaussians, Cameras(shifted, k[:, None].expand(1, 2, 3, 3), (8, 8))


def test_refinement_with_mse_only_fits_the_source_views():
    from vist3a_mvdust3r.refine import BACKGROUND, refine_gaussians

    from vist3a.render import render

    truth, cameras = _scene(0.12)
    images = render(truth, cameras, mode="RGB", background=torch.full((3,), BACKGROUND), backend="torch").rgb.permute(0, 1, 4, 2, 3)
    start = _scene(0.04)[0]

    def error(g: Gaussians) -> float:
        with torch.no_grad():
            rgb = render(g, cameras, mode="RGB", background=torch.full((3,), BACKGROUND), backend="torch").rgb
        return torch.nn.functional.mse_loss(rgb.permute(0, 1, 4, 2, 3), images).item()

    rates = {"means": 0.0, "opacities": 0.0, "scales": 5e-3, "quats": 0.0, "sh": 0.0}
    refined = refine_gaussians(start, cameras, images, steps=15, lpips_weight=0.0, learning_rates=rates, backend="torch")
    assert error(refined) < 0.5 * error(start)
    assert refined.scales.mean() > start.scales.mean() and torch.equal(start.scales, _scene(0.04)[0].scales)
    assert torch.equal(refined.sh, start.sh) and torch.equal(refined.means, start.means)


def test_decoder_refine_keeps_everything_but_the_gaussians(tiny, images):
    with torch.no_grad():
        decoded = tiny(images)
    rates = {"means": 2e-4, "opacities": 5e-4, "scales": 5e-4, "quats": 1e-4, "sh": 0.0}
    refined = tiny.refine(decoded, images, steps=1, lpips_weight=0.0, learning_rates=rates, backend="torch")
    assert refined.points is decoded.points and refined.cameras is decoded.cameras
    assert not torch.equal(refined.gaussians.scales, decoded.gaussians.scales)
    assert ((refined.gaussians.opacities >= 0) & (refined.gaussians.opacities <= 1)).all()
    with pytest.raises(InputError, match="learning_rates: expected the keys"):
        tiny.refine(decoded, images, steps=1, lpips_weight=0.0, learning_rates={"scales": 1.0})


@pytest.mark.skipif(importlib.util.find_spec("lpips") is not None, reason="lpips is installed here")
def test_refinement_with_lpips_says_how_to_install_it(tiny, images):
    with torch.no_grad():
        decoded = tiny(images)
    with pytest.raises(InputError, match=r"lpips_weight > 0 needs LPIPS; install it with: pip install lpips \(or pass lpips_weight=0\)"):
        tiny.refine(decoded, images)


@pytest.mark.slow
def test_pair_sweep_and_distil_the_tiny_reference(entry_point_plugins, tmp_path, capsys):
    import vist3a_wan

    from vist3a.stitch import jobs

    entry_point_plugins("vist3a_wan", "vist3a_mvdust3r", "vist3a_synth")  # synth: the synthetic:N clips
    vist3a_wan.tiny_pipeline(seed=0).save_pretrained(tmp_path / "tiny-wan")
    ws = tmp_path / "ws"
    argv = ["pair", f"wan:{tmp_path / 'tiny-wan'}", f"mvdust3r:{TINY}", "--resolution", "32x48", "--decoder-resolution",
            "32x48", "--frames", "5", "--out", str(ws)]  # fmt: skip
    assert main(argv) == 0
    assert main(["sweep-layers", "--pair", str(ws), "--data", "synthetic:5", "--clips", "5"]) == 0
    report = json.loads((ws / "sweep.json").read_text())
    assert [layer["name"] for layer in report["layers"]] == ["enc_blocks_1", "enc_blocks_2"]

    def stitch(steps: int) -> float:
        argv = ["stitch", "--pair", str(ws), "--data", "synthetic:3", "--steps", str(steps), "--lr", "1e-4", "--warmup", "0",
                "--lora-rank", "4", "--gradient-checkpointing", "--overwrite"]  # fmt: skip
        assert main(argv) == 0
        return sum(jobs.evaluate(ws, "synthetic:3", 3).values())

    closed_form_only = stitch(0)
    assert stitch(20) < closed_form_only
    capsys.readouterr()
