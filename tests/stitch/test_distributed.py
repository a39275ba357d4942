"""Two CPU processes (torchrun, gloo): the sweep's statistics are all-reduced and the distillation runs in DDP."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.stitch.test_commands import PAIR
from vist3a.cli import main
from vist3a.io.checkpoint import load_state_dict
from vist3a.stitch.stitched import StitchedDecoder

JOB = Path(__file__).with_name("distributed_job.py")


def torchrun(*argv) -> subprocess.CompletedProcess:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(port), str(JOB), *map(str, argv)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def twin_workspaces(tmp_path: Path, first: str, second: str) -> tuple[Path, Path]:
    """Two workspaces holding the same pair.yaml."""
    a, b = tmp_path / first, tmp_path / second
    assert main([*PAIR, "--out", str(a)]) == 0
    b.mkdir()
    shutil.copy(a / "pair.yaml", b / "pair.yaml")
    return a, b


@pytest.mark.slow
def test_two_process_sweep_equals_one_process_and_ddp_distillation(tmp_path):
    single, double = twin_workspaces(tmp_path, "single", "double")
    sweep = ["sweep-layers", "--data", "synthetic:6", "--clips", "6"]
    assert main([*sweep, "--pair", str(single)]) == 0
    result = torchrun(*sweep, "--pair", double)
    assert result.returncode == 0, result.stderr[-2000:]
    shares = [load_state_dict(double / f"sweep_state.rank{r}.safetensors") for r in (0, 1)]
    whole = load_state_dict(single / "sweep_state.safetensors")
    for key, value in whole.items():  # each process accumulated its own clips; together they hold every clip
        assert torch.allclose(shares[0][key] + shares[1][key], value, rtol=1e-10, atol=1e-12), key
    assert 0 < shares[0]["0.fit.rows"] < whole["0.fit.rows"]
    assert load_state_dict(double / "sweep_fits.safetensors").keys() == load_state_dict(single / "sweep_fits.safetensors").keys()

    result = torchrun("stitch", "--pair", double, "--data", "synthetic:4", "--steps", "3", "--warmup", "1", "--lora-rank", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("Stitched decoder saved to") == 1  # only the main process reports
    assert StitchedDecoder.from_pretrained(double / "stitched").config.stitch_point


@pytest.mark.slow
def test_killed_sweep_resumes_to_the_same_statistics(tmp_path):
    """SIGKILL a real sweep process once it has checkpointed, rerun it, and compare with an uninterrupted sweep."""
    whole, killed = twin_workspaces(tmp_path, "whole", "killed")
    sweep = ["sweep-layers", "--data", "synthetic:48", "--clips", "48"]
    assert main([*sweep, "--pair", str(whole)]) == 0

    command = [sys.executable, str(JOB), *sweep, "--pair", str(killed)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = killed / "sweep_state.safetensors"
    while not state.exists() and process.poll() is None:
        time.sleep(0.02)
    process.kill()
    assert process.wait() == -signal.SIGKILL, "the sweep finished before it could be killed"
    assert not (killed / "sweep.json").exists()
    assert subprocess.run(command, capture_output=True).returncode == 0
    one, two = load_state_dict(whole / "sweep_fits.safetensors"), load_state_dict(killed / "sweep_fits.safetensors")
    assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)
