"""Tiny fake Generator, Decoder3D and Reward, registered by a fake plugin for every test (see conftest)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
import vist3a_synth
from torch import Tensor, nn

from vist3a.config import ComponentConfig
from vist3a.hookspecs import hookimpl
from vist3a.protocols import LatentSpec, StitchPoint, StitchTargets
from vist3a.scene import Decoded3D, PointMaps
from vist3a.specs import DecoderSpec, GeneratorSpec, RewardSpec


class FakeGenerator(nn.Module):
    """A fixed 'VAE' (temporal subsampling + average pooling + 1x1 projection) and a random sampler."""

    name = "fake-generator"
    latent = LatentSpec(channels=4, spatial_factor=4, temporal_factor=4, shift=0.5, scale=2.0)

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv3d(3, 4, 1)
        self.unproj = nn.Conv3d(4, 3, 1)

    def encode(self, frames: Tensor) -> Tensor:
        self.latent.latent_frames(frames.shape[2])
        kept = frames[:, :, :: self.latent.temporal_factor]
        return self.proj(F.avg_pool3d(kept, (1, 4, 4)))

    def decode(self, latents: Tensor) -> Tensor:
        frames = F.interpolate(self.unproj(latents), scale_factor=(4, 4, 4), mode="nearest")
        return frames[:, :, : self.latent.pixel_frames(latents.shape[2])].tanh()

    def sample(self, prompts: Sequence[str], *, num_frames: int, height: int, width: int, steps: int = 1,
               guidance: float = 1.0, negative_prompt: str | None = None, generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
        shape = (len(prompts), *self.latent.latent_shape(num_frames, height, width))
        return self.latent.to_raw(torch.randn(shape, generator=generator))

    def trainable(self) -> nn.Module:
        return self.proj


class FakeDecoder(nn.Module):
    """Patch embedding, three residual MLP blocks (the stitch points) and a depth head."""

    name = "fake-decoder"
    needs_rgb = False
    patch = 4

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.width = width
        self.embed = nn.Conv2d(3, self.width, self.patch, stride=self.patch)
        self.blocks = nn.ModuleList(nn.Linear(self.width, self.width) for _ in range(3))
        self.head = nn.Linear(self.width, self.patch * self.patch)
        self.depth_offset = nn.Parameter(torch.zeros(()))  # stands for special tokens: trained in full

    def stitch_points(self, image_size: tuple[int, int]) -> list[StitchPoint]:
        grid = (image_size[0] // self.patch, image_size[1] // self.patch)
        return [StitchPoint(f"block_{i}", grid, self.width, 0, i) for i in range(1, len(self.blocks) + 1)]

    def stitch_targets(self, point: str) -> StitchTargets:
        after = range(int(point.split("_")[1]), len(self.blocks))
        return StitchTargets(tuple(f"blocks.{i}" for i in after) + ("head",), ("depth_offset",))

    def preprocess(self, frames: Tensor) -> Tensor:
        return (frames + 1) / 2

    def forward_features(self, x: Tensor, points: Sequence[str]) -> dict[str, Tensor]:
        tokens, grid = self._embed(x)
        found = {}
        for i, block in enumerate(self.blocks, start=1):
            tokens = tokens + torch.tanh(block(tokens))
            if f"block_{i}" in points:
                found[f"block_{i}"] = self._to_grid(tokens, x.shape[0], grid)
        return found

    def forward_from(self, point: str, tokens: Tensor, aux: Mapping[str, Tensor] | None = None) -> Decoded3D:
        b, c, t, h, w = tokens.shape
        x = tokens.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)
        for block in self.blocks[int(point.split("_")[1]) :]:
            x = x + torch.tanh(block(x))
        return self._head(x, b, t, (h, w))

    def forward(self, x: Tensor) -> Decoded3D:
        tokens, grid = self._embed(x)
        for block in self.blocks:
            tokens = tokens + torch.tanh(block(tokens))
        return self._head(tokens, x.shape[0], x.shape[2], grid)

    def distill_loss(self, student: Decoded3D, teacher: Decoded3D) -> dict[str, Tensor]:
        return {"depth": (student.points.depth - teacher.points.depth).abs().mean()}

    def _embed(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        b, _, t, h, w = x.shape
        y = self.embed(x.transpose(1, 2).reshape(b * t, 3, h, w))
        return y.flatten(2).transpose(1, 2), tuple(y.shape[-2:])

    def _to_grid(self, tokens: Tensor, b: int, grid: tuple[int, int]) -> Tensor:
        return tokens.reshape(b, -1, *grid, self.width).permute(0, 4, 1, 2, 3)

    def _head(self, tokens: Tensor, b: int, t: int, grid: tuple[int, int]) -> Decoded3D:
        h, w = grid[0] * self.patch, grid[1] * self.patch
        depth = F.pixel_shuffle(self.head(tokens).transpose(1, 2).reshape(b * t, -1, *grid), self.patch)
        depth = (depth.reshape(b, t, h, w) + self.depth_offset).exp()
        points = torch.stack(torch.broadcast_tensors(depth, depth, depth), dim=-1)
        return Decoded3D(points=PointMaps(points=points, depth=depth))


class FakeReward:
    """Mean brightness of the frames: higher is brighter."""

    name = "fake-reward"

    def __call__(self, *, prompts, frames=None, renders=None, decoded=None) -> Tensor:
        return frames.mean(dim=(1, 2, 3, 4))


class FakeConfig(ComponentConfig):
    width: int = 8


def _seeded(build):
    """Deterministic weights whatever the process (multi-process tests build the fakes in each process)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build()


class FakePlugin:
    """A plugin object implementing every registration hook."""

    @hookimpl
    def register_generators(self, register):
        register(GeneratorSpec("fake-generator", "A fake generator", lambda cfg: _seeded(FakeGenerator), licence="CC0"))

    @hookimpl
    def register_decoders(self, register):
        register(DecoderSpec("fake-decoder", "A fake decoder", lambda cfg: _seeded(lambda: FakeDecoder(cfg.width)).to(cfg.device), FakeConfig))

    @hookimpl
    def register_rewards(self, register):
        register(RewardSpec("fake-reward", "A fake reward", lambda cfg: FakeReward()))

    @hookimpl
    def register_data_sources(self, register):
        """The tests' clips come from the real synthetic world (pure torch, no weights): its ``synthetic`` source."""
        vist3a_synth.register_data_sources(register)

    @hookimpl
    def register_commands(self, app):
        @app.command(name="fake-hello")
        def hello(name: str = "world") -> None:
            """Say hello."""
            print(f"hello {name}")
