"""The VGGT plugin against the upstream reference data (../shared/reference): outputs, names and shapes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import vist3a
from tests.decoders.reference import REFERENCE, TOL, config_variant, loader, max_error, tensors
from vist3a.errors import CheckpointError, ConfigError, InputError, ShapeError
from vist3a.io.export import depth_to_npz, pointmaps_to_ply, read_point_cloud
from vist3a.protocols import Decoder3D, StitchPoint

TINY = REFERENCE / "vggt-tiny-a"
MANIFEST = REFERENCE / "manifests/vggt-1b.json"


@pytest.fixture
def load(entry_point_plugins):
    return loader(entry_point_plugins, "vggt")


@pytest.fixture(scope="module")
def reference() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return tensors(TINY)


def test_every_reference_output_matches(load, reference):
    inputs, expected = reference
    decoder = load(TINY)
    assert isinstance(decoder, Decoder3D)
    images, queries = inputs["images"], inputs["query_points"]
    out = decoder.reconstruct(images, queries)
    with torch.no_grad():
        decoded = decoder(images)
        model = decoder.model
        dino = model.aggregator.patch_embed
        normed = dino.norm(dino.run(model.aggregator.embed(images)))
        patches = normed[:, dino.num_prefix :].view(*images.shape[:2], -1, normed.shape[-1])
        grid = (images.shape[-2] // 14, images.shape[-1] // 14)
        layers = model.run_aggregator(model.with_special_tokens(patches), grid)
    ours = {
        **out,
        **{f"pose_enc_list.{i}": p for i, p in enumerate(decoded.heads["pose_enc_list"])},
        **{f"aggregator.tokens.{i}": t for i, t in enumerate(layers)},
        "aggregator.patch_embed.x_norm_clstoken": normed[:, 0],
        "aggregator.patch_embed.x_norm_regtokens": normed[:, 1 : dino.num_prefix],
        "aggregator.patch_embed.x_norm_patchtokens": normed[:, dino.num_prefix :],
        "derived.extrinsic": decoded.cameras.extrinsics[..., :3, :],
        "derived.intrinsic": decoded.cameras.intrinsics,
    }
    from vist3a_vggt.geometry import unproject_depth

    ours["derived.world_points_from_depth"] = unproject_depth(decoded.points.depth, ours["derived.extrinsic"], ours["derived.intrinsic"])
    assert set(ours) == set(expected)
    errors = {key: max_error(ours[key], value) for key, value in expected.items()}
    assert max(errors.values()) <= TOL, {k: e for k, e in errors.items() if e > TOL}
    assert max_error(decoded.points.points, expected["world_points"]) == errors["world_points"]


def test_state_dict_matches_the_vggt_1b_manifest():
    from vist3a_vggt.config import vggt_1b
    from vist3a_vggt.model import VGGT

    manifest = json.loads(MANIFEST.read_text())
    with torch.device("meta"):
        model = VGGT(vggt_1b())
    ours = {name: list(t.shape) for name, t in model.state_dict().items()}
    assert ours == {entry["name"]: entry["shape"] for entry in manifest["state_dict"]}
    assert sum(t.numel() for t in model.state_dict().values()) == manifest["num_parameters_total"]


def _variant(tmp_path: Path, **changes: dict) -> Path:
    return config_variant(TINY, tmp_path, **changes)


def _late_heads(tmp_path: Path) -> Path:
    """The fixture with every DPT head reading layers [2, 2, 3, 3], so aggregator layers 1-2 are stitch points."""
    late = {"intermediate_layer_idx": [2, 2, 3, 3]}
    extractor = json.loads((TINY / "config.json").read_text())["track_head"]["feature_extractor"]
    return _variant(tmp_path, point_head=late, depth_head=late, track_head={"feature_extractor": {**extractor, **late}})


def test_forward_from_every_stitch_point_equals_forward(load, reference, tmp_path):
    decoder = load(_late_heads(tmp_path))
    names = [p.name for p in decoder.stitch_points((56, 84))]
    assert names == ["enc_blocks_1", "enc_blocks_2", "agg_blocks_1", "agg_blocks_2"]
    images = reference[0]["images"]
    with torch.no_grad():
        full = decoder(images)
        features, prefix = decoder.forward_features_with_prefix(images, names)
        for point in decoder.stitch_points((56, 84)):
            tokens = features[point.name]
            assert tokens.shape == (1, point.channels, 4, *point.grid)
            assert prefix[point.name].shape == (1, 4, point.prefix_tokens, point.channels)
            resumed = decoder.forward_from(point.name, tokens, {"prefix": prefix[point.name]})
            errors = {k: max_error(resumed.heads[k], v) for k, v in full.heads.items()}
            assert max(errors.values()) <= TOL, (point.name, errors)
        assert set(decoder.forward_features(images, ["agg_blocks_1"])) == {"agg_blocks_1"}


def test_forward_from_without_prefix_inserts_the_learned_tokens(load, reference):
    decoder = load(TINY)
    images = reference[0]["images"]
    with torch.no_grad():
        dino = decoder.model.aggregator.patch_embed
        tokens = dino.run(decoder.model.aggregator.embed(images), 0, 1)
        learned = dino.prefix(4).unsqueeze(0)
        resumed = decoder.forward_from("enc_blocks_1", decoder.forward_features(images, ["enc_blocks_1"])["enc_blocks_1"])
        explicit = decoder.forward_from(
            "enc_blocks_1", decoder.forward_features(images, ["enc_blocks_1"])["enc_blocks_1"], {"prefix": learned}
        )
    assert tokens.shape[1] == 5 + 24
    assert max_error(resumed.heads["depth"], explicit.heads["depth"]) == 0.0
    assert max_error(resumed.heads["depth"], decoder(images).heads["depth"]) > TOL  # cls/registers carry image content


def test_save_and_load_round_trip(load, reference, tmp_path):
    decoder = load(TINY)
    decoder.save_pretrained(tmp_path / "saved")
    again = load(tmp_path / "saved")
    images, queries = reference[0]["images"], reference[0]["query_points"]
    first, second = decoder.reconstruct(images, queries), again.reconstruct(images, queries)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert again.arch == decoder.arch


def test_official_pt_files_load_with_weights_only(load, reference, tmp_path):
    folder = tmp_path / "official"
    folder.mkdir()
    shutil.copy(TINY / "config.json", folder)
    torch.save(load_file(TINY / "model.safetensors"), folder / "model.pt")
    out = load(folder).reconstruct(reference[0]["images"])
    assert max_error(out["depth"], reference[1]["depth"]) <= TOL
    # a bare model.pt implies the VGGT-1B architecture
    with pytest.raises(CheckpointError, match=r"model\.pt: does not match VGGT: missing \(1264\): .*; shape mismatch file vs model \(523\): "):
        load(folder / "model.pt")


def test_pickles_that_need_code_are_refused(load, tmp_path):
    torch.save({"weights": torch.nn.Linear(2, 2)}, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="cannot be read safely with weights_only=True"):
        load(tmp_path / "model.pt")


def test_missing_and_extra_keys_are_listed(load, tmp_path):
    state = load_file(TINY / "model.safetensors")
    state.pop("camera_head.empty_pose_tokens")
    state["camera_head.extra.weight"] = torch.zeros(1)
    folder = tmp_path / "broken"
    folder.mkdir()
    shutil.copy(TINY / "config.json", folder)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing \(1\): camera_head\.empty_pose_tokens; unexpected \(1\): camera_head\.extra\.weight"):
        load(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"aggregator": {"num_heads": 3}}, "aggregator: embed_dim 64 is not divisible by 3"),
        ({"camera_head": {"dim_in": 96}}, "camera_head.dim_in must be 2 \\* embed_dim = 128, got 96"),
        ({"aggregator": {"aa_order": ["frame"]}}, "aa_order must hold 'frame' and 'global'"),
        ({"point_head": {"intermediate_layer_idx": [0, 1, 2, 9]}}, "point_head.intermediate_layer_idx"),
        ({"aggregator": {"depht": 4}}, "aggregator.depht: unknown field"),
    ],
)
def test_configs_the_model_cannot_build_are_config_errors(load, tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load(_variant(tmp_path, **change))


def test_unknown_top_level_keys_are_config_errors(load, tmp_path):
    folder = _variant(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "point_haed": {}}))
    with pytest.raises(ConfigError, match="unknown key\\(s\\) point_haed"):
        load(folder)


def test_bad_images_are_one_line_errors(load, reference):
    decoder = load(TINY)
    images = reference[0]["images"]
    with pytest.raises(InputError, match=r"values must be in \[0,1\]"):
        decoder.reconstruct(images * 2 - 1)
    with pytest.raises(ShapeError, match="multiples of 14"):
        decoder.reconstruct(images[..., :50, :])
    with pytest.raises(ShapeError, match=r"expected \[B,S,3,H,W\]"):
        decoder.reconstruct(images[:, :, :2])
    with pytest.raises(ShapeError, match=r"query_points: expected \[B,N,2\]"):
        decoder.reconstruct(images, torch.zeros(1, 3, 3))
    with pytest.raises(InputError, match="unknown stitch point 'enc_blocks_9'"):
        decoder.forward_features(images, ["enc_blocks_9"])


def test_missing_checkpoint_is_not_downloaded(load, tmp_path):
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache"):
        load("facebook/VGGT-1B-not-here")
    with pytest.raises(CheckpointError, match="no model.safetensors or model.pt"):
        load(tmp_path)


def test_preprocess_and_stitch_grid(load, reference):
    decoder = load(TINY)
    frames = reference[0]["images"].transpose(1, 2) * 2 - 1  # [B,3,T,H,W] in [-1,1]
    x = decoder.preprocess(frames)
    assert max_error(x, reference[0]["images"]) <= 1e-6
    assert decoder.stitch_points((56, 84))[0] == StitchPoint("enc_blocks_1", (4, 6), 64, 5, 1)
    assert decoder.preprocess(torch.zeros(1, 3, 2, 30, 40)).shape == (1, 2, 3, 28, 42)


def test_stitch_targets_cover_the_layers_after_the_point(load, tmp_path):
    decoder = load(_late_heads(tmp_path))
    enc = decoder.stitch_targets("enc_blocks_2")
    assert enc.parameters == ("model.aggregator.patch_embed.cls_token", "model.aggregator.patch_embed.register_tokens")
    assert not any(".patch_embed.blocks." in name for name in enc.lora_modules)
    assert "model.aggregator.frame_blocks.0.attn.qkv" in enc.lora_modules and "model.depth_head.projects.0" in enc.lora_modules
    agg = decoder.stitch_targets("agg_blocks_1")
    assert agg.parameters == ("model.aggregator.camera_token", "model.aggregator.register_token")
    assert "model.aggregator.global_blocks.0.attn.qkv" not in agg.lora_modules
    assert "model.aggregator.global_blocks.1.attn.qkv" in agg.lora_modules
    assert not any("track_head" in name for name in enc.lora_modules + agg.lora_modules)
    modules = dict(decoder.named_modules())
    assert all(isinstance(modules[name], (torch.nn.Linear, torch.nn.Conv2d)) for name in agg.lora_modules)


def test_meta_device_builds_without_reading_weights(load, tmp_path):
    decoder = load("facebook/VGGT-1B", device="meta")  # not cached: the VGGT-1B architecture, nothing read
    assert all(p.is_meta for p in decoder.parameters())
    manifest = json.loads(MANIFEST.read_text())
    assert len(decoder.model.state_dict()) == manifest["num_entries"]
    assert [p.name for p in decoder.stitch_points((448, 448))][-1] == "agg_blocks_4"
    assert decoder.stitch_points((448, 448))[0].grid == (32, 32)
    (tmp_path / "model.safetensors").write_bytes(b"not read")
    shutil.copy(TINY / "config.json", tmp_path)
    assert load(tmp_path, device="meta").arch.aggregator.embed_dim == 64


def test_distill_loss_weights(load, reference):
    decoder = load(TINY)
    with torch.no_grad():
        teacher = decoder(reference[0]["images"])
    student = teacher.map(lambda t: t + 1)
    terms = decoder.distill_loss(student, teacher)
    expected = {"pose": 5.0, "depth": 1.0, "world_points": 1.0, "depth_conf": 5e-3, "world_points_conf": 5e-3,
                "depth_grad": 0.0, "world_points_grad": 0.0}  # fmt: skip
    assert {k: round(v.item(), 6) for k, v in terms.items()} == expected
    warped = teacher.map(lambda t: t * 1.5)
    assert decoder.distill_loss(warped, teacher)["depth_grad"] > 0


def test_exports_are_written_and_readable(load, reference, tmp_path):
    decoder = load(TINY)
    images = reference[0]["images"]
    with torch.no_grad():
        decoded = decoder(images)
    colors = images.permute(0, 1, 3, 4, 2)
    points, rgb = read_point_cloud(pointmaps_to_ply(tmp_path / "points.ply", decoded, colors))
    assert np.allclose(points, reference[1]["world_points"][0].reshape(-1, 3).numpy(), rtol=0, atol=TOL)
    assert np.array_equal(rgb, (colors[0].reshape(-1, 3) * 255).round().to(torch.uint8).numpy())
    kept, _ = read_point_cloud(pointmaps_to_ply(tmp_path / "confident.ply", decoded, min_confidence=1e9))
    assert kept.shape == (0, 3)
    saved = np.load(depth_to_npz(tmp_path / "depth.npz", decoded))
    assert np.allclose(saved["depth"], reference[1]["depth"][0, ..., 0].numpy())
    assert np.allclose(saved["intrinsics"], reference[1]["derived.intrinsic"][0].numpy())
    assert saved["extrinsics"].shape == (4, 4, 4) and tuple(saved["image_size"]) == (56, 84)


def test_gradient_checkpointing_gives_the_same_gradients(entry_point_plugins):
    entry_point_plugins("vist3a_vggt")
    decoder = vist3a.load_decoder("vggt", str(TINY))
    images = torch.rand(1, 2, 3, 28, 42, generator=torch.Generator().manual_seed(0))

    def gradients():
        decoder.zero_grad()
        decoder.forward(images).points.depth.sum().backward()
        return {n: p.grad.clone() for n, p in decoder.named_parameters() if p.grad is not None}

    plain = gradients()
    decoder.set_gradient_checkpointing(True)
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys() and len(plain) > 10
    for name, grad in plain.items():
        assert torch.allclose(grad, checkpointed[name], atol=1e-6), name


def test_inputs_are_moved_to_the_models_device(load):
    """Frames from the CPU reach a model on another device (``meta`` here, CUDA in use) through every entry."""
    decoder = load(TINY).to("meta", torch.float16)
    images = decoder.preprocess(torch.zeros(1, 3, 2, 28, 28))
    assert images.device.type == "meta" and images.dtype == torch.float16
    assert decoder._check_images(torch.zeros(1, 2, 3, 28, 28)).device.type == "meta"
