"""Every command that takes ``--device``, run on CUDA, and training state that moves between CUDA and the CPU.

CI has no GPU, so these tests are skipped there (and reported as skipped). On a machine with one:
``pytest -m cuda``.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence
from vist3a_synth.generator import WEIGHTS
from vist3a_synth.training import STATE_FILE

from vist3a.cli import main
from vist3a.io.checkpoint import read_state
from vist3a.io.export import read_gaussians_ply

from .test_render_command import write_scene

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

PROMPT = "a red sphere next to a blue cube"


@pytest.fixture
def cli(entry_point_plugins, offline):
    entry_point_plugins("vist3a_synth", "vist3a_rewards")

    def run(*args: str) -> None:
        assert main([str(a) for a in args]) == 0, args

    return run


def history(run: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def state_step(run: Path) -> int:
    return int(read_state(run / STATE_FILE, "training state")[1]["step"])


@pytest.mark.parametrize("first, then", [("cuda", "cpu"), ("cpu", "cuda")])
def test_a_vae_run_resumes_on_the_other_device(cli, tmp_path, first, then):
    run, small = tmp_path / "vae", ["--scenes", 8, "--test-scenes", 2, "--cache", tmp_path]
    cli("synth", "train", "vae", "--out", run, "--steps", 4, "--device", first, *small)
    before = history(run)
    cli("synth", "train", "vae", "--out", run, "--steps", 6, "--device", then, *small)
    assert state_step(run) == 6 and history(run)[:4] == before and len(history(run)) == 6


def test_the_same_seed_gives_the_same_vae_curve_on_cuda_and_cpu(cli, tmp_path):
    small = ["--scenes", 8, "--test-scenes", 2, "--cache", tmp_path, "--steps", 5]
    for device in ("cuda", "cpu"):
        cli("synth", "train", "vae", "--out", tmp_path / device, "--device", device, *small)
    on_cuda, on_cpu = history(tmp_path / "cuda"), history(tmp_path / "cpu")
    for a, b in zip(on_cuda, on_cpu):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-2)


def test_a_dit_run_resumes_on_the_other_device_and_writes_its_samples(cli, tmp_path):
    run, small = tmp_path / "dit", ["--vae", WEIGHTS, "--scenes", 8, "--test-scenes", 2, "--batch-size", 2, "--cache", tmp_path]
    cli("synth", "train", "dit", "--out", run, "--steps", 3, "--device", "cpu", *small)
    before = history(run)
    cli("synth", "train", "dit", "--out", run, "--steps", 5, "--device", "cuda", *small)
    assert state_step(run) == 5 and history(run)[:3] == before
    assert (run / "samples.png").is_file() and (run / "synth-wan-dit" / "config.json").is_file()


def test_the_decoder_reward_and_classifier_train_on_cuda(cli, tmp_path):
    cli("synth", "train", "decoder", "--out", tmp_path / "dec", "--scenes", 4, "--steps", 2, "--batch-size", 2, "--device", "cuda")
    cli("synth", "train", "reward", "--out", tmp_path / "rew", "--clips", 8, "--eval-clips", 4, "--steps", 2, "--device", "cuda")
    cli("synth", "train", "classifier", "--out", tmp_path / "cls", "--clips", 8, "--eval-clips", 4, "--steps", 2, "--device", "cuda")
    assert (tmp_path / "dec" / "model" / "config.json").is_file()
    assert all((tmp_path / run / "metrics.json").is_file() for run in ("rew", "cls"))


def test_the_evaluations_run_on_cuda(cli):
    cli("synth", "eval-decoder", "--count", 2, "--device", "cuda")
    cli("synth", "eval-generator", "--prompts", 2, "--device", "cuda")


@pytest.mark.parametrize("options", [["--device", "cuda:0"], ["--device", "cuda", "--dtype", "bfloat16"],
                                     ["--device", "cuda", "--cpu-offload"]])  # fmt: skip
def test_generate_on_cuda(cli, tmp_path, options):
    cli("generate", PROMPT, "--out", tmp_path / "out", *options)
    gaussians = read_gaussians_ply(tmp_path / "out" / "scene.ply")
    assert gaussians.means.isfinite().all()


def test_render_on_cuda_matches_the_cpu(cli, tmp_path):
    scene, _ = write_scene(tmp_path)
    for device in ("cuda", "cpu"):
        cli("render", scene, "--out", tmp_path / f"{device}.gif", "--frames", 3, "--size", 24, "--device", device)
    frames = {}
    for device in ("cuda", "cpu"):
        with Image.open(tmp_path / f"{device}.gif") as gif:
            frames[device] = [torch.from_numpy(np.asarray(f.convert("RGB"), dtype=np.float32)) for f in ImageSequence.Iterator(gif)]
    assert len(frames["cuda"]) == 3
    assert max((a - b).abs().mean() for a, b in zip(frames["cuda"], frames["cpu"])) < 2.0


def test_the_demo_and_its_report_run_on_cuda(cli, tmp_path):
    cli("synth", "demo", "--scale", "quick", "--out", tmp_path / "demo", "--device", "cuda")
    assert (tmp_path / "demo" / "generate" / "scene.ply").is_file()
    cli("synth", "report", "--pair", tmp_path / "demo" / "pair", "--prompts", 1, "--clips", 2, "--alphas", "0,1",
        "--steps", 2, "--device", "cuda", "--out", tmp_path / "report.json")
    assert len(json.loads((tmp_path / "report.json").read_text())["noise"]) == 2
