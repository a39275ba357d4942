"""`vist3a generate` end to end on tiny models: a tiny Wan pipeline stitched to the tiny VGGT and AnySplat references."""

import json
import shutil
from pathlib import Path

import pytest
import vist3a_wan
import yaml

from vist3a.cli import main
from vist3a.io.export import read_cameras_json, read_gaussians_ply, read_point_cloud
from vist3a.io.video import count_frames

REFERENCE = Path(__file__).parents[1].parent / "shared" / "reference"
FRAMES = 5


@pytest.fixture(scope="module")
def tiny_wan(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wan") / "tiny-wan"
    vist3a_wan.tiny_pipeline(seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(params=["vggt", "anysplat"])
def workspace(request, tmp_path, tiny_wan, entry_point_plugins):
    decoder = request.param
    entry_point_plugins("vist3a_wan", f"vist3a_{decoder}", "vist3a_synth")  # synth: the synthetic:N clips
    ws = tmp_path / "ws"
    assert main(["pair", f"wan:{tiny_wan}", f"{decoder}:{REFERENCE / f'{decoder}-tiny-a'}", "--resolution", "32x48",
                 "--decoder-resolution", "28x42", "--frames", str(FRAMES), "--out", str(ws)]) == 0  # fmt: skip
    assert main(["stitch", "--pair", str(ws), "--data", "synthetic:2", "--layer", "enc_blocks_2", "--steps", "0",
                 "--lora-rank", "4"]) == 0  # fmt: skip
    return decoder, ws


def test_generate_writes_every_output(workspace, tmp_path, capsys):
    decoder, ws = workspace
    out = tmp_path / "result"
    argv = ["generate", "a red sphere next to a blue cube", "--pair", str(ws), "--steps", "2", "--render-frames", "3",
            "--out", str(out), "--seed", "7"]  # fmt: skip
    assert main(argv) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["prompt"] == "a red sphere next to a blue cube" and run["text"].startswith("The camera rotates around")
    assert run["options"]["seed"] == 7 and run["options"]["frames"] == FRAMES
    assert count_frames(out / "video.mp4") == FRAMES and count_frames(out / "orbit.mp4") == 3
    cameras = read_cameras_json(out / "cameras.json")
    assert cameras.extrinsics.shape == (1, FRAMES, 4, 4) and cameras.image_size == (28, 42)
    points, colours = read_point_cloud(out / "points.ply")
    assert points.shape[0] == FRAMES * 28 * 42 and colours.shape == points.shape
    assert set(run["files"]) >= {"video", "points", "depth", "cameras", "orbit"}
    if decoder == "anysplat":
        assert read_gaussians_ply(out / "scene.ply").means.shape == (1, FRAMES * 28 * 42, 3)
    else:
        assert not (out / "scene.ply").exists()  # VGGT predicts no Gaussians
    capsys.readouterr()


@pytest.mark.parametrize("workspace", ["vggt"], indirect=True)
def test_output_folder_safety_and_prompt_files(workspace, tmp_path, capsys):
    _, ws = workspace
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep")
    assert main(["generate", "a cube", "--pair", str(ws), "--steps", "1", "--out", str(taken)]) == 2
    assert [p.name for p in taken.iterdir()] == ["mine.txt"]
    (tmp_path / "empty.txt").write_text("# only a comment\n\n")
    assert main(["generate", "--prompts", str(tmp_path / "empty.txt"), "--pair", str(ws)]) == 2
    assert main(["generate", "--pair", str(ws)]) == 2
    assert main(["generate", "a cube", "--pair", str(ws), "--template", "no placeholder"]) == 2
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cube\na cone\n")
    argv = ["generate", "--prompts", str(prompts), "--pair", str(ws), "--steps", "1", "--render-frames", "1", "--out", str(tmp_path / "many")]
    assert main(argv) == 0
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["000-a-cube", "001-a-cone"]
    err = capsys.readouterr().err
    assert f"{taken} already exists; generate never overwrites a folder" in err
    assert "no prompts (one per line; # starts a comment)" in err and "give either a PROMPT or --prompts FILE" in err
    assert "template 'no placeholder' is neither one of orbit, none nor a text with {prompt}" in err


@pytest.mark.parametrize("workspace", ["vggt"], indirect=True)
def test_missing_generator_checkpoint_offline(workspace, tmp_path, capsys, monkeypatch):
    _, ws = workspace
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    other = tmp_path / "hub"
    shutil.copytree(ws, other)
    pair = yaml.safe_load((other / "pair.yaml").read_text())
    pair["generator"] = {"id": "wan", "checkpoint": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"}
    (other / "pair.yaml").write_text(yaml.safe_dump(pair))
    assert main(["generate", "a cube", "--pair", str(other), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: Wan-AI/Wan2.1-T2V-1.3B-Diffusers: not in the local Hugging Face cache") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("workspace", ["vggt"], indirect=True)
def test_generate_from_a_registry_pairing_with_a_lora(workspace, tiny_wan, tmp_path, monkeypatch, capsys):
    """A user registry names the generator, its LoRA and the stitched decoder; --pair takes the pairing id."""
    from tests.plugins.test_wan_lora import write_adapter

    _, ws = workspace
    write_adapter(vist3a_wan.tiny_pipeline(seed=0).transformer, tmp_path / "lora")
    registry = {
        "generators": {"tiny-wan": {"plugin": "vist3a_wan", "spec": "wan", "checkpoint": str(tiny_wan), "licence": "test"}},
        "pairings": {
            "tiny-wan+vggt": {"generator": "tiny-wan", "decoder": "vggt", "generator_resolution": [32, 48],
                              "decoder_resolution": [28, 42], "frames": FRAMES, "stitched_checkpoint": str(ws / "stitched"),
                              "generator_lora": str(tmp_path / "lora"),
                              "sampling": {"steps": 1, "template": "a photo of {prompt}", "guidance": 2.0}},
            "no-decoder-yet": {"generator": "tiny-wan", "decoder": "vggt", "generator_resolution": [32, 48],
                               "decoder_resolution": [28, 42], "frames": FRAMES},
        },
    }  # fmt: skip
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump(registry))
    monkeypatch.setenv("VIST3A_REGISTRY", str(tmp_path / "registry.yaml"))
    argv = ["generate", "a cube", "--pair", "tiny-wan+vggt", "--guidance", "3", "--render-frames", "1", "--out", str(tmp_path / "r")]
    assert main(argv) == 0
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert (run["pair"], run["generator_lora"], run["stitched"]) == ("tiny-wan+vggt", str(tmp_path / "lora"), str(ws / "stitched"))
    assert (run["options"]["steps"], run["options"]["guidance"], run["text"]) == (1, 3.0, "a photo of a cube")  # pairing defaults
    registry["default_pairing"] = "tiny-wan+vggt"
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump(registry))
    assert main(["generate", "a cube", "--render-frames", "1", "--out", str(tmp_path / "default")]) == 0  # no --pair
    assert json.loads((tmp_path / "default" / "run.json").read_text())["pair"] == "tiny-wan+vggt"
    registry["default_pairing"] = "nowhere"
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump(registry))
    assert main(["generate", "a cube", "--out", str(tmp_path / "u")]) == 2
    assert "default_pairing: unknown pairing 'nowhere'" in capsys.readouterr().err
    del registry["default_pairing"]
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump(registry))
    assert main(["generate", "a cube", "--pair", "no-decoder-yet", "--out", str(tmp_path / "s")]) == 2
    assert main(["generate", "a cube", "--pair", "nowhere", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "pairing no-decoder-yet has no stitched decoder yet" in err
    assert "--pair nowhere: neither a pairing workspace folder nor a registry pairing id" in err


def test_templates():
    from vist3a.prompts import apply_template

    assert apply_template("orbit", " a cube. ").startswith("The camera rotates around the scene, maintaining constant distance: a cube. The")
    assert apply_template("none", "a cube.") == "a cube."
    assert apply_template("A drone shot of {prompt}", "a cube") == "A drone shot of a cube"
