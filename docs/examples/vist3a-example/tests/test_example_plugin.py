"""Tests for the example plugin, through the host's public entry points."""

import pytest
import torch
from typer.testing import CliRunner

import vist3a
from vist3a.cli import build_app
from vist3a.plugins import Plugins, set_plugins


@pytest.fixture(autouse=True)
def example_only():
    """Load just this plugin through its installed entry point, as vist3a does."""
    plugins = Plugins()
    plugins.load_entry_points({"vist3a_example"})
    set_plugins(plugins)
    yield
    set_plugins(None)


def test_reward_through_load_reward():
    reward = vist3a.load_reward("example-brightness", target=0.5)
    frames = torch.full((2, 3, 5, 8, 8), 0.25)
    assert torch.allclose(reward(prompts=["a", "b"], frames=frames), torch.tensor([-0.25, -0.25]))


def test_command_through_the_cli():
    result = CliRunner().invoke(build_app(), ["example-brightness", "0.5", "--target", "0.0"])
    assert result.exit_code == 0
    assert result.output.strip() == "-0.5000"
