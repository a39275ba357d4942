"""Docs that must keep up with the code: every hook and discovery switch documented, README's two commands."""

import inspect
import re
from pathlib import Path

import pytest

from vist3a import hookspecs

ROOT = Path(__file__).resolve().parents[1]
PLUGINS_DOC = (ROOT / "docs" / "plugins.md").read_text()


@pytest.mark.parametrize("hook", sorted(n for n in dir(hookspecs) if n.startswith("register_")))
def test_hook_is_documented_with_its_signature(hook):
    params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert f"`{hook}({params})`" in PLUGINS_DOC


@pytest.mark.parametrize("variable", ["VIST3A_PLUGINS", "VIST3A_TRACE_PLUGINS", "VIST3A_REGISTRY", "VIST3A_DEBUG"])
def test_switch_is_documented(variable):
    assert variable in PLUGINS_DOC


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^\$ (.+)$", readme, flags=re.M)
    assert len(commands) >= 2, "README shows the set-up + main job command and the test command"
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
