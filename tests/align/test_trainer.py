"""Reward finetuning end to end on tiny models: a tiny Wan stitched to the tiny VGGT, a differentiable reward."""

import json
from pathlib import Path

import numpy
import pytest
import torch
import vist3a_wan
from safetensors.torch import load_file

from vist3a.align.lora import LoraOptions
from vist3a.align.prompts import PromptSampler
from vist3a.align.rollout import RolloutConfig
from vist3a.align.trainer import AlignConfig, align
from vist3a.cli import main
from vist3a.errors import InputError
from vist3a.io.clips import open_clips
from vist3a.pipeline import Vist3aPipeline

REFERENCE = Path(__file__).parents[2].parent / "shared" / "reference"
CONFIG = AlignConfig(steps=4, lr=1e-2, checkpoint_every=2, lora=LoraOptions(rank=2, alpha=4),
                     rollout=RolloutConfig(min_steps=2, max_steps=3, grad_steps=1))  # fmt: skip


class Brightness:
    """Mean intensity of the decoded frames: a differentiable stand-in for a learned reward."""

    name = "brightness"

    def __call__(self, *, prompts, frames=None, renders=None, decoded=None):
        return frames.mean(dim=(1, 2, 3, 4)) + 0 * decoded.points.depth.mean()  # the 3D output is in the graph too


def image_sequences(root: Path, captions: list[str | None]) -> Path:
    """One folder of 5 random PNG frames per caption, with ``caption.txt`` unless the caption is None."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for i, caption in enumerate(captions):
        folder = root / f"clip{i}"
        folder.mkdir(parents=True)
        for t in range(5):
            pixels = torch.randint(0, 256, (32, 48, 3), generator=g, dtype=torch.uint8)
            Image.fromarray(pixels.numpy()).save(folder / f"{t:02d}.png")
        if caption is not None:
            (folder / "caption.txt").write_text(caption)
    return root


def make_workspace(root: Path, decoder: str) -> Path:
    """A tiny Wan paired with a tiny reference decoder and stitched by the closed form alone."""
    vist3a_wan.tiny_pipeline(seed=0).save_pretrained(root / "tiny-wan")
    ws = root / "ws"
    assert main(["pair", f"wan:{root / 'tiny-wan'}", f"{decoder}:{REFERENCE / f'{decoder}-tiny-a'}", "--resolution", "32x48",
                 "--decoder-resolution", "28x42", "--frames", "5", "--out", str(ws)]) == 0  # fmt: skip
    data = image_sequences(root / "data", ["a red sphere", "a blue cube"])
    assert main(["stitch", "--pair", str(ws), "--data", str(data), "--layer", "enc_blocks_2", "--steps", "0",
                 "--lora-rank", "2"]) == 0  # fmt: skip
    return ws


@pytest.fixture
def workspace(tmp_path_factory, entry_point_plugins):
    entry_point_plugins("vist3a_wan", "vist3a_vggt")
    return make_workspace(tmp_path_factory.mktemp("align"), "vggt")


def run(workspace, directory, config=CONFIG, on_step=None):
    pipeline = Vist3aPipeline.from_pair(workspace)  # a fresh generator: LoRA goes into its denoiser
    sampler = PromptSampler(["a red sphere", "a blue cube"], seed=1)
    return align(pipeline, {"brightness": (Brightness(), 1.0)}, sampler, config, directory, on_step=on_step)


def test_alignment_trains_the_lora_and_resumes_exactly(workspace, tmp_path):
    straight = run(workspace, tmp_path / "straight")
    assert len(straight.history) == 4 and straight.skipped == 0
    lora = load_file(tmp_path / "straight" / "lora" / "adapter_model.safetensors")
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in lora.items())  # trained away from zero
    ema = load_file(tmp_path / "straight" / "lora_ema" / "adapter_model.safetensors")
    assert lora.keys() == ema.keys() and any(not torch.equal(lora[k], ema[k]) for k in lora)

    def stop(step, record):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(workspace, tmp_path / "resumed", on_step=stop)
    resumed = run(workspace, tmp_path / "resumed")
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]
    again = load_file(tmp_path / "resumed" / "lora" / "adapter_model.safetensors")
    assert all(torch.equal(again[k], lora[k]) for k in lora)
    lines = (tmp_path / "resumed" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"step": i + 1, **r} for i, r in enumerate(straight.history)]
    assert (tmp_path / "resumed" / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_denoising_loss_on_captioned_clips(workspace, tmp_path):
    clips = open_clips(str(workspace.parent / "data"), frames=5, size=(32, 48))
    pipeline = Vist3aPipeline.from_pair(workspace)
    config = CONFIG.model_copy(update={"data_weight": 2.0, "steps": 2})
    state = align(pipeline, {}, PromptSampler(["x"]), config, tmp_path / "run", data=clips)
    assert all(r["loss"] == pytest.approx(2.0 * r["data"]) and r["data"] > 0 for r in state.history)
    lora = load_file(tmp_path / "run" / "lora" / "adapter_model.safetensors")
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in lora.items())  # the data term trained it

    uncaptioned = open_clips(str(image_sequences(tmp_path / "bare", [None])), frames=5, size=(32, 48))
    with pytest.raises(InputError, match="no captions"):
        align(pipeline, {}, PromptSampler(["x"]), config, tmp_path / "bare-run", data=uncaptioned)
    with pytest.raises(InputError, match="needs captioned clips"):
        align(pipeline, {}, PromptSampler(["x"]), config, tmp_path / "no-data")


def test_alignment_bad_input(workspace, tmp_path):
    pipeline = Vist3aPipeline.from_pair(workspace)
    with pytest.raises(InputError, match="at least one reward"):
        align(pipeline, {}, PromptSampler(["x"]), CONFIG, tmp_path)
    run(workspace, tmp_path / "a", config=CONFIG.model_copy(update={"steps": 2}))
    with pytest.raises(InputError, match="saved with other settings"):
        run(workspace, tmp_path / "a", config=CONFIG.model_copy(update={"lr": 0.5}))


def test_align_command(workspace, tmp_path, capsys, entry_point_plugins):
    from tests.fakes import FakePlugin

    entry_point_plugins("vist3a_wan", "vist3a_vggt").add(FakePlugin(), "fakes")
    (tmp_path / "prompts.txt").write_text("a red sphere\na blue cube\n")
    argv = ["align", "--pair", str(workspace), "--prompts", str(tmp_path / "prompts.txt"), "--reward", "fake-reward=1.0",
            "--out", str(tmp_path / "run"), "--steps", "2", "--min-steps", "2", "--max-steps", "2", "--grad-steps", "0",
            "--lora-rank", "2", "--gradient-checkpointing"]  # fmt: skip
    assert main(argv) == 0
    assert (tmp_path / "run" / "lora_ema" / "adapter_config.json").is_file()
    resumed = list(argv)
    resumed[resumed.index("--steps") + 1] = "3"
    assert main(resumed) == 0 and "Aligned for 3 steps" in capsys.readouterr().out  # its own run folder is accepted
    (tmp_path / "mine").mkdir()
    bad = {"--reward": "fake-reward", "--out": str(tmp_path / "mine"), "--max-steps": "1"}
    for option in ["fake-reward", "other.x=1", "fake-reward.bogus=1"]:
        assert main([*argv, "--reward-option", option]) == 2, option
    assert main([*argv, "--template", "no placeholder"]) == 2
    for flag, value in bad.items():
        broken = list(argv)
        broken[broken.index(flag) + 1] = value
        assert main(broken) == 2, flag
    err = capsys.readouterr().err
    assert "--reward 'fake-reward': expected NAME=WEIGHT" in err
    assert "exists and is not an alignment run" in err and "min_steps <= max_steps" in err
    assert "expected NAME.KEY=VALUE" in err and "'other' is not one of the --reward names" in err and "bogus" in err


def test_align_command_with_the_paper_consistency_reward(tmp_path, entry_point_plugins):
    """The real consistency reward on a stitched AnySplat, without LPIPS (lpips_weight=0 through --reward-option)."""
    entry_point_plugins("vist3a_wan", "vist3a_vggt", "vist3a_anysplat", "vist3a_rewards")
    workspace = make_workspace(tmp_path, "anysplat")
    (tmp_path / "prompts.txt").write_text("a red sphere\n")
    assert main(["align", "--pair", str(workspace), "--prompts", str(tmp_path / "prompts.txt"), "--out", str(tmp_path / "run"),
                 "--reward", "consistency=1.0", "--reward-option", "consistency.lpips_weight=0", "--steps", "1", "--template", "none",
                 "--min-steps", "2", "--max-steps", "2", "--grad-steps", "0", "--lora-rank", "2", "--lr", "0.01"]) == 0  # fmt: skip
    record = json.loads((tmp_path / "run" / "history.jsonl").read_text())
    assert record["consistency"] < 0 and record["loss"] == pytest.approx(-record["consistency"])


def torchrun_align(workspace: Path, tmp_path: Path, out: str, *extra: str) -> None:
    """``vist3a align`` under torchrun with two gloo processes; exactly one of them reports."""
    import os
    import socket
    import subprocess
    import sys

    (tmp_path / "prompts.txt").write_text("a red sphere\na blue cube\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(port), str(Path(__file__).with_name("distributed_align.py")), "align",
               "--pair", str(workspace), "--prompts", str(tmp_path / "prompts.txt"), "--reward", "fake-reward=1.0",
               "--out", str(tmp_path / out), "--steps", "2", "--min-steps", "2", "--max-steps", "2", "--grad-steps", "0",
               "--lora-rank", "2", *extra]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("Aligned for 2 steps") == 1


@pytest.mark.slow
def test_two_process_alignment_ddp_and_fsdp_agree(workspace, tmp_path):
    """Two processes with averaged gradients (DDP) and with the denoiser sharded (FSDP) train the same LoRA."""
    torchrun_align(workspace, tmp_path, "ddp")
    torchrun_align(workspace, tmp_path, "fsdp", "--fsdp")
    for folder in ("lora", "lora_ema"):
        ddp = load_file(tmp_path / "ddp" / folder / "adapter_model.safetensors")
        fsdp = load_file(tmp_path / "fsdp" / folder / "adapter_model.safetensors")
        assert ddp.keys() == fsdp.keys() and any(v.abs().sum() > 0 for k, v in ddp.items() if "lora_B" in k)
        for key in ddp:
            torch.testing.assert_close(fsdp[key], ddp[key], atol=1e-5, rtol=1e-4)


class Depth:
    """Mean predicted depth: a toy reward on the stitched decoder's 3D output ("push the scene away")."""

    name = "depth"

    def __call__(self, *, prompts, frames=None, renders=None, decoded=None):
        return decoded.points.depth.flatten(1).mean(dim=1)


def test_reward_rises_and_generate_uses_the_lora(workspace, tmp_path, capsys):
    """Thirty steps on a toy 3D reward: it rises, and `vist3a generate --lora` samples scenes that score higher."""
    config = CONFIG.model_copy(update={"steps": 30, "checkpoint_every": 30, "lr": 3e-2})
    sampler = PromptSampler(["a red sphere", "a blue cube"], seed=1)
    state = align(Vist3aPipeline.from_pair(workspace), {"depth": (Depth(), 1.0)}, sampler, config, tmp_path / "run")
    rewards = [r["depth"] for r in state.history]
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.01, rewards

    def mean_depth(*lora: str) -> float:
        out = tmp_path / f"gen{len(lora)}"
        assert main(["generate", "a red sphere", "--pair", str(workspace), "--steps", "3", "--render-frames", "2",
                     "--seed", "3", "--out", str(out), *lora]) == 0  # fmt: skip
        return float(numpy.load(out / "depth.npz")["depth"].mean())

    assert mean_depth("--lora", str(tmp_path / "run" / "lora_ema")) > mean_depth() + 0.005
    capsys.readouterr()


class Unstable(Brightness):
    """The toy reward, except that it is NaN at the second call."""

    calls = 0

    def __call__(self, **inputs):
        Unstable.calls += 1
        score = super().__call__(**inputs)
        return score * float("nan") if Unstable.calls == 2 else score


def test_non_finite_steps_are_skipped(workspace, tmp_path):
    def weights(step, record):
        lora = dict(pipeline.generator.trainable().named_parameters())
        snapshots.append({k: v.detach().clone() for k, v in lora.items() if "lora_B" in k})

    pipeline, snapshots = Vist3aPipeline.from_pair(workspace), []
    state = align(pipeline, {"unstable": (Unstable(), 1.0)}, PromptSampler(["x"]), CONFIG.model_copy(update={"steps": 3}),
                  tmp_path / "run", on_step=weights)  # fmt: skip
    assert state.skipped == 1 and not torch.isfinite(torch.tensor(state.history[1]["loss"]))
    assert all(torch.equal(snapshots[1][k], snapshots[0][k]) for k in snapshots[0])  # the NaN step changed nothing
    assert any(not torch.equal(snapshots[2][k], snapshots[1][k]) for k in snapshots[0])
