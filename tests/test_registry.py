"""registry.yaml: validation errors with file, line and field; merging; installed status; lookup."""

import textwrap

import pytest

from vist3a.errors import CheckpointError, NotInstalledError, RegistryError, UnknownPluginError
from vist3a.registry import Registry, packaged_registry_path

FAKE_ENTRIES = """
generators:
  my-gen:
    plugin: fakes
    spec: fake-generator
    licence: CC0
    checkpoint: some/hub-id
decoders:
  my-dec:
    plugin: fakes
    spec: fake-decoder
    licence: CC0
    config: {width: 16}
pairings:
  my-gen+my-dec:
    generator: my-gen
    decoder: my-dec
    default_stitch_point: block_2
    generator_resolution: [64, 64]
    decoder_resolution: [16, 16]
    frames: 9
"""


def write(tmp_path, text: str, name: str = "user.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_packaged_registry_is_the_repo_root_file():
    assert packaged_registry_path().read_text() == (packaged_registry_path().parents[2] / "registry.yaml").read_text()


def test_packaged_registry_is_consistent():
    registry = Registry.load()
    assert "wan2.1-t2v-1.3b" in registry.entries["generators"]
    for pairing in registry.pairings.values():
        assert pairing.generator in registry.entries["generators"]
        assert pairing.decoder in registry.entries["decoders"]


def test_user_file_extends_and_overrides(tmp_path, plugins):
    user = write(tmp_path, FAKE_ENTRIES)
    registry = Registry.load(user)
    assert registry.entries["generators"]["my-gen"].checkpoint == "some/hub-id"
    assert "wan2.1-t2v-1.3b" in registry.entries["generators"]
    assert registry.sources[-1] == user
    override = write(tmp_path, "decoders:\n  vggt:\n    plugin: fakes\n    spec: fake-decoder\n    licence: x\n", "o.yaml")
    assert Registry.load(override).status("decoders", "vggt", plugins).installed


def test_environment_variable_names_the_user_file(tmp_path, monkeypatch):
    monkeypatch.setenv("VIST3A_REGISTRY", str(write(tmp_path, FAKE_ENTRIES)))
    assert "my-gen" in Registry.load().entries["generators"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("generators:\n\t- x\n", r"user.yaml:2: invalid YAML: found character '\\t' that cannot start any token"),
        ("generators:\n  g:\n    plugin: p\n    spec: s\n    licence: l\n    plugn: x\n", r"user.yaml:6: generators.g.plugn: unknown field"),
        ("decoders:\n  d:\n    plugin: p\n    spec: s\n", r"user.yaml:2: decoders.d.licence: Field required"),
        ("pairings:\n  x:\n    generator: g\n    decoder: d\n    generator_resolution: [8, 8]\n"
         "    decoder_resolution: [8, 8]\n    frames: nine\n", r"user.yaml:7: pairings.x.frames: Input should be a valid integer"),
        ("rewards:\n  r:\n    plugin: p\n    spec: s\n    licence: l\n  r:\n    plugin: q\n    spec: s\n    licence: l\n",
         r"user.yaml:6: invalid YAML: duplicate key 'r'"),
        ("rewards:\n  Bad_Id:\n    plugin: p\n    spec: s\n    licence: l\n", r"user.yaml:2: rewards.Bad_Id: invalid id"),
        ("pairings:\n  x:\n    generator: nope\n    decoder: vggt\n    generator_resolution: [8, 8]\n"
         "    decoder_resolution: [8, 8]\n    frames: 9\n", r"user.yaml:3: pairings.x.generator: unknown generator 'nope'; known: "),
        ("pairings:\n  x:\n    generator: wan2.1-t2v-1.3b\n    decoder: vggt\n    stitch_points: [a]\n"
         "    default_stitch_point: b\n    generator_resolution: [8, 8]\n    decoder_resolution: [8, 8]\n    frames: 9\n",
         r"user.yaml:2: pairings.x: default_stitch_point 'b' is not in stitch_points"),
        ("- just\n- a list\n", r"user.yaml:1: Input should be a valid dictionary"),
    ],
    ids=["bad-yaml", "unknown-field", "missing-field", "bad-type", "duplicate-id", "invalid-id", "unknown-reference",
         "bad-default-point", "not-a-mapping"],
)
def test_errors_name_file_line_and_field(tmp_path, text, message):
    with pytest.raises(RegistryError, match=message) as info:
        Registry.load(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_missing_user_file(tmp_path):
    with pytest.raises(RegistryError, match="nope.yaml: no such file"):
        Registry.load(tmp_path / "nope.yaml")


def test_entry_and_status(tmp_path, plugins):
    registry = Registry.load(write(tmp_path, FAKE_ENTRIES))
    entry, registration = registry.entry("decoders", "my-dec", plugins)
    assert (entry.config, registration.spec.name, registration.plugin) == ({"width": 16}, "fake-decoder", "fakes")
    assert registry.pairing_status("my-gen+my-dec", plugins).installed


def test_not_installed_entry_says_how_to_install(tmp_path, plugins):
    text = "decoders:\n  far:\n    plugin: vist3a_far\n    spec: far\n    licence: l\n    install: pip install vist3a-far\n"
    registry = Registry.load(write(tmp_path, text))
    status = registry.status("decoders", "far", plugins)
    assert not status.installed
    assert status.message == "plugin 'vist3a_far' is not installed; install with: pip install vist3a-far"
    with pytest.raises(NotInstalledError, match="decoder 'far': plugin 'vist3a_far' is not installed"):
        registry.entry("decoders", "far", plugins)
    assert not registry.pairing_status("wan2.1-t2v-1.3b+vggt", plugins).installed


def test_plugin_loaded_but_spec_missing(tmp_path, plugins):
    text = "rewards:\n  r:\n    plugin: fakes\n    spec: not-there\n    licence: l\n"
    status = Registry.load(write(tmp_path, text)).status("rewards", "r", plugins)
    assert status.message == "plugin 'fakes' does not provide reward 'not-there'"


def test_registered_spec_without_entry_is_found_by_name(plugins):
    entry, registration = Registry.load().entry("rewards", "fake-reward", plugins)
    assert (entry.plugin, registration.spec.name) == ("fakes", "fake-reward")
    with pytest.raises(UnknownPluginError, match="unknown reward 'nope'; known: .*fake-reward"):
        Registry.load().entry("rewards", "nope", plugins)


def test_package_locations_resolve_inside_installed_packages():
    from vist3a.registry import resolve_location

    assert resolve_location("package:vist3a/data/registry.yaml") == str(packaged_registry_path())
    assert resolve_location("org/model") == "org/model" and resolve_location(None) is None
    with pytest.raises(CheckpointError, match="package 'no_such_package' is not installed"):
        resolve_location("package:no_such_package/weights")
