"""``vist3a synth preview`` and the ``synthetic`` source through the installed plugin and the real CLI."""

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from vist3a.cli import main
from vist3a.commands.plugins import plugin_rows
from vist3a.io.clips import open_clips
from vist3a.io.export import read_cameras_json


def test_the_installed_plugin_provides_the_source_and_the_command(entry_point_plugins):
    (row,) = plugin_rows(entry_point_plugins("vist3a_synth"))
    assert row["provides"]["data_sources"] == ["synthetic"] and row["provides"]["commands"] == ["synth"]
    assert {"register_commands", "register_data_sources"} <= set(row["hooks"])  # the world's models add other hooks
    assert len(open_clips("synthetic:2:val", frames=3, size=(16, 16))) == 2


def test_preview(entry_point_plugins, tmp_path, capsys):
    entry_point_plugins("vist3a_synth")
    out = tmp_path / "preview"
    assert main(["synth", "preview", "--split", "test", "--count", "2", "--frames", "3", "--size", "24", "--out", str(out)]) == 0
    clips = open_clips("synthetic:2:test", frames=3, size=(24, 24))
    for i in range(2):
        folder = out / f"scene_{i:03d}"
        assert (folder / "caption.txt").read_text() == clips.caption(i) + "\n"
        assert (folder / "video.mp4").is_file() or (folder / "video.gif").is_file()
        with Image.open(folder / "depth.png") as depth:
            assert depth.size == (3 * 24, 24)
        assert read_cameras_json(folder / "cameras.json").extrinsics.shape == (1, 3, 4, 4)
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.size[0] == 3 * 24 and sheet.size[1] > 2 * 24
    assert "Wrote 2 scenes" in capsys.readouterr().out


def test_preview_bad_input(entry_point_plugins, tmp_path, capsys):
    entry_point_plugins("vist3a_synth")
    (tmp_path / "file").write_text("")
    for args, message in [
        (["--count", "0"], "Invalid value for '--count'"),
        (["--split", "bogus"], "Invalid value for '--split'"),
        (["--out", str(tmp_path / "file")], "exists and is not a folder"),
    ]:
        argv = ["synth", "preview", "--out", str(tmp_path / "p"), *args]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.startswith("Error:") and err.count("\n") == 1


def test_the_real_cli(tmp_path):
    """The installed ``vist3a`` console script, as a user runs it."""
    env = {**os.environ, "VIST3A_PLUGINS": "vist3a_synth", "PATH": str(Path(sys.executable).parent)}
    ran = subprocess.run(["vist3a", "synth", "preview", "--count", "1", "--frames", "2", "--size", "16", "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "scene_000" / "caption.txt").is_file() and "Wrote 1 scenes" in ran.stdout
