"""Clip data: image folders, videos, registered data sources, captions, resizing, and bad sources."""

import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset

from vist3a.errors import InputError
from vist3a.hookspecs import hookimpl
from vist3a.io.clips import FolderClips, caption_of, open_clips, resize_crop
from vist3a.io.video import write_video
from vist3a.specs import DataSourceSpec


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


class _Constant(Dataset):
    """A registered source's dataset: ``const:V`` gives two clips of value V (and remembers how it was opened)."""

    def __init__(self, arg, **options):
        if not arg.lstrip("-").replace(".", "", 1).isdigit():
            raise InputError(f"invalid data source 'const:{arg}'; expected const:VALUE")
        self.value, self.options = float(arg), options

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return torch.full((3, self.options["frames"], *self.options["size"]), self.value)


class _ConstantPlugin:
    @hookimpl
    def register_data_sources(self, register):
        register(DataSourceSpec("const", _Constant, "const:VALUE"))


@pytest.fixture
def const(plugins):
    plugins.add(_ConstantPlugin(), "const")
    return plugins


def test_a_registered_scheme_opens_through_its_plugin(const):
    clips = open_clips("const:0.5", frames=3, size=(4, 6), step=2, seed=7)
    assert isinstance(clips, _Constant) and clips.options == {"frames": 3, "size": (4, 6), "step": 2, "seed": 7}
    assert torch.equal(clips[1], torch.full((3, 3, 4, 6), 0.5))
    with pytest.raises(InputError, match="expected const:VALUE"):
        open_clips("const:bright", frames=3, size=(4, 6))


def test_unknown_scheme_lists_the_known_ones(const):
    with pytest.raises(InputError, match=r"no plugin provides the scheme 'nosuch'; known: const \(const:VALUE\); synthetic"):
        open_clips("nosuch:3", frames=5, size=(16, 16))


def test_an_existing_path_with_a_colon_is_a_folder(tmp_path, const):
    _image_folder(tmp_path / "const:1" / "scene", 3)
    clips = open_clips(str(tmp_path / "const:1"), frames=3, size=(8, 8))
    assert isinstance(clips, FolderClips) and len(clips) == 1


@pytest.mark.parametrize(("source", "message"), [("/nonexistent/data", "no such data folder"), ("C:/data", "no such data folder")])
def test_bad_sources(source, message):
    with pytest.raises(InputError, match=message):
        open_clips(source, frames=5, size=(16, 16))


def test_sidecar_captions(tmp_path):
    _image_folder(tmp_path / "data" / "a_images", 3)
    (tmp_path / "data" / "a_images" / "caption.txt").write_text("  a red sphere\n")
    _image_folder(tmp_path / "data" / "b_images", 3)  # no caption
    frames = torch.zeros(3, 3, 8, 8)
    write_video(tmp_path / "data" / "c.mp4", frames)
    (tmp_path / "data" / "c.txt").write_text("a blue cube\n")
    write_video(tmp_path / "data" / "d.mp4", frames)
    clips = open_clips(str(tmp_path / "data"), frames=3, size=(8, 8))
    assert [caption_of(clips, i) for i in range(4)] == ["a red sphere", None, "a blue cube", None]
    assert caption_of(Subset(clips, [2, 0]), 0) == "a blue cube"


def test_a_dataset_without_captions_has_none(const):
    assert caption_of(open_clips("const:1", frames=1, size=(2, 2)), 0) is None


def test_empty_folder_and_unreadable_video(tmp_path):
    with pytest.raises(InputError, match="no video or image folder with at least 5 frames"):
        open_clips(str(tmp_path), frames=5, size=(16, 16))
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(InputError, match="bad.mp4: not a readable video"):
        open_clips(str(tmp_path), frames=5, size=(16, 16))
