"""Truncated-gradient rollouts (DRTune): sample from noise, keeping gradients at a few random steps only.

At every step the denoiser sees a detached input, so the gradient of a step's output reaches the denoiser's
parameters through its prediction and earlier latents only through the scheduler update; steps outside the plan run
without gradients at all. This keeps backpropagation through long sampling chains stable and cheap.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch
from pydantic import model_validator
from torch import Tensor

from vist3a.config import StrictModel
from vist3a.errors import InputError
from vist3a.protocols import DenoisingLoop, SteppableGenerator


class RolloutConfig(StrictModel):
    """How rollouts are drawn (the paper: 10-50 steps, 2 random gradient steps plus the last, CFG from U[4, 6])."""

    min_steps: int = 10
    max_steps: int = 50
    grad_steps: int = 2
    """Random steps, before the last, that keep gradients."""
    grad_last_step: bool = True
    min_guidance: float = 4.0
    max_guidance: float = 6.0
    negative_prompt: str = ""

    @model_validator(mode="after")
    def _ranges(self) -> RolloutConfig:
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(f"need 1 <= min_steps <= max_steps, got {self.min_steps} and {self.max_steps}")
        if self.grad_steps < 0 or self.grad_steps >= self.min_steps:
            raise ValueError(f"grad_steps must be in [0, min_steps), got {self.grad_steps}")
        if self.min_guidance > self.max_guidance:
            raise ValueError("min_guidance must not exceed max_guidance")
        return self


@dataclass(frozen=True)
class RolloutPlan:
    """One drawn rollout: its number of steps, the step indices that keep gradients, and the CFG scale."""

    steps: int
    grad_indices: frozenset[int]
    guidance: float


def plan_rollout(config: RolloutConfig, generator: torch.Generator) -> RolloutPlan:
    """Draw a plan from ``config`` with the seeded ``generator`` (deterministic for a given seed)."""
    steps = int(torch.randint(config.min_steps, config.max_steps + 1, (), generator=generator))
    chosen = torch.randperm(steps - 1, generator=generator)[: config.grad_steps].tolist()
    indices = set(chosen) | ({steps - 1} if config.grad_last_step else set())
    u = float(torch.rand((), generator=generator))
    guidance = config.min_guidance + u * (config.max_guidance - config.min_guidance)
    return RolloutPlan(steps, frozenset(indices), guidance)


def rollout(
    generator: SteppableGenerator,
    prompts: Sequence[str],
    plan: RolloutPlan,
    *,
    num_frames: int,
    height: int,
    width: int,
    negative_prompt: str = "",
    noise: torch.Generator | None = None,
) -> Tensor:
    """Sample RAW latents ``[B,C,T',h,w]`` following ``plan``; the graph holds only the planned steps."""
    if not isinstance(generator, SteppableGenerator):
        raise InputError(f"{generator.name} cannot run its denoising loop step by step (no denoising())")
    loop = generator.denoising(prompts, num_frames=num_frames, height=height, width=width, steps=plan.steps,
                               guidance=plan.guidance, negative_prompt=negative_prompt, generator=noise)  # fmt: skip
    return loop.to_raw(run_loop(loop, plan.grad_indices))


def run_loop(loop: DenoisingLoop, grad_indices: Collection[int] = ()) -> Tensor:
    """Run every step of ``loop`` from its initial noise: the denoiser keeps gradients only at ``grad_indices`` (and
    only when gradients are enabled), every scheduler update keeps them. Returns the final model-space latents."""
    latents = loop.latents
    for index in range(len(loop.timesteps)):
        with torch.set_grad_enabled(index in grad_indices and torch.is_grad_enabled()):
            prediction = loop.predict(latents.detach(), index)
        latents = loop.update(prediction, latents, index)
    return latents
