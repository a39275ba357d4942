"""Prompt files and camera-motion templates for alignment."""

import pytest

from vist3a.align.prompts import PromptSampler
from vist3a.errors import InputError
from vist3a.prompts import CAMERA_TEMPLATES, load_prompts


def test_prompt_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("# scenes\na red sphere\n\n  a blue cube  \n")
    assert load_prompts(path) == ["a red sphere", "a blue cube"]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(InputError, match="no prompts"):
        load_prompts(tmp_path / "empty.txt")
    with pytest.raises(InputError, match="cannot read the prompt file"):
        load_prompts(tmp_path / "missing.txt")


def test_sampler_is_deterministic_and_uses_every_template():
    sampler = PromptSampler(["a red sphere", "a blue cube"], seed=3)
    assert sampler.batch(5, 4) == PromptSampler(["a red sphere", "a blue cube"], seed=3).batch(5, 4)
    assert sampler.batch(5, 4) != sampler.batch(6, 4)
    texts = [t for step in range(200) for t in sampler.batch(step, 2)]
    assert all("a red sphere" in t or "a blue cube" in t for t in texts)
    prefixes = {t.split("a red sphere")[0].split("a blue cube")[0] for t in texts}  # the text before the prompt
    assert len(prefixes) == len(CAMERA_TEMPLATES)
    with pytest.raises(InputError, match="neither one of"):
        PromptSampler(["x"], templates=["no placeholder"])
