"""The AnySplat plugin against the upstream reference data (../shared/reference): outputs, names and shapes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.decoders.reference import REFERENCE, TOL, config_variant, loader, max_error, tensors
from vist3a.errors import CheckpointError, ConfigError, InputError, ShapeError
from vist3a.protocols import Decoder3D, StitchPoint

TINY = REFERENCE / "anysplat-tiny-a"
MANIFEST = REFERENCE / "manifests/anysplat.json"
COVARIANCE_RTOL = 1e-4


@pytest.fixture
def load(entry_point_plugins):
    return loader(entry_point_plugins, "anysplat")


@pytest.fixture(scope="module")
def reference() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return tensors(TINY)


@pytest.fixture
def tiny(load):
    return load(TINY)


def _official(out: dict) -> dict[str, torch.Tensor]:
    """``reconstruct``'s nested dict under the fixture's flat names."""
    flat = {f"gaussians.{k}": v for k, v in out["gaussians"].items()}
    flat |= {f"pred_context_pose.{k}": v for k, v in out["pred_context_pose"].items()}
    flat |= {f"pred_pose_enc_list.{i}": v for i, v in enumerate(out["pred_pose_enc_list"])}
    flat |= {"depth_dict.depth": out["depth"], "depth_head.depth_conf": out["depth_conf"], "infos.scene_scale": out["scene_scale"].reshape(1)}
    return flat


def test_every_reference_output_matches(tiny, reference):
    inputs, expected = reference
    assert isinstance(tiny, Decoder3D) and tiny.needs_rgb
    images = inputs["images"]
    ours = _official(tiny.reconstruct(images))
    with torch.no_grad():
        model = tiny.model
        dino = model.aggregator.patch_embed
        normed = dino.norm(dino.run(model.aggregator.embed(images)))
        layers = model.aggregate(images)
    ours |= {f"aggregator.tokens.{i}": layers[layer] for i, layer in enumerate(tiny.config.compact_layers())}
    ours |= {
        "aggregator.patch_embed.x_norm_clstoken": normed[:, 0],
        "aggregator.patch_embed.x_norm_regtokens": normed[:, 1 : dino.num_prefix],
        "aggregator.patch_embed.x_norm_patchtokens": normed[:, dino.num_prefix :],
        "depth_dict.conf_valid_mask": torch.ones_like(expected["depth_dict.conf_valid_mask"]),  # render_conf=False
    }
    assert set(ours) == set(expected)
    errors = {key: max_error(ours[key], value) for key, value in expected.items()}
    assert max(errors.values()) <= TOL, {k: e for k, e in errors.items() if e > TOL}
    covariances = expected["gaussians.covariances"]
    assert torch.allclose(ours["gaussians.covariances"], covariances, rtol=COVARIANCE_RTOL, atol=1e-6 * covariances.abs().max().item())


def test_decoded3d_uses_vist3a_conventions(tiny, reference):
    images, expected = reference[0]["images"], reference[1]
    with torch.no_grad():
        decoded = tiny(images)
    g = decoded.gaussians
    # up to float error, which varies with the thread count; a wrong axis order would be off by O(1)
    assert max_error(g.quats, expected["gaussians.rotations"][..., [3, 0, 1, 2]]) <= TOL  # xyzw -> wxyz
    assert max_error(g.sh, expected["gaussians.harmonics"].transpose(-1, -2)) <= TOL  # [B,N,3,25] -> [B,N,25,3]
    assert g.sh_degree == 4 and max_error(g.scales, expected["gaussians.scales"]) <= TOL
    assert max_error(g.means, expected["gaussians.means"]) <= TOL
    cams = decoded.cameras
    assert max_error(cams.camera_to_world, expected["pred_context_pose.extrinsic"]) <= 1e-4
    assert max_error(cams.intrinsics / torch.tensor([56.0, 42.0, 1.0])[:, None], expected["pred_context_pose.intrinsic"]) <= TOL
    assert cams.image_size == (42, 56)
    assert max_error(decoded.points.depth, expected["depth_dict.depth"][..., 0]) <= TOL
    assert max_error(decoded.points.points.flatten(1, 3), expected["gaussians.means"]) <= TOL


def test_state_dict_matches_the_official_manifest_on_meta(load):
    manifest = json.loads(MANIFEST.read_text())
    decoder = load("lhjiang/anysplat", device="meta")  # not cached: the released architecture, nothing read
    from vist3a_anysplat.model import AnySplat

    state = AnySplat(decoder.model).state_dict()
    assert {name: list(t.shape) for name, t in state.items()} == {e["name"]: e["shape"] for e in manifest["state_dict"]}
    assert sum(t.numel() for t in state.values()) == manifest["num_parameters_total"]
    assert all(p.is_meta for p in decoder.parameters())
    assert decoder.voxelize and [p.name for p in decoder.stitch_points((448, 448))][-1] == "agg_blocks_4"


def test_hub_format_config_builds_the_released_architecture(load, tmp_path):
    cfg = json.loads(MANIFEST.read_text())["constructor_config"]
    (tmp_path / "config.json").write_text(json.dumps({"encoder_cfg": cfg["encoder_cfg"], "decoder_cfg": cfg["decoder_cfg"]}))
    (tmp_path / "model.safetensors").write_bytes(b"not read on meta")
    decoder = load(tmp_path, device="meta")
    assert decoder.config.gaussian_param_head.output_dim == 84 and decoder.arch.aggregator.depth == 24
    assert decoder.model.depth_head.cfg.intermediate_layer_idx == [4, 11, 17, 23]


def test_forward_from_every_stitch_point_equals_forward(tiny, reference):
    images = reference[0]["images"]
    points = tiny.stitch_points((42, 56))
    assert [p.name for p in points] == ["enc_blocks_1", "enc_blocks_2", "agg_blocks_1"]
    assert points[0] == StitchPoint("enc_blocks_1", (3, 4), 64, 5, 1)
    with torch.no_grad():
        full = tiny(images)
        features, prefix = tiny.forward_features_with_prefix(images, [p.name for p in points])
        for point in points:
            resumed = tiny.forward_from(point.name, features[point.name], {"prefix": prefix[point.name], "frames": images})
            errors = {k: max_error(resumed.heads[k], v) for k, v in full.heads.items()}
            assert max(errors.values()) <= TOL, (point.name, errors)


def test_forward_from_needs_matching_frames(tiny, reference):
    images = reference[0]["images"]
    with torch.no_grad():
        tokens = tiny.forward_features(images, ["enc_blocks_2"])["enc_blocks_2"]
        with pytest.raises(InputError, match=r"needs aux\['frames'\]"):
            tiny.forward_from("enc_blocks_2", tokens)
        with pytest.raises(ShapeError, match=r"aux\['frames'\]: expected \[1,3,3,42,56\]"):
            tiny.forward_from("enc_blocks_2", tokens, {"frames": images[..., :28, :]})
        learned = tiny.forward_from("enc_blocks_2", tokens, {"frames": images})  # learned cls/registers inserted
    assert learned.gaussians.means.shape == (1, 3 * 42 * 56, 3)


def test_voxelisation_fuses_a_planted_scene():
    from vist3a_anysplat.gaussians import PAD_FEATURE, PAD_POINT, voxelize, voxelize_batch

    size = 0.5
    points = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, -0.2, 0.1], [2.0, 2.0, 2.0], [-1.0, 0.0, 0.0]])
    features = torch.tensor([[1.0, 10.0], [3.0, 20.0], [5.0, 30.0], [7.0, 40.0], [9.0, 50.0]])
    conf = torch.tensor([0.0, 1.0, 2.0, 5.0, -3.0])
    fused_points, fused_features = voxelize(points, features, conf, size)
    w = torch.softmax(conf[:3], 0)  # points 0-2 share voxel (0, 0, 0); 3 and 4 are alone
    w = w / (1 + 1e-6)
    assert fused_points.shape == (3, 3)  # voxels in ascending key order: (-2,0,0), (0,0,0), (4,4,4)
    assert torch.allclose(fused_points[1], (w[:, None] * points[:3]).sum(0), atol=1e-6)
    assert torch.allclose(fused_features[1], (w[:, None] * features[:3]).sum(0), atol=1e-5)
    assert torch.allclose(fused_points[[0, 2]], points[[4, 3]] / (1 + 1e-6))
    batch_points, batch_features = voxelize_batch(torch.stack((points, points[[0] * 5])), torch.stack((features, features)),
                                                  torch.stack((conf, conf)), size)  # fmt: skip
    assert batch_points.shape == (2, 3, 3) and (batch_points[1, 1:] == PAD_POINT).all() and (batch_features[1, 1:] == PAD_FEATURE).all()


def test_voxelised_decoder_output(load, reference):
    decoder = load(TINY, voxelize=True)
    out = decoder.reconstruct(reference[0]["images"])
    n = out["gaussians"]["means"].shape[1]
    assert 1 < n <= 3 * 42 * 56 and decoder(reference[0]["images"]).gaussians.means.shape[1] == n
    assert out["gaussians"]["covariances"].shape == (1, n, 3, 3)


def test_save_and_load_round_trip(tiny, load, reference, tmp_path):
    tiny.save_pretrained(tmp_path / "saved")
    assert set(load_file(tmp_path / "saved/model.safetensors")) == set(load_file(TINY / "model.safetensors"))
    again = load(tmp_path / "saved")
    images = reference[0]["images"]
    first, second = _official(tiny.reconstruct(images)), _official(again.reconstruct(images))
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert again.config == tiny.config


def test_bfloat16_aggregator_weights_load(load, reference, tmp_path):
    state = load_file(TINY / "model.safetensors")
    state = {k: v.bfloat16() if k.startswith("encoder.aggregator.") else v for k, v in state.items()}
    folder = tmp_path / "bf16"
    folder.mkdir()
    shutil.copy(TINY / "config.json", folder)
    save_file(state, folder / "model.safetensors")
    decoder = load(folder)
    assert all(p.dtype == torch.float32 for p in decoder.parameters())
    assert torch.equal(decoder.model.aggregator.camera_token, state["encoder.aggregator.camera_token"].float())
    assert decoder.reconstruct(reference[0]["images"])["depth"].isfinite().all()


def test_missing_and_extra_keys_are_listed(load, tmp_path):
    state = load_file(TINY / "model.safetensors")
    state.pop("encoder.gaussian_param_head.input_merger.0.weight")
    state["encoder.extra.weight"] = torch.zeros(1)
    folder = tmp_path / "broken"
    folder.mkdir()
    shutil.copy(TINY / "config.json", folder)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"does not match AnySplat: missing \(1\): encoder\.gaussian_param_head\.input_merger\.0\.weight; "
                                              r"unexpected \(1\): encoder\.extra\.weight$"):  # fmt: skip
        load(folder)


def _variant(tmp_path: Path, **changes: dict) -> Path:
    return config_variant(TINY, tmp_path, **changes)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"encoder.gaussian_param_head": {"features": 1}}, "features: Input should be greater than 1"),
        ({"encoder.gaussian_param_head": {"output_dim": 57}}, "output_dim must be 84 for sh_degree 4, got 57"),
        ({"encoder_cfg": {"pred_head_type": "point"}}, "encoder_cfg.pred_head_type: Input should be 'depth'"),
        ({"encoder_cfg": {"intermediate_layer_idx": [1, 2]}}, "does not fit the 3 layers"),
        ({"encoder.camera_head": {"dim_in": 96}}, "camera_head.dim_in must be 2 \\* embed_dim = 128, got 96"),
        ({"encoder_cfg": {"voxelise": True}}, "encoder_cfg.voxelise: unknown field"),
    ],
)
def test_configs_the_model_cannot_build_are_config_errors(load, tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load(_variant(tmp_path, **change))


def test_incomplete_or_unknown_config_keys(load, tmp_path):
    folder = _variant(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "encoder.point_head": {}}))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) encoder\.point_head"):
        load(folder)
    del config["encoder.depth_head"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="missing encoder.depth_head"):
        load(folder)


def test_bad_images_are_one_line_errors(tiny, reference):
    images = reference[0]["images"]
    with pytest.raises(InputError, match=r"values must be in \[0,1\]"):
        tiny.reconstruct(images * 2 - 1)
    with pytest.raises(ShapeError, match="multiples of 14"):
        tiny.reconstruct(images[..., :40, :])
    with pytest.raises(ShapeError, match=r"expected \[B,S,3,H,W\]"):
        tiny.reconstruct(images[:, :, :2])
    with pytest.raises(InputError, match="unknown stitch point 'agg_blocks_2' for anysplat"):
        tiny.forward_features(images, ["agg_blocks_2"])


def test_missing_checkpoint_is_not_downloaded(load, tmp_path):
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache"):
        load("lhjiang/anysplat-not-here")


def test_preprocess_gives_the_frames_aux(tiny, reference):
    frames = reference[0]["images"].transpose(1, 2) * 2 - 1  # [B,3,T,H,W] in [-1,1]
    assert max_error(tiny.preprocess(frames), reference[0]["images"]) <= 1e-6


def test_stitch_targets_include_the_gaussian_head(tiny):
    enc = tiny.stitch_targets("enc_blocks_2")
    assert enc.parameters == ("model.aggregator.patch_embed.cls_token", "model.aggregator.patch_embed.register_tokens")
    assert "model.gaussian_param_head.input_merger.0" in enc.lora_modules
    assert "model.gaussian_param_head.scratch.output_conv2.2" in enc.lora_modules
    assert not any(".patch_embed.blocks." in name for name in enc.lora_modules)


def test_distill_loss_weights(tiny, reference):
    with torch.no_grad():
        teacher = tiny(reference[0]["images"])
    terms = tiny.distill_loss(teacher.map(lambda t: t + 1), teacher)
    expected = {"depth": 1.0, "depth_grad": 0.0, "depth_conf": 0.01, "gaussian_conf": 0.01, "anchor_features": 0.1,
                "means": 1.0, "covariances": 1.0, "harmonics": 1.0, "opacities": 1.0, "scales": 10.0, "rotations": 1.0,
                "extrinsic": 1.0, "intrinsic": 1.0, "pose_enc_list": 1.0}  # fmt: skip
    assert {k: round(v.item(), 5) for k, v in terms.items()} == expected
    assert tiny.distill_loss(teacher.map(lambda t: t * 1.5), teacher)["depth_grad"] > 0


@pytest.mark.slow
def test_gradient_checkpointing_gives_the_same_gradients(tiny):
    images = torch.rand(1, 2, 3, 28, 42, generator=torch.Generator().manual_seed(0))

    def gradients():
        tiny.zero_grad()
        decoded = tiny.forward(images)
        (decoded.gaussians.means.sum() + decoded.gaussians.sh.sum()).backward()
        return {n: p.grad.clone() for n, p in tiny.named_parameters() if p.grad is not None}

    plain = gradients()
    tiny.set_gradient_checkpointing(True)
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys() and any("gaussian_param_head" in n for n in plain)
    for name, grad in plain.items():
        assert torch.allclose(grad, checkpointed[name], atol=1e-6), name
