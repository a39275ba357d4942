"""The ``synthetic`` data source through open_clips: clips, captions, ground truth and bad arguments."""

import pytest
import torch
from vist3a_synth.captions import caption
from vist3a_synth.world import HELD_OUT, sample_scene

from vist3a.errors import InputError
from vist3a.io.clips import caption_of, open_clips
from vist3a.io.export import read_cameras_json


def test_synthetic_clips_are_deterministic_and_move():
    a, b = open_clips("synthetic:3", frames=5, size=(32, 40), seed=1), open_clips("synthetic:3", frames=5, size=(32, 40), seed=1)
    assert len(a) == 3 and torch.equal(a[2], b[2])
    assert a[0].shape == (3, 5, 32, 40) and a[0].min() >= -1 and a[0].max() <= 1
    assert not torch.equal(a[0][:, 0], a[0][:, -1]) and not torch.equal(a[0], a[1])
    assert not torch.equal(a[0], open_clips("synthetic:1", frames=5, size=(32, 40), seed=2)[0])


def test_scenes_captions_and_splits():
    clips = open_clips("synthetic:4:test", frames=2, size=(16, 16), seed=3)
    assert clips.scene(1) == sample_scene(3 * 1_000_000 + 1, "test")  # the documented seed rule
    assert caption_of(clips, 1) == caption(clips.scene(1))
    assert all({(o.colour, o.shape) for o in clips.scene(i).objects} & HELD_OUT for i in range(4))
    assert open_clips("synthetic:2", frames=2, size=(16, 16)).scene(0).split == "train"
    assert open_clips("synthetic:2:val", frames=2, size=(16, 16)).scene(0).split == "val"
    with pytest.raises(IndexError):
        clips.scene(4)


def test_sample_holds_consistent_ground_truth(tmp_path):
    clips = open_clips("synthetic:2", frames=3, size=(24, 32))
    sample = clips.sample(1)
    assert torch.equal(sample.frames, clips[1]) and sample.caption == clips.caption(1)
    assert sample.depth.shape == sample.ids.shape == (3, 24, 32) and sample.ids.dtype == torch.int64
    assert sample.intrinsics.shape == (3, 3, 3) and sample.extrinsics.shape == (3, 4, 4)
    assert torch.equal(sample.valid, sample.depth > 0) and sample.valid.any()
    assert set(sample.ids.unique().tolist()) <= set(range(len(sample.scene.objects) + 1))
    sky = ~sample.valid  # sky pixels show the sky colour
    assert torch.allclose(sample.frames.permute(1, 2, 3, 0)[sky], torch.tensor([0.62, 0.76, 0.93]) * 2 - 1, atol=1e-6)
    from vist3a.io.export import write_cameras_json

    cameras = read_cameras_json(write_cameras_json(tmp_path / "cameras.json", sample.cameras))
    assert torch.allclose(cameras.extrinsics[0], sample.extrinsics, atol=1e-5)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("synthetic:0", r"expected synthetic:N\[:train\|val\|test\] with 1 <= N <= 1,000,000"),
        ("synthetic:x", "invalid data source 'synthetic:x'"),
        ("synthetic:", "invalid data source 'synthetic:'"),
        ("synthetic:3:bogus", "invalid data source 'synthetic:3:bogus'"),
        ("synthetic:1000001", "1 <= N <= 1,000,000"),
        ("synthetix:3", r"no plugin provides the scheme 'synthetix'; known: synthetic \(synthetic:N\[:train\|val\|test\]\)"),
    ],
)
def test_bad_sources(source, message):
    with pytest.raises(InputError, match=message):
        open_clips(source, frames=5, size=(16, 16))
