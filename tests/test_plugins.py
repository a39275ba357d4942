"""The plugin system: hooks, specs, discovery through entry points, restriction, tracing, failures."""

import importlib
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vist3a import hookspecs
from vist3a.commands.plugins import plugin_rows
from vist3a.config import ComponentConfig
from vist3a.errors import PluginError, UnknownPluginError
from vist3a.hookspecs import hookimpl
from vist3a.plugins import Plugins, get_plugins, set_plugins
from vist3a.specs import DataSourceSpec, DecoderSpec, GeneratorSpec, RewardSpec

HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("register_"))


def _plugin(hook: str, *specs):
    """A plugin object whose ``hook`` registers ``specs``."""

    class Plugin:
        pass

    def impl(register):
        for spec in specs:
            register(spec)

    setattr(Plugin, hook, staticmethod(hookimpl(impl)))
    return Plugin()


def _fresh(*plugins) -> Plugins:
    fresh = Plugins()
    for i, plugin in enumerate(plugins):
        fresh.add(plugin, f"p{i}")
    return fresh


def test_every_hook_has_a_test():
    tested = {name[len("test_hook_") :] for name in globals() if name.startswith("test_hook_")}
    assert set(HOOKS) <= tested, f"hooks without a test: {set(HOOKS) - tested}"


def test_hook_register_generators(plugins):
    found = plugins.registrations("generators")
    assert found["fake-generator"].plugin == "fakes"
    assert isinstance(found["fake-generator"].spec, GeneratorSpec)


def test_hook_register_decoders(plugins):
    assert plugins.registrations("decoders")["fake-decoder"].spec.config.__name__ == "FakeConfig"


def test_hook_register_rewards(plugins):
    assert list(plugins.registrations("rewards")) == ["fake-reward"]


def test_hook_register_data_sources(plugins):
    (scheme,) = plugins.data_sources()
    registration = plugins.data_sources()[scheme]
    assert (scheme, registration.plugin, registration.spec.scheme) == ("synthetic", "fakes", "synthetic")
    assert isinstance(registration.spec, DataSourceSpec) and callable(registration.spec.open)


def test_hook_register_commands(plugins):
    import typer

    app = typer.Typer()
    for _, call in plugins.hook_callers("register_commands"):
        call(app=app)
    assert [c.name for c in app.registered_commands] == ["fake-hello"]


def test_hooks_listed_per_plugin(plugins):
    assert plugins.infos["fakes"].hooks == HOOKS


def test_duplicate_name_names_both_plugins():
    spec = RewardSpec("dup", "d", lambda c: None)
    plugins = _fresh(_plugin("register_rewards", spec), _plugin("register_rewards", spec))
    with pytest.raises(PluginError, match="'dup' is registered by both 'p0' and 'p1'"):
        plugins.registrations("rewards")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (RewardSpec("r", "d", lambda c: None), "register_generators expects a GeneratorSpec"),
        (GeneratorSpec("Bad Name", "d", lambda c: None), "invalid name 'Bad Name'"),
        (GeneratorSpec("g", "d", lambda c: None, config=dict), "must subclass vist3a.config.ComponentConfig"),
        (GeneratorSpec("g", "d", "not callable"), "factory is not callable"),
        (object(), "expects a GeneratorSpec"),
    ],
)
def test_invalid_registration_is_rejected_with_the_plugin_name(spec, message):
    plugins = _fresh(_plugin("register_generators", spec))
    with pytest.raises(PluginError, match=rf"plugin 'p0'.*{re.escape(message)}"):
        plugins.registrations("generators")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (RewardSpec("r", "d", lambda c: None), "register_data_sources expects a DataSourceSpec"),
        (DataSourceSpec("Web", lambda arg, **kw: None, "web:URL"), "invalid scheme 'Web'"),
        (DataSourceSpec("c", lambda arg, **kw: None, "c:X"), "invalid scheme 'c'"),  # one letter reads as a drive
        (DataSourceSpec("a:b", lambda arg, **kw: None, "a:b"), "invalid scheme 'a:b'"),
        (DataSourceSpec("web", "not callable", "web:URL"), "'web'.open is not callable"),
    ],
)
def test_invalid_data_source_is_rejected_with_the_plugin_name(spec, message):
    plugins = _fresh(_plugin("register_data_sources", spec))
    with pytest.raises(PluginError, match=rf"plugin 'p0'.*{re.escape(message)}"):
        plugins.data_sources()


def test_duplicate_scheme_names_both_plugins():
    spec = DataSourceSpec("web", lambda arg, **kw: None, "web:URL")
    plugins = _fresh(_plugin("register_data_sources", spec), _plugin("register_data_sources", spec))
    with pytest.raises(PluginError, match="data source 'web' is registered by both 'p0' and 'p1'"):
        plugins.data_sources()


def test_a_crashing_hook_is_attributed_to_its_plugin():
    class Crash:
        @hookimpl
        def register_decoders(self, register):
            raise KeyError("oops")

    with pytest.raises(PluginError, match="plugin 'p0' failed in register_decoders: KeyError: 'oops'"):
        _fresh(Crash()).registrations("decoders")


def test_registrations_are_cached_until_plugins_change(plugins):
    calls = []

    class Counting:
        @hookimpl
        def register_rewards(self, register):
            calls.append(1)

    plugins.add(Counting(), "counting")
    plugins.registrations("rewards")
    plugins.registrations("rewards")
    assert len(calls) == 1
    plugins.remove("counting")
    assert "fake-reward" in plugins.registrations("rewards") and len(calls) == 1


def test_misspelled_hook_fails_loudly():
    class Typo:
        @hookimpl
        def register_generator(self, register):
            pass

    plugins = _fresh(Typo())
    with pytest.raises(PluginError, match="implements unknown hook 'register_generator'"):
        plugins.check_pending()


def test_hookimpl_with_wrong_argument_is_rejected():
    class WrongArgs:
        @hookimpl
        def register_rewards(self, registr):
            pass

    with pytest.raises(PluginError, match="plugin 'p0'"):
        _fresh(WrongArgs())


def test_unknown_registration_name_lists_known(plugins):
    with pytest.raises(UnknownPluginError, match="known: fake-decoder"):
        plugins.get("decoders", "nope")


# --- discovery through real entry points -----------------------------------------------------------------


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Two distributions on sys.path: 'good' (registers a reward) and 'broken' (fails to import)."""
    for name, body in {
        "t_good": """
            from vist3a.hookspecs import hookimpl
            from vist3a.specs import RewardSpec

            @hookimpl
            def register_rewards(register):
                register(RewardSpec("good-reward", "d", lambda c: None))
        """,
        "t_broken": "raise ImportError('needs a library that is not installed')",
        "t_typo": """
            from vist3a.hookspecs import hookimpl

            @hookimpl
            def register_reward(register):
                pass
        """,
    }.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
        info = tmp_path / f"{name}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
        (info / "entry_points.txt").write_text(f"[vist3a]\n{name} = {name}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return tmp_path


def test_entry_points_load_with_distribution_and_version(installed):
    plugins = Plugins()
    plugins.load_entry_points({"t_good"})
    info = plugins.infos["t_good"]
    assert (info.distribution, info.version, info.hooks, info.error) == ("t_good", "1.2.3", ["register_rewards"], None)
    assert plugins.registrations("rewards")["good-reward"].plugin == "t_good"


def test_broken_plugin_is_reported_and_skipped(installed, caplog):
    plugins = Plugins()
    plugins.load_entry_points({"t_good", "t_broken"})
    assert plugins.infos["t_broken"].error == "ImportError: needs a library that is not installed"
    assert "good-reward" in plugins.registrations("rewards")
    assert "'t_broken' failed to load and was skipped" in caplog.text
    rows = {row["name"]: row for row in plugin_rows(plugins)}
    assert rows["t_broken"]["error"] == "ImportError: needs a library that is not installed"
    assert rows["t_good"]["provides"] == {"rewards": ["good-reward"]}


def test_misspelled_hook_in_an_installed_plugin(installed):
    with pytest.raises(PluginError, match="'t_typo' implements unknown hook 'register_reward'"):
        Plugins().load_entry_points({"t_good", "t_typo"})


def test_restriction_variable(installed, monkeypatch):
    set_plugins(None)
    monkeypatch.setenv("VIST3A_PLUGINS", "t_good")
    assert list(get_plugins().infos) == ["t_good"]
    set_plugins(None)
    monkeypatch.setenv("VIST3A_PLUGINS", "")
    assert get_plugins().infos == {}
    set_plugins(None)
    monkeypatch.setenv("VIST3A_PLUGINS", "t_good,t_missing")
    with pytest.raises(UnknownPluginError, match="names t_missing, not installed; installed: .*t_good"):
        get_plugins()


def test_tracing_variable(installed, monkeypatch, capsys):
    monkeypatch.setenv("VIST3A_TRACE_PLUGINS", "1")
    plugins = Plugins()
    plugins.load_entry_points({"t_good"})
    plugins.registrations("rewards")
    err = capsys.readouterr().err
    assert "[vist3a trace] register_rewards(register) -> t_good" in err
    assert "[vist3a trace] register_rewards ok" in err


def test_example_package_through_the_installed_cli():
    """The example plugin (docs/examples/vist3a-example) is installed by the test set-up; use the real CLI."""
    env = {"VIST3A_PLUGINS": "vist3a_example", "PATH": str(Path(sys.executable).parent)}
    listed = subprocess.run(["vist3a", "plugins", "--json"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0, listed.stderr
    assert '"example-brightness"' in listed.stdout and '"vist3a-example"' in listed.stdout
    ran = subprocess.run(["vist3a", "example-brightness", "0.25"], capture_output=True, text=True, env=env)
    assert (ran.returncode, ran.stdout.strip()) == (0, "-0.2500")


def test_component_config_is_the_base_of_spec_configs():
    assert GeneratorSpec("g", "d", lambda c: None).config is ComponentConfig
    assert DecoderSpec("d", "d", lambda c: None).licence == "unspecified"
