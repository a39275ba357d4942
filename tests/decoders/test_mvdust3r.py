"""The MV-DUSt3R plugin against the upstream reference data (../shared/reference): outputs, names, shapes and loading."""

from __future__ import annotations

import argparse
import json
import pickletools
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.decoders.reference import REFERENCE, TOL, loader, max_error, tensors
from vist3a.cli import main
from vist3a.errors import CheckpointError, ConfigError, InputError, ShapeError
from vist3a.protocols import Decoder3D

TINY = REFERENCE / "mvdust3r-tiny-a"
MANIFEST = REFERENCE / "manifests/mvdust3r-plus.json"
VIEWS = 4
GAUSSIAN_KEYS = ("rgb", "opacity", "scale", "rotation")


@pytest.fixture
def load(entry_point_plugins):
    return loader(entry_point_plugins, "mvdust3r")


@pytest.fixture(scope="module")
def reference() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return tensors(TINY)


@pytest.fixture(scope="module")
def images(reference) -> torch.Tensor:
    """``[1,4,3,32,48]`` in [0,1] from the fixture's uint8 frames."""
    return reference[0]["images_u8"].transpose(0, 1).float() / 255


@pytest.fixture
def tiny(load):
    return load(TINY)


def _official(out: dict) -> dict[str, torch.Tensor]:
    """``reconstruct``'s nested dicts under the fixture's flat names."""
    flat = {f"pred1.{k}": v for k, v in out["pred1"].items()}
    for i, pred in enumerate(out["pred2s"]):
        flat |= {f"pred2s.{i}.{k}": v for k, v in pred.items()}
    return flat


def test_every_reference_output_matches(tiny, reference, images):
    inputs, expected = reference
    assert isinstance(tiny, Decoder3D) and tiny.needs_rgb and tiny.model.n_ref == 3
    views = torch.stack([inputs[f"views.{i}.img"] for i in range(VIEWS)], dim=1)
    assert torch.equal(tiny._normalised(images), views)  # [0,1] -> [-1,1] exactly as upstream's Normalize
    ours = _official(tiny.reconstruct(images))
    with torch.no_grad():
        model, grid = tiny.model, (4, 6)
        encoded = model.enc_norm(model.encode(model.embed(views), grid)).view(1, VIEWS, 24, -1)
        decoded = _decoder_slots(model, model.encode(model.embed(views), grid).view(1, VIEWS, 24, -1), grid)
    ours |= {f"encoder.out.{v}": encoded[:, v] for v in range(VIEWS)} | {f"decoder.out.{v}": decoded[v] for v in range(VIEWS)}
    assert set(ours) == set(expected)
    errors = {key: max_error(ours[key], value) for key, value in expected.items()}
    assert max(errors.values()) <= TOL, {k: e for k, e in errors.items() if e > TOL}


def _decoder_slots(model, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The normed last decoder layer per slot ``[S, B*n_ref, P, D]``, captured at the heads' input."""
    seen = {}
    original = model.heads
    model.heads = lambda slots, imgs: seen.setdefault("slots", slots)
    try:
        model.decode(tokens, torch.zeros(1, VIEWS, 3, 32, 48), grid)
    finally:
        model.heads = original
    return seen["slots"]


def test_state_dict_matches_the_mvdust3r_plus_manifest_on_meta(load):
    manifest = json.loads(MANIFEST.read_text())
    decoder = load("Zhenggang/MV-DUSt3R", device="meta")  # not cached: the released MV-DUSt3R+, nothing read
    state = decoder.model.state_dict()
    ours = {name: (list(t.shape), str(t.dtype).removeprefix("torch.")) for name, t in state.items()}
    assert ours == {e["name"]: (e["shape"], e["dtype"]) for e in manifest["state_dict"]}
    assert len(state) == manifest["num_entries"] == 1241
    assert sum(t.numel() for t in state.values()) == manifest["num_parameters_total"]
    assert all(p.is_meta for p in decoder.parameters())
    assert decoder.arch.variant == "MV-DUSt3R+" and decoder.model.n_ref == 4
    ours, theirs = decoder.arch.to_json()["model"]["args"], manifest["constructor_config"]["args"]
    assert {k: ours[k] for k in theirs} == theirs


def test_forward_from_every_stitch_point_equals_forward(tiny, images):
    points = tiny.stitch_points((32, 48))
    assert [(p.name, p.grid, p.channels, p.prefix_tokens, p.index) for p in points] == [
        ("enc_blocks_1", (4, 6), 64, 0, 1), ("enc_blocks_2", (4, 6), 64, 0, 2)]  # fmt: skip
    with torch.no_grad():
        full = tiny(images)
        features = tiny.forward_features(images, [p.name for p in points])
        for point in points:
            assert features[point.name].shape == (1, 64, VIEWS, 4, 6)
            resumed = tiny.forward_from(point.name, features[point.name], {"frames": images})
            errors = {k: max_error(resumed.heads[k], v) for k, v in full.heads.items()}
            assert set(errors) == {"pts3d", "conf", *GAUSSIAN_KEYS} and max(errors.values()) <= TOL, (point.name, errors)


def test_forward_from_needs_matching_frames(tiny, images):
    with torch.no_grad():
        tokens = tiny.forward_features(images, ["enc_blocks_1"])["enc_blocks_1"]
        with pytest.raises(InputError, match=r"needs aux\['frames'\]"):
            tiny.forward_from("enc_blocks_1", tokens)
        with pytest.raises(ShapeError, match=r"aux\['frames'\]: expected \[1,4,3,32,48\]"):
            tiny.forward_from("enc_blocks_1", tokens, {"frames": images[..., :16, :]})
        with pytest.raises(InputError, match="unknown stitch point 'enc_blocks_3'"):
            tiny.forward_from("enc_blocks_3", tokens, {"frames": images})


def test_decoded3d_uses_vist3a_conventions(tiny, reference, images):
    expected = reference[1]
    with torch.no_grad():
        decoded = tiny(images)
    first = lambda key, second=None: torch.stack(  # noqa: E731  path 0 of pred1 and pred2s, [1,S,H,W,k]
        [expected[f"pred1.{key}"][0]] + [expected[f"pred2s.{j}.{second or key}"][0] for j in range(VIEWS - 1)])[None]
    points = first("pts3d", "pts3d_in_other_view")
    assert max_error(decoded.points.points, points) <= TOL and max_error(decoded.points.confidence, first("conf")) <= TOL
    g = decoded.gaussians
    assert max_error(g.means, points.flatten(1, 3)) <= TOL
    assert max_error(g.quats, first("rotation").flatten(1, 3)) <= TOL  # upstream hands these to gsplat as wxyz
    assert max_error(g.scales, first("scale").abs().flatten(1, 3)) <= TOL  # the sign of a scale does not matter
    assert max_error(g.opacities, first("opacity").flatten(1, 4)) <= TOL
    assert g.sh_degree == 0 and max_error(g.sh[:, :, 0], first("rgb").flatten(1, 3)) <= TOL
    cams = decoded.cameras
    assert cams.image_size == (32, 48) and torch.equal(cams.extrinsics[:, 0], torch.eye(4)[None])
    assert torch.equal(cams.intrinsics[0, :, :2, 2], torch.tensor([[24.0, 16.0]] * VIEWS))
    assert decoded.points.depth.shape == (1, VIEWS, 32, 48)
    assert torch.equal(decoded.points.depth[:, 0], decoded.points.points[:, 0, ..., 2])  # view 0 is the world frame


def test_save_and_load_round_trip(tiny, load, images, tmp_path):
    tiny.save_pretrained(tmp_path / "saved")
    again = load(tmp_path / "saved")
    assert again.arch == tiny.arch
    first, second = _official(tiny.reconstruct(images)), _official(again.reconstruct(images))
    assert all(torch.equal(first[k], second[k]) for k in first)
    saved = json.loads((tmp_path / "saved/config.json").read_text())["model"]["args"]
    assert saved["depth_mode"] == ["exp", "-inf", "inf"] and saved["n_ref"] == 3


def _official_file(path: Path, constructor: str) -> Path:
    """A file in the official layout: ``{'args': Namespace(model=...), 'model': state_dict}``."""
    state = load_file(TINY / "model.safetensors")
    torch.save({"args": argparse.Namespace(model=constructor, epochs=100, lr=1e-4), "model": state}, path)
    return path


def test_official_pth_loads_without_evaluating_its_constructor_string(load, reference, images, tmp_path):
    marker = tmp_path / "evaluated"
    constructor = f"__import__('pathlib').Path({str(marker)!r}).touch() or AsymmetricCroCo3DStereoMultiView()"
    pth = _official_file(tmp_path / "MVDp_s2.pth", constructor)
    architecture = json.loads((TINY / "config.json").read_text())
    out = _official(load(pth, architecture=architecture).reconstruct(images))
    assert max(max_error(out[k], v) for k, v in reference[1].items() if k in out) <= TOL
    assert not marker.exists()
    # without a config the file's keys select the released MV-DUSt3R+, whose shapes this tiny file does not have
    with pytest.raises(CheckpointError, match=r"MVDp_s2\.pth: does not match MVDUSt3R: missing \(984\): .*; shape mismatch file vs model \(239\)"):
        load(pth)


def test_released_variant_follows_the_keys():
    from vist3a_mvdust3r.checkpoint import inferred_architecture, with_second_decoder

    names = [e["name"] for e in json.loads(MANIFEST.read_text())["state_dict"]]
    assert inferred_architecture(dict.fromkeys(names)).variant == "MV-DUSt3R+"
    plain = dict.fromkeys(n for n in names if not n.startswith("dec_same_view_blocks."))
    assert inferred_architecture(plain).args.m_ref_flag is False and inferred_architecture(plain).n_ref == 1
    one = torch.ones(1)
    assert with_second_decoder({"dec_blocks.0.norm1.weight": one}) == {"dec_blocks.0.norm1.weight": one, "dec_blocks2.0.norm1.weight": one}


class _WritesMarker:
    """A pickle payload that creates a file when unpickled by an unsafe loader."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _malicious(tmp_path: Path) -> tuple[Path, Path]:
    marker, path = tmp_path / "pwned", tmp_path / "MVDp_s2.pth"
    torch.save({"args": _WritesMarker(marker), "model": load_file(TINY / "model.safetensors")}, path)
    opcodes = [(op.name, arg) for op, arg, _ in pickletools.genops(_data_pickle(path))]  # the payload is really there
    assert ("REDUCE", None) in opcodes and any(isinstance(arg, str) and "touch" in arg for _, arg in opcodes)
    return path, marker


def _data_pickle(path: Path) -> bytes:
    """The ``data.pkl`` record of a torch zip checkpoint."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))


def test_a_pickle_that_would_run_code_is_refused(load, tmp_path):
    path, marker = _malicious(tmp_path)
    with pytest.raises(CheckpointError, match=r"refused: it cannot be read with torch.load\(weights_only=True\).*nothing in it was run"):
        load(path, architecture=json.loads((TINY / "config.json").read_text()))
    assert not marker.exists()


def test_cli_convert_refuses_a_malicious_pickle_in_one_line(entry_point_plugins, tmp_path, capsys):
    entry_point_plugins("vist3a_mvdust3r")
    path, marker = _malicious(tmp_path)
    assert main(["mvdust3r-convert", str(path), "--out", str(tmp_path / "out"), "--config", str(TINY / "config.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: ") and "refused" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_cli_convert_writes_a_loadable_folder(entry_point_plugins, load, images, tmp_path, capsys):
    entry_point_plugins("vist3a_mvdust3r")
    pth = _official_file(tmp_path / "official.pth", "not read")
    assert main(["mvdust3r-convert", str(pth), "--out", str(tmp_path / "out"), "--config", str(TINY / "config.json")]) == 0
    assert "MV-DUSt3R+ (n_ref 3)" in capsys.readouterr().out
    converted = _official(load(tmp_path / "out").reconstruct(images))
    original = _official(load(TINY).reconstruct(images))
    assert all(torch.equal(converted[k], original[k]) for k in original)


def test_missing_and_extra_keys_are_listed(load, tmp_path):
    state = load_file(TINY / "model.safetensors")
    state.pop("mask_token")
    state["dec_norm.extra"] = torch.zeros(1)
    folder = tmp_path / "broken"
    folder.mkdir()
    shutil.copy(TINY / "config.json", folder)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing \(1\): mask_token; unexpected \(1\): dec_norm\.extra"):
        load(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pos_embed": "cosine"}, "pos_embed 'cosine' is not supported"),
        ({"GS_skip": True}, "GS_skip: Input should be False"),
        ({"head_type": "dpt"}, "head_type: Input should be 'linear'"),
        ({"enc_num_heads": 3}, "enc_embed_dim 64 must split into 3 heads"),
        ({"n_ref": 1}, "m_ref_flag needs n_ref > 1"),
        ({"depth_mode": ["exp", 0, "inf"]}, "depth_mode bounds must be"),
        ({"enc_dpeth": 2}, "enc_dpeth: unknown field"),
    ],
)
def test_configs_the_model_cannot_build_are_config_errors(load, tmp_path, change, message):
    config = json.loads((TINY / "config.json").read_text())
    config["model"]["args"].update(change)
    (tmp_path / "config.json").write_text(json.dumps(config))
    shutil.copy(TINY / "model.safetensors", tmp_path)
    with pytest.raises(ConfigError, match=message):
        load(tmp_path)


def test_bad_images_and_checkpoints_are_one_line_errors(tiny, load, images, tmp_path):
    with pytest.raises(InputError, match=r"values must be in \[0,1\]"):
        tiny.reconstruct(images * 2 - 1)
    with pytest.raises(ShapeError, match="multiples of 8"):
        tiny.reconstruct(images[..., :30, :])
    with pytest.raises(ShapeError, match=r"2 view\(s\); this model needs at least 3 \(n_ref = 3\)"):
        tiny.reconstruct(images[:, :2])
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache.*hf download Zhenggang/MV-DUSt3R checkpoints/MVD.pth"):
        load("Zhenggang/MV-DUSt3R:checkpoints/MVD.pth")
    with pytest.raises(CheckpointError, match="no model.safetensors in this folder"):
        load(tmp_path)
    with pytest.raises(CheckpointError, match=r"missing/MVDp_s2\.pth: no such file or folder"):
        load(tmp_path / "missing/MVDp_s2.pth")


def test_mv_dust3r_without_plus_runs_one_path(images):
    from vist3a_mvdust3r import MVDUSt3RConfig
    from vist3a_mvdust3r.decoder import MVDUSt3RDecoder

    config = json.loads((TINY / "config.json").read_text())
    config["model"]["args"] |= {"m_ref_flag": False, "n_ref": None}
    plain = MVDUSt3RDecoder.from_config(MVDUSt3RConfig(architecture=config))  # random weights
    assert plain.model.dec_same_view_blocks is None and plain.model.n_ref == 1
    out = plain.reconstruct(images)
    assert out["pred1"]["pts3d"].shape == (1, 32, 48, 3) and len(out["pred2s"]) == VIEWS - 1
    with torch.no_grad():
        assert max_error(plain(images).points.points[:, 0], out["pred1"]["pts3d"]) == 0.0


def test_distill_loss_weights(tiny, images):
    with torch.no_grad():
        teacher = tiny(images)
    terms = tiny.distill_loss(teacher.map(lambda t: t + 1), teacher)
    assert {k: round(v.item(), 6) for k, v in terms.items()} == {
        "pts3d": 1.0, "conf": 0.01, "rgb": 1.0, "opacity": 1.0, "scale": 1.0, "rotation": 1.0}  # fmt: skip
    assert teacher.heads["pts3d"].shape == (3, VIEWS, 32, 48, 3)  # every reference path is distilled


def test_stitch_targets_cover_the_layers_after_the_point(tiny):
    targets = tiny.stitch_targets("enc_blocks_1")
    assert targets.parameters == ()
    assert "model.enc_blocks.1.attn.qkv" in targets.lora_modules and "model.enc_blocks.0.attn.qkv" not in targets.lora_modules
    for name in ("model.decoder_embed", "model.dec_same_view_blocks.0.cross_attn.projk", "model.downstream_head1.skip_proj.3.conv",
                 "model.downstream_GS_head.1.mlp_rotation.2"):  # fmt: skip
        assert name in targets.lora_modules
    assert not any("enc_blocks" in n for n in tiny.stitch_targets("enc_blocks_2").lora_modules)


def test_preprocess(tiny, images):
    frames = images.transpose(1, 2) * 2 - 1
    assert max_error(tiny.preprocess(frames), images) <= 1e-6
    assert tiny.preprocess(torch.zeros(1, 3, 2, 30, 45)).shape == (1, 2, 3, 32, 48)


def test_inputs_are_moved_to_the_models_device(load):
    """Frames from the CPU reach a model on another device (``meta`` here, CUDA in use)."""
    decoder = load(TINY).to("meta", torch.float16)
    images = decoder.preprocess(torch.zeros(1, 3, VIEWS, 32, 48))
    assert images.device.type == "meta" and images.dtype == torch.float16
