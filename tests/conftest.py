import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from vist3a.plugins import Plugins, set_plugins  # noqa: E402

from .fakes import FakePlugin  # noqa: E402


@pytest.fixture(autouse=True)
def plugins(monkeypatch: pytest.MonkeyPatch):
    """Only the fake test plugin; installed plugins are never loaded by accident."""
    for var in ("VIST3A_PLUGINS", "VIST3A_TRACE_PLUGINS", "VIST3A_REGISTRY", "VIST3A_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    fresh = Plugins()
    fresh.add(FakePlugin(), "fakes")
    set_plugins(fresh)
    try:
        yield fresh
    finally:
        set_plugins(None)


@pytest.fixture
def entry_point_plugins():
    """``load(*names)`` discovers the named installed entry points, exactly as the CLI does."""

    def load(*names: str) -> Plugins:
        loaded = Plugins()
        loaded.load_entry_points(set(names))
        set_plugins(loaded)
        return loaded

    return load


@pytest.fixture
def offline(monkeypatch):
    """No hub access, even where huggingface_hub read HF_HUB_OFFLINE before the test set it."""
    from huggingface_hub import constants  # not at the top: importing it reads HF_HUB_OFFLINE, set above

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
