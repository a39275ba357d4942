"""`vist3a pair`, `sweep-layers` and `stitch` end to end on the fake pairing, and their bad-input paths."""

import json

import pytest

from vist3a.cli import main
from vist3a.stitch.stitched import StitchedDecoder

PAIR = ["pair", "fake-generator", "fake-decoder", "--resolution", "16", "--decoder-resolution", "16", "--frames", "5"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def workspace(tmp_path, capsys):
    code, out, err = run(capsys, *PAIR, "--out", tmp_path)
    assert code == 0, err
    return tmp_path


def test_pair_writes_the_workspace(workspace, capsys):
    text = (workspace / "pair.yaml").read_text()
    assert "block_1" in text and "conv3d_k5x3x3_o8_s1x1x1_p2x1x1" in text
    code, _, err = run(capsys, *PAIR, "--out", workspace)
    assert code == 2 and "pair.yaml already exists; pass --overwrite" in err


def test_sweep_then_stitch_then_eval(workspace, capsys):
    code, out, err = run(capsys, "sweep-layers", "--pair", workspace, "--data", "synthetic:6", "--clips", "6")
    assert code == 0, err
    report = json.loads((workspace / "sweep.json").read_text())
    assert [layer["name"] for layer in report["layers"]] == ["block_1", "block_2", "block_3"]
    assert report["best"] in out and (workspace / "sweep.png").stat().st_size > 1000
    assert set(report["layers"][0]) == {"name", "mse", "relative_mse", "cka", "fit_mse", "fit_relative_mse"}

    args = ("stitch", "--pair", workspace, "--data", "synthetic:4", "--clips", "4", "--steps", "4", "--warmup", "1", "--lora-rank", "2")
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert "Stitched decoder saved to" in out and (workspace / "stitch_loss.png").is_file()
    stitched = StitchedDecoder.from_pretrained(workspace / "stitched")
    assert stitched.config.stitch_point == report["best"] and stitched.config.lora.rank == 2

    code, _, err = run(capsys, *args)
    assert code == 2 and "stitched already exists; pass --overwrite" in err
    lora_b = {k: v for k, v in stitched.state_dict().items() if "lora_B" in k}
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b.values())  # trained for 4 steps
    code, _, err = run(capsys, *args[:-6], "--steps", "0", "--lora-rank", "2", "--overwrite")  # a new run, not a resume
    assert code == 0, err
    fresh = StitchedDecoder.from_pretrained(workspace / "stitched").state_dict()
    assert all(fresh[k].abs().sum() == 0 for k in lora_b)
    code, out, err = run(capsys, "stitch", "--pair", workspace, "--data", "synthetic:2", "--eval")
    assert code == 0 and "depth" in out, err


def test_stitch_at_a_named_layer_without_a_sweep(workspace, capsys):
    code, _, err = run(capsys, "stitch", "--pair", workspace, "--data", "synthetic:3", "--layer", "block_3", "--steps", "2", "--warmup", "0")
    assert code == 0, err
    assert StitchedDecoder.from_pretrained(workspace / "stitched").config.stitch_point == "block_3"
    code, _, err = run(capsys, "stitch", "--pair", workspace, "--data", "synthetic:3", "--layer", "block_9", "--overwrite")
    assert code == 2 and "unknown stitch point 'block_9'; this pairing has block_1, block_2, block_3" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--frames", "6"], "6 frames do not follow fake-generator's frame rule 4k+1; use 9"),
        (["--resolution", "8"], "incompatible pair fake-generator+fake-decoder: stitch point 'block_1' needs a 4-token grid"),
        (["--resolution", "abc"], "invalid resolution 'abc'"),
    ],
)
def test_pair_bad_input(tmp_path, capsys, extra, message):
    code, _, err = run(capsys, *PAIR, *extra, "--out", tmp_path)
    assert code == 2 and message in err and err.count("\n") == 1


def test_pair_unknown_components_and_paths(tmp_path, capsys):
    code, _, err = run(capsys, "pair", "nope", "fake-decoder", "--out", tmp_path)
    assert code == 2 and "no registry pairing for nope+fake-decoder" in err
    code, _, err = run(capsys, "pair", "fake-generator:/no/such/dir", "fake-decoder", "--out", tmp_path)
    assert code == 2 and "no such checkpoint /no/such/dir" in err


def test_gradient_checkpointing_needs_decoder_support(workspace, capsys):
    argv = ["stitch", "--pair", workspace, "--data", "synthetic:2", "--layer", "block_1", "--steps", "1", "--gradient-checkpointing"]
    code, _, err = run(capsys, *argv)
    assert code == 2 and "fake-decoder does not support gradient checkpointing" in err


def test_commands_need_a_valid_workspace(tmp_path, capsys, workspace):
    code, _, err = run(capsys, "sweep-layers", "--pair", tmp_path / "empty", "--data", "synthetic:2")
    assert code == 2 and "no pairing workspace here" in err
    (workspace / "pair.yaml").write_text((workspace / "pair.yaml").read_text().replace("frames: 5", "frames: five"))
    code, _, err = run(capsys, "sweep-layers", "--pair", workspace, "--data", "synthetic:2")
    assert code == 2 and "pair.yaml:" in err and "frames: Input should be a valid integer" in err


def test_sweep_bad_data(workspace, capsys, tmp_path):
    (tmp_path / "data").mkdir()
    code, _, err = run(capsys, "sweep-layers", "--pair", workspace, "--data", tmp_path / "data")
    assert code == 2 and "no video or image folder with at least 5 frames" in err
    code, _, err = run(capsys, "sweep-layers", "--pair", workspace, "--data", "synthetic:2", "--criterion", "accuracy")
    assert code == 2 and "accuracy" in err
