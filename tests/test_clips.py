"""Clip data: image folders, videos, synthetic scenes, resizing, and bad sources."""

import pytest
import torch
from PIL import Image

from vist3a.errors import InputError
from vist3a.io.clips import open_clips, resize_crop
from vist3a.io.video import write_video


def _image_folder(root, n, shape=(24, 40)):
    root.mkdir(parents=True)
    for i in range(n):  # frame i is uniformly grey level 10 * i
        Image.new("RGB", (shape[1], shape[0]), (10 * i,) * 3).save(root / f"{i:03d}.png")


def test_image_folders_give_ordered_windows(tmp_path):
    _image_folder(tmp_path / "data" / "scene_a", 11)
    _image_folder(tmp_path / "data" / "scene_b", 4)  # too short for one window
    clips = open_clips(str(tmp_path / "data"), frames=5, size=(16, 16), step=2)
    assert len(clips) == 1  # 11 frames hold one window spanning 9
    clip = clips[0]
    assert clip.shape == (3, 5, 16, 16)
    levels = ((clip[0, :, 0, 0] + 1) * 127.5).round()
    assert levels.tolist() == [0.0, 20.0, 40.0, 60.0, 80.0]


def test_videos(tmp_path):
    (tmp_path / "videos").mkdir()
    frames = torch.linspace(-1, 1, 9)[:, None, None, None].expand(9, 3, 32, 48)
    write_video(tmp_path / "videos" / "a.mp4", frames)
    clips = open_clips(str(tmp_path / "videos"), frames=4, size=(16, 24))
    assert len(clips) == 2 and clips[1].shape == (3, 4, 16, 24)
    means = clips[1].mean(dim=(0, 2, 3))
    assert torch.all(means[1:] > means[:-1])  # later windows, brighter frames, in order


def test_gif_videos_and_the_mp4_fallback(tmp_path, monkeypatch):
    frames = torch.linspace(-1, 1, 4)[:, None, None, None].expand(4, 3, 8, 8)
    gif = write_video(tmp_path / "a.gif", frames)
    with Image.open(gif) as image:
        assert image.n_frames == 4 and image.size == (8, 8)

    def no_ffmpeg(*args):
        raise ImportError("no module named av")

    monkeypatch.setattr("vist3a.io.video._write_mp4", no_ffmpeg)
    assert write_video(tmp_path / "b.mp4", frames) == tmp_path / "b.gif" and (tmp_path / "b.gif").is_file()


def test_resize_crop_covers_then_centres():
    frames = torch.zeros(2, 3, 20, 40, dtype=torch.uint8)
    frames[..., 10:30] = 255  # a bright centre band
    out = resize_crop(frames, (10, 10))
    assert out.shape == (3, 2, 10, 10)
    assert torch.allclose(out[..., 1:-1], torch.ones(3, 2, 10, 8))  # the dark sides were cropped away
    assert out[..., [0, -1]].min() > 0


def test_synthetic_clips_are_deterministic_and_move():
    a, b = open_clips("synthetic:3", frames=5, size=(32, 32), seed=1), open_clips("synthetic:3", frames=5, size=(32, 32), seed=1)
    assert len(a) == 3 and torch.equal(a[2], b[2])
    assert a[0].shape == (3, 5, 32, 32) and a[0].min() >= -1 and a[0].max() <= 1
    assert not torch.equal(a[0][:, 0], a[0][:, -1]) and not torch.equal(a[0], a[1])


@pytest.mark.parametrize(
    ("source", "message"),
    [("synthetic:x", "expected synthetic:N"), ("synthetic:0", "expected synthetic:N"), ("/nonexistent/data", "no such data folder")],
)
def test_bad_sources(source, message):
    with pytest.raises(InputError, match=message):
        open_clips(source, frames=5, size=(16, 16))


def test_empty_folder_and_unreadable_video(tmp_path):
    with pytest.raises(InputError, match="no video or image folder with at least 5 frames"):
        open_clips(str(tmp_path), frames=5, size=(16, 16))
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(InputError, match="bad.mp4: not a readable video"):
        open_clips(str(tmp_path), frames=5, size=(16, 16))
