"""Prompt batches for reward finetuning, wrapped in random camera-motion templates (VIST3A's released recipe)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vist3a.errors import InputError
from vist3a.prompts import CAMERA_TEMPLATES, apply_template


class PromptSampler:
    """Batches of prompts, each wrapped in a random template; a function of (seed, step), so resumes repeat it."""

    def __init__(self, prompts: Sequence[str], templates: Sequence[str] = CAMERA_TEMPLATES, seed: int = 0) -> None:
        if not prompts or not templates:
            raise InputError("the prompt sampler needs at least one prompt and one template")
        for template in templates:
            apply_template(template, "x")  # each must hold {prompt}
        self.prompts, self.templates, self.seed = list(prompts), list(templates), seed

    def batch(self, step: int, size: int) -> list[str]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        picks = torch.randint(len(self.prompts), (size,), generator=g).tolist()
        wraps = torch.randint(len(self.templates), (size,), generator=g).tolist()
        return [apply_template(self.templates[t], self.prompts[p]) for p, t in zip(picks, wraps)]
