import pytest
from huggingface_hub import constants


@pytest.fixture
def offline(monkeypatch):
    """No hub access, even where huggingface_hub read HF_HUB_OFFLINE before the test set it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
