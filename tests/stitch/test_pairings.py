"""`vist3a pair` on the real plugins, offline, from the models' configs alone (meta device)."""

import pytest
import yaml

import vist3a
from vist3a.cli import main
from vist3a.errors import CheckpointError
from vist3a.plugins import get_plugins
from vist3a.registry import Registry
from vist3a.stitch.spec import StitchSpec


@pytest.fixture(autouse=True)
def real_plugins(entry_point_plugins):
    entry_point_plugins("vist3a_wan", "vist3a_cogvideox", "vist3a_hunyuanvideo", "vist3a_vggt", "vist3a_anysplat")


def test_pair_wan_vggt_with_registry_ids_offline(tmp_path, capsys):
    assert main(["pair", "wan", "vggt", "--out", str(tmp_path)]) == 0
    workspace = yaml.safe_load((tmp_path / "pair.yaml").read_text())
    assert workspace["pairing"] == "wan2.1-t2v-1.3b+vggt"
    assert workspace["generator"] == {"id": "wan2.1-t2v-1.3b", "checkpoint": None}
    points = {p["name"]: p for p in workspace["stitch_points"]}
    assert len(points) == 24 + 4 and workspace["default_stitch_point"] == "enc_blocks_2"
    assert points["enc_blocks_2"]["spec"] == "conv3d_k5x3x3_o1024_s1x2x2_p2x1x1"  # the paper's adapter
    assert points["enc_blocks_2"]["grid"] == [32, 32] and points["enc_blocks_2"]["prefix_tokens"] == 5
    assert "enc_blocks_2*" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("generator", "frames", "expected"),
    [("cogvideox-5b", "9", "conv3d_k5x3x3_o1024_s1x2x2_p2x1x1"), ("hunyuanvideo", "13", "conv3d_k5x3x3_o1024_s1x2x2_p2x1x1")],
)
def test_other_generators_pair_offline(tmp_path, generator, frames, expected):
    argv = ["pair", generator, "vggt", "--resolution", "512", "--decoder-resolution", "448", "--frames", frames, "--out", str(tmp_path)]
    assert main(argv) == 0
    assert expected in (tmp_path / "pair.yaml").read_text()


def test_cogvideox_frame_rule_is_8k_plus_1(tmp_path, capsys):
    argv = ["pair", "cogvideox-5b", "vggt", "--resolution", "512", "--decoder-resolution", "448", "--frames", "13", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "13 frames do not follow cogvideox-5b's frame rule 8k+1; use 17" in capsys.readouterr().err


def test_meta_generators_describe_without_running():
    generator = vist3a.load_generator("wan", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", device="meta")
    assert (generator.latent.channels, generator.latent.spatial_factor, generator.latent.temporal_factor) == (16, 8, 4)
    with pytest.raises(vist3a.Vist3aError, match="built on the meta device"):
        generator.encode(None)
    described = vist3a.load_generator("wan", "someone/other-wan", device="meta", vae_config={"z_dim": 16, "scale_factor_spatial": 16})
    assert described.latent.spatial_factor == 16
    with pytest.raises(CheckpointError, match="describing someone/other-wan on the meta device needs its VAE config"):
        vist3a.load_generator("wan", "someone/other-wan", device="meta")


@pytest.mark.parametrize("pairing", sorted(Registry.load().pairings))
def test_every_registry_pairing_derives_its_adapters_offline(pairing, tmp_path, capsys):
    registry = Registry.load()
    entry = registry.pairings[pairing]
    code = main(["pair", entry.generator, entry.decoder, "--out", str(tmp_path)])
    status = registry.pairing_status(pairing, get_plugins())
    if not status.installed:  # e.g. MV-DUSt3R before its plugin exists
        assert code == 2 and "is not installed" in capsys.readouterr().err
        return
    assert code == 0, capsys.readouterr().err
    workspace = yaml.safe_load((tmp_path / "pair.yaml").read_text())
    assert workspace["pairing"] == pairing and workspace["default_stitch_point"] == entry.default_stitch_point
    frames, factor = workspace["frames"], vist3a.load_generator(entry.generator, device="meta").latent.spatial_factor
    latent = [n // factor for n in workspace["generator_resolution"]]
    for point in workspace["stitch_points"]:
        assert StitchSpec.parse(point["spec"]).output_size((frames, *latent)) == (frames, *point["grid"]), point["name"]
