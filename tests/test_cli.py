"""The command line: output, exit codes and one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vist3a import __version__
from vist3a.cli import main
from vist3a.errors import Vist3aError
from vist3a.hookspecs import hookimpl


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, code: int, expected_code: int, text: str) -> None:
    assert code == expected_code
    assert err.count("\n") == 1 and err.startswith("Error: ") and "Traceback" not in err
    assert text in err


def test_version(capsys):
    assert run(capsys, "--version") == (0, f"vist3a {__version__}\n", "")


def test_plugins_lists_the_fake_plugin(capsys):
    code, out, _ = run(capsys, "plugins", "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert row["name"] == "fakes" and row["error"] is None
    assert row["provides"] == {
        "generators": ["fake-generator"],
        "decoders": ["fake-decoder"],
        "rewards": ["fake-reward"],
        "data_sources": ["synthetic"],
        "commands": ["fake-hello"],
    }
    code, out, _ = run(capsys, "plugins")
    assert code == 0 and "fake-generator" in out and "loaded" in out


def test_registry_reports_installed_status(capsys, tmp_path):
    user = tmp_path / "r.yaml"
    user.write_text("rewards:\n  mine:\n    plugin: fakes\n    spec: fake-reward\n    licence: CC0\n")
    code, out, _ = run(capsys, "registry", "--json", "--registry", str(user))
    assert code == 0
    data = json.loads(out)
    rewards = {r["id"]: r["installed"] for r in data["rewards"]}
    assert rewards["mine"] is True and rewards["clip-vit-l-14"] is False  # only the fake plugin is loaded here
    wan = next(r for r in data["generators"] if r["id"] == "wan2.1-t2v-1.3b")
    assert not wan["installed"] and "vist3a_wan" in wan["status"]
    code, out, _ = run(capsys, "registry")
    assert code == 0 and "wan2.1-t2v-1.3b+anysplat" in out


def test_registry_from_environment(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VIST3A_REGISTRY", str(tmp_path / "missing.yaml"))
    code, _, err = run(capsys, "registry")
    assert_one_line_error(err, code, 2, "missing.yaml: no such file")


def test_bad_registry_file_is_exit_2_with_line(capsys, tmp_path):
    user = tmp_path / "r.yaml"
    user.write_text("generators:\n  g:\n    plugin: p\n    spec: s\n    licence: l\n    colour: red\n")
    code, _, err = run(capsys, "registry", "--registry", str(user))
    assert_one_line_error(err, code, 2, "r.yaml:6: generators.g.colour: unknown field")


@pytest.mark.parametrize(
    ("argv", "text"),
    [(["nope"], "No such command 'nope'"), (["plugins", "--jsn"], "No such option: --jsn"), (["registry", "extra"], "unexpected extra argument")],
)
def test_usage_errors_are_exit_2(capsys, argv, text):
    code, _, err = run(capsys, *argv)
    assert_one_line_error(err, code, 2, text)


def test_plugin_command_runs(capsys):
    assert run(capsys, "fake-hello", "--name", "vist3a") == (0, "hello vist3a\n", "")


def _command_plugin(body):
    class Plugin:
        @hookimpl
        def register_commands(self, app):
            app.command(name="boom")(body)

    return Plugin()


def test_plugin_command_clash_is_exit_2(capsys, plugins):
    class Clash:
        @hookimpl
        def register_commands(self, app):
            app.command(name="plugins")(lambda: None)

    plugins.add(Clash(), "clash")
    code, _, err = run(capsys, "--version")
    assert_one_line_error(err, code, 2, "plugin 'clash' adds the command 'plugins', which 'vist3a' already provides")


def test_run_failure_is_exit_1_and_debug_shows_traceback(capsys, plugins, monkeypatch):
    def boom() -> None:
        raise Vist3aError("the run failed\nhalfway")

    plugins.add(_command_plugin(boom), "boom")
    code, _, err = run(capsys, "boom")
    assert_one_line_error(err, code, 1, "Error: the run failed halfway")
    monkeypatch.setenv("VIST3A_DEBUG", "1")
    code, _, err = run(capsys, "boom")
    assert code == 1 and "Traceback" in err and err.endswith("Error: the run failed halfway\n")


def test_unexpected_exception_is_one_line_exit_1(capsys, plugins):
    def crash() -> None:
        raise ZeroDivisionError("division by zero")

    plugins.add(_command_plugin(crash), "crash")
    code, _, err = run(capsys, "boom")
    assert_one_line_error(err, code, 1, "ZeroDivisionError: division by zero")


def test_interrupt_is_one_line_exit_130(capsys, plugins):
    def interrupted() -> None:
        raise KeyboardInterrupt

    plugins.add(_command_plugin(interrupted), "interrupted")
    code, _, err = run(capsys, "boom")
    assert_one_line_error(err, code, 130, "Error: interrupted")


def test_console_script_exit_codes():
    """The installed ``vist3a`` script, as a user runs it (no plugins loaded)."""
    env = {"VIST3A_PLUGINS": "", "PATH": str(Path(sys.executable).parent)}
    ok = subprocess.run(["vist3a", "--version"], capture_output=True, text=True, env=env)
    assert (ok.returncode, ok.stdout) == (0, f"vist3a {__version__}\n")
    bad = subprocess.run(["vist3a", "registry", "--registry", "/nonexistent.yaml"], capture_output=True, text=True, env=env)
    assert (bad.returncode, bad.stderr) == (2, "Error: /nonexistent.yaml: no such file\n")
