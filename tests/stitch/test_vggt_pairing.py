"""The stitching commands on a real decoder: the tiny VGGT reference checkpoint behind the fake generator."""

import json
from pathlib import Path

import pytest

from tests.fakes import FakePlugin
from vist3a.cli import main
from vist3a.stitch import jobs

VGGT_TINY = Path(__file__).parents[2].parent / "shared" / "reference" / "vggt-tiny-a"


@pytest.fixture
def workspace(tmp_path, entry_point_plugins):
    entry_point_plugins("vist3a_vggt").add(FakePlugin(), "fakes")
    argv = ["pair", "fake-generator", f"vggt:{VGGT_TINY}", "--resolution", "20x28", "--decoder-resolution", "28x42",
            "--frames", "5", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    return tmp_path


@pytest.mark.slow
def test_pair_sweep_and_distil_vggt(workspace, capsys):
    assert "enc_blocks_2" in (workspace / "pair.yaml").read_text()
    assert main(["sweep-layers", "--pair", str(workspace), "--data", "synthetic:5", "--clips", "5"]) == 0
    report = json.loads((workspace / "sweep.json").read_text())
    assert [layer["name"] for layer in report["layers"]] == ["enc_blocks_1", "enc_blocks_2"]
    assert report["heldout_clips"] == 1

    def stitch(steps):
        argv = ["stitch", "--pair", str(workspace), "--data", "synthetic:3", "--steps", str(steps), "--lr", "1e-4",
                "--warmup", "0", "--lora-rank", "4", "--overwrite"]  # fmt: skip
        assert main(argv) == 0
        return sum(jobs.evaluate(workspace, "synthetic:3", 3).values())

    closed_form_only = stitch(0)
    distilled = stitch(8)
    assert distilled < closed_form_only
    capsys.readouterr()
