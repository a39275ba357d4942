"""The embedded default pairing: `vist3a generate "..."` with no other argument, and `vist3a synth demo`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from vist3a_synth.demo import DEMO_PROMPT

from vist3a.cli import main
from vist3a.io.export import read_cameras_json, read_gaussians_ply, read_point_cloud
from vist3a.io.video import count_frames
from vist3a.registry import Registry

DEFAULT = "synth-wan+synth-anysplat"
FRAMES, SIZE = 9, 64


def test_the_default_pairing_is_the_shipped_synthetic_one():
    registry = Registry.load()
    assert registry.default_pairing == DEFAULT
    entry = registry.pairings[DEFAULT]
    assert entry.stitched_checkpoint.startswith("package:") and entry.generator_lora.startswith("package:")
    assert entry.sampling.template == "none"


@pytest.mark.slow
def test_generate_with_no_other_argument_works_offline(tmp_path):
    """The README's main command, as a user runs it: a fresh process, offline, only the prompt."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("VIST3A_PLUGINS", None)
    command = [str(Path(sys.executable).parent / "vist3a"), "generate", "a red sphere next to a blue cube"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (out,) = (tmp_path / "outputs").iterdir()
    run = json.loads((out / "run.json").read_text())
    assert run["pair"] == DEFAULT and run["text"] == "a red sphere next to a blue cube"
    assert count_frames(out / "video.mp4") == FRAMES and count_frames(out / "orbit.mp4") > 1
    gaussians = read_gaussians_ply(out / "scene.ply")
    assert gaussians.means.shape == (1, FRAMES * SIZE * SIZE, 3) and gaussians.means.isfinite().all()
    cameras = read_cameras_json(out / "cameras.json")
    assert cameras.extrinsics.shape == (1, FRAMES, 4, 4) and cameras.image_size == (SIZE, SIZE)
    points, colours = read_point_cloud(out / "points.ply")
    assert points.shape == (FRAMES * SIZE * SIZE, 3) and colours.shape == points.shape


@pytest.mark.slow
def test_the_demo_runs_every_stage_and_continues(entry_point_plugins, tmp_path, capsys, offline):
    entry_point_plugins("vist3a_synth", "vist3a_rewards")
    out = tmp_path / "demo"
    assert main(["synth", "demo", "--out", str(out), "--scale", "quick", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    for stage in ("pair", "sweep-layers", "stitch", "align", "generate"):
        assert f"== {stage}: vist3a" in printed
    run_lines = [line for line in printed.splitlines() if line.startswith("== ") and ": vist3a " in line]
    assert [line.endswith("--device cpu") for line in run_lines] == [False, True, True, True, True]
    sweep = json.loads((out / "pair" / "sweep.json").read_text())
    assert sweep["best"] in [layer["name"] for layer in sweep["layers"]]
    result = out / "generate"
    assert json.loads((result / "run.json").read_text())["prompt"] == DEMO_PROMPT
    assert read_gaussians_ply(result / "scene.ply").means.shape == (1, FRAMES * SIZE * SIZE, 3)
    assert main(["synth", "demo", "--out", str(out), "--scale", "quick"]) == 0
    again = capsys.readouterr().out
    assert "== " not in again and str(out / "pair" / "stitched") in again
    assert main(["synth", "demo", "--out", str(out), "--scale", "huge"]) == 2
    assert "--scale must be one of quick, full" in capsys.readouterr().err
    report = tmp_path / "report.json"
    assert main(["synth", "report", "--pair", str(out / "pair"), "--lora", f"aligned={out / 'align' / 'lora_ema'}",
                 "--prompts", "1", "--clips", "2", "--alphas", "0,1", "--steps", "2", "--device", "cpu",
                 "--out", str(report)]) == 0  # fmt: skip
    numbers = json.loads(report.read_text())
    assert [row["alpha"] for row in numbers["noise"]] == [0.0, 1.0]
    assert [row["lora"] for row in numbers["generation"]] == ["base", "aligned"]
    assert 0 <= numbers["generation"][0]["attribute accuracy"] <= 1


def test_a_failing_stage_stops_the_demo_with_its_exit_code(entry_point_plugins, tmp_path, capsys, offline):
    entry_point_plugins("vist3a_synth")  # no vist3a_rewards: the align stage cannot find the consistency reward
    out = tmp_path / "demo"
    for stage in ("pair", "stitched"):  # pretend the first stages are done
        (out / "pair" / stage).mkdir(parents=True)
    (out / "pair" / "pair.yaml").touch()
    (out / "pair" / "sweep.json").touch()
    assert main(["synth", "demo", "--out", str(out), "--scale", "quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["Error: reward 'consistency': plugin 'vist3a_rewards' is not installed"]
    assert not (out / "align" / "lora_ema").exists() and not (out / "generate").exists()
