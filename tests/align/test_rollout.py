"""Truncated-gradient rollouts on the tiny Wan: plans, equality with sampling, and where gradients flow."""

import pytest
import torch
from vist3a_wan import tiny_pipeline
from vist3a_wan.generator import WanGenerator

from tests.fakes import FakeGenerator
from vist3a.align.rollout import RolloutConfig, RolloutPlan, plan_rollout, rollout
from vist3a.errors import InputError
from vist3a.generators.options import DiffusersVideoConfig

SIZE = {"num_frames": 5, "height": 32, "width": 32}


@pytest.fixture(scope="module")
def wan():
    return WanGenerator(tiny_pipeline(seed=0), DiffusersVideoConfig(max_sequence_length=16))


def test_plans_follow_the_config_and_the_seed():
    config = RolloutConfig(min_steps=3, max_steps=6, grad_steps=2)
    plans = [plan_rollout(config, torch.Generator().manual_seed(s)) for s in range(30)]
    assert {p.steps for p in plans} <= set(range(3, 7)) and len({p.steps for p in plans}) > 1
    for plan in plans:
        assert plan.steps - 1 in plan.grad_indices and len(plan.grad_indices) == 3
        assert all(0 <= i < plan.steps for i in plan.grad_indices) and 4.0 <= plan.guidance <= 6.0
    assert plan_rollout(config, torch.Generator().manual_seed(7)) == plan_rollout(config, torch.Generator().manual_seed(7))


@pytest.mark.parametrize(
    ("values", "message"),
    [({"min_steps": 0}, "min_steps <= max_steps"), ({"grad_steps": 10}, "grad_steps must be in"),
     ({"min_guidance": 7.0}, "min_guidance must not exceed")],
)
def test_bad_configs(values, message):
    with pytest.raises(ValueError, match=message):
        RolloutConfig(**values)


def test_rollout_equals_sampling_and_keeps_only_planned_gradients(wan):
    plan = RolloutPlan(steps=4, grad_indices=frozenset({1, 3}), guidance=4.5)
    expected = wan.sample(["a cube"], steps=4, guidance=4.5, generator=torch.Generator().manual_seed(0), **SIZE)
    denoiser = wan.trainable()
    denoiser.zero_grad()
    latents = rollout(wan, ["a cube"], plan, noise=torch.Generator().manual_seed(0), **SIZE)
    assert torch.allclose(latents.detach(), expected, atol=1e-6)
    latents.square().mean().backward()
    grads = [p.grad for p in denoiser.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    with torch.no_grad():
        assert rollout(wan, ["a cube"], plan, noise=torch.Generator().manual_seed(0), **SIZE).grad_fn is None


def test_gradients_reach_earlier_steps_only_through_the_scheduler(wan):
    """With only step 0 planned, the output still depends on step 0's prediction via the scheduler updates."""
    denoiser = wan.trainable()
    denoiser.zero_grad()
    plan = RolloutPlan(steps=3, grad_indices=frozenset({0}), guidance=4.0)
    rollout(wan, ["a cube"], plan, noise=torch.Generator().manual_seed(1), **SIZE).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in denoiser.parameters())
    denoiser.zero_grad()
    none = RolloutPlan(steps=3, grad_indices=frozenset(), guidance=4.0)
    out = rollout(wan, ["a cube"], none, noise=torch.Generator().manual_seed(1), **SIZE)
    assert out.grad_fn is None


def test_generators_without_a_denoising_loop_are_refused():
    with pytest.raises(InputError, match="fake-generator cannot run its denoising loop step by step"):
        rollout(FakeGenerator(), ["x"], RolloutPlan(2, frozenset(), 4.0), **SIZE)
