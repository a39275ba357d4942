"""A minimal vist3a plugin: a brightness reward and an ``example-brightness`` command."""

from __future__ import annotations

from collections.abc import Sequence

import typer

from vist3a.config import ComponentConfig
from vist3a.hookspecs import hookimpl
from vist3a.specs import RewardSpec


class BrightnessConfig(ComponentConfig):
    """Options of the brightness reward."""

    target: float = 0.0
    """Preferred mean intensity in [-1, 1]; the reward is highest there."""


class BrightnessReward:
    """``-|mean intensity - target|`` per clip: a toy reward, but a real Reward implementation."""

    name = "example-brightness"

    def __init__(self, target: float = 0.0) -> None:
        self.target = target

    def __call__(self, *, prompts: Sequence[str], frames=None, renders=None, decoded=None):
        """frames ``[B,3,T,H,W]`` in [-1,1] -> reward ``[B]``."""
        if frames is None:
            raise ValueError("example-brightness needs frames")
        return -(frames.mean(dim=(1, 2, 3, 4)) - self.target).abs()


@hookimpl
def register_rewards(register):
    register(
        RewardSpec(
            name="example-brightness",
            description="Prefers clips whose mean intensity is near a target (example plugin)",
            factory=lambda config: BrightnessReward(config.target),
            config=BrightnessConfig,
            licence="Apache-2.0",
        )
    )


@hookimpl
def register_commands(app: typer.Typer):
    @app.command(name="example-brightness")
    def example_brightness(
        value: float = typer.Argument(..., help="A uniform intensity in [-1, 1]."),
        target: float = typer.Option(0.0, help="The reward's target intensity."),
    ) -> None:
        """Score a uniform grey clip with the example reward."""
        import torch

        frames = torch.full((1, 3, 5, 8, 8), value)
        print(f"{BrightnessReward(target)(prompts=[''], frames=frames).item():.4f}")
