"""The three contracts between the core and the plugins, and the small types they exchange.

Conventions at every protocol boundary:

- frames: ``[B,3,T,H,W]`` float in [-1, 1], in video order; frame 0 is the reference view.
- latents: RAW VAE latents ``[B,C,T',h,w]``; each generator owns its own normalisation
  (:meth:`LatentSpec.to_model` / :meth:`LatentSpec.to_raw`).
- stitch-point tokens: ``[B,C,T,h,w]`` with the prefix tokens (cls, registers) removed, the layout a
  ``Conv3d`` stitch adapter produces.
- devices and dtypes are arguments, never hard-coded; CPU float32 always works.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from vist3a.scene import Decoded3D


@dataclass(frozen=True)
class LatentSpec:
    """Geometry and normalisation of a video VAE's latent space.

    ``model = (raw - shift) * scale`` is what the denoiser sees; ``raw`` is what the VAE decoder takes.
    ``shift`` and ``scale`` are scalars or one value per channel (Wan: ``shift = mean``, ``scale = 1/std``;
    CogVideoX and HunyuanVideo: ``shift = 0``, ``scale = scaling_factor``).

    Frame rule: a video of ``T = temporal_factor * k + 1`` frames encodes to ``T' = k + 1`` latent frames
    (a causal VAE keeps the first frame on its own).
    """

    channels: int
    spatial_factor: int
    temporal_factor: int
    shift: float | tuple[float, ...] = 0.0
    scale: float | tuple[float, ...] = 1.0
    latent_frame_step: int = 1
    """Valid latent frame counts are ``1 + latent_frame_step * k`` (CogVideoX's VAE decodes latent frames in
    pairs after the first: 2, so its videos have ``8k+1`` frames)."""

    def __post_init__(self) -> None:
        if min(self.channels, self.spatial_factor, self.temporal_factor, self.latent_frame_step) < 1:
            raise ValueError(f"LatentSpec factors must be positive, got {self}")
        for name in ("shift", "scale"):
            value = getattr(self, name)
            if isinstance(value, Sequence) and len(value) != self.channels:
                raise ValueError(f"LatentSpec.{name} has {len(value)} values for {self.channels} channels")

    @property
    def frame_step(self) -> int:
        """Distance between valid frame counts."""
        return self.temporal_factor * self.latent_frame_step

    @property
    def frame_rule(self) -> str:
        """The valid frame counts, e.g. ``"4k+1"``."""
        return f"{self.frame_step}k+1"

    def is_valid_frames(self, frames: int) -> bool:
        return frames >= 1 and (frames - 1) % self.frame_step == 0

    def is_valid_latent_frames(self, latent_frames: int) -> bool:
        return latent_frames >= 1 and (latent_frames - 1) % self.latent_frame_step == 0

    def valid_frames(self, frames: int) -> int:
        """The smallest valid frame count >= ``frames`` (pad by repeating the last frame)."""
        if frames < 1:
            raise ValueError(f"frame count must be positive, got {frames}")
        k = -(-(frames - 1) // self.frame_step)
        return self.frame_step * k + 1

    def latent_frames(self, frames: int) -> int:
        """``T'`` for a valid ``T``."""
        if not self.is_valid_frames(frames):
            raise ValueError(f"{frames} frames do not follow the frame rule {self.frame_rule}")
        return (frames - 1) // self.temporal_factor + 1

    def pixel_frames(self, latent_frames: int) -> int:
        """``T`` for ``T'`` latent frames."""
        return (latent_frames - 1) * self.temporal_factor + 1

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(C, T', h, w)`` of the raw latents of a ``frames x height x width`` video."""
        if height % self.spatial_factor or width % self.spatial_factor:
            raise ValueError(f"{height}x{width} is not divisible by the spatial factor {self.spatial_factor}")
        return (self.channels, self.latent_frames(frames), height // self.spatial_factor, width // self.spatial_factor)

    def to_model(self, raw: Tensor) -> Tensor:
        """RAW latents ``[B,C,T',h,w]`` -> the denoiser's normalised space."""
        shift, scale = self._per_channel(raw)
        return (raw - shift) * scale

    def to_raw(self, latents: Tensor) -> Tensor:
        """Normalised latents ``[B,C,T',h,w]`` -> RAW latents."""
        shift, scale = self._per_channel(latents)
        return latents / scale + shift

    def _per_channel(self, x: Tensor) -> tuple[Tensor, Tensor]:
        import torch

        if x.ndim != 5 or x.shape[1] != self.channels:
            raise ValueError(f"expected latents [B,{self.channels},T',h,w], got {tuple(x.shape)}")
        shape = (1, self.channels, 1, 1, 1)
        shift = torch.as_tensor(self.shift, dtype=x.dtype, device=x.device).expand(self.channels).reshape(shape)
        scale = torch.as_tensor(self.scale, dtype=x.dtype, device=x.device).expand(self.channels).reshape(shape)
        return shift, scale


@dataclass(frozen=True)
class StitchPoint:
    """A candidate layer where a 3D model can be cut and fed from VAE latents.

    ``grid`` is the patch-token grid ``(h, w)`` at the decoder's input size, ``channels`` the token width and
    ``prefix_tokens`` the number of tokens (cls, registers) in front of the patch tokens, which the stitch
    adapter does not produce. ``index`` orders the points from the input (1 = after the first layer).
    """

    name: str
    grid: tuple[int, int]
    channels: int
    prefix_tokens: int = 0
    index: int = 0


@dataclass(frozen=True)
class StitchTargets:
    """The parts of a decoder cut at a stitch point that self-distillation trains (names as in ``named_modules``
    and ``named_parameters``): LoRA goes on ``lora_modules`` (the Linear/Conv2d layers after the point), and
    ``parameters`` (special tokens such as cls and registers) are trained in full."""

    lora_modules: tuple[str, ...]
    parameters: tuple[str, ...] = ()


@runtime_checkable
class Generator(Protocol):
    """A text-to-video latent diffusion model with its VAE."""

    name: str
    latent: LatentSpec

    def encode(self, frames: Tensor) -> Tensor:
        """frames ``[B,3,T,H,W]`` in [-1,1] -> RAW latents ``[B,C,T',h,w]``."""
        ...

    def decode(self, latents: Tensor) -> Tensor:
        """RAW latents ``[B,C,T',h,w]`` -> frames ``[B,3,T,H,W]`` in [-1,1]; differentiable."""
        ...

    def sample(
        self,
        prompts: Sequence[str],
        *,
        num_frames: int,
        height: int,
        width: int,
        steps: int,
        guidance: float,
        negative_prompt: str | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Text -> RAW latents ``[B,C,T',h,w]``."""
        ...

    def trainable(self) -> nn.Module:
        """The denoiser that LoRA attaches to."""
        ...


@runtime_checkable
class Decoder3D(Protocol):
    """A feed-forward 3D reconstruction model that can be cut at its stitch points.

    Optional: ``set_gradient_checkpointing(enabled: bool)`` recomputes blocks in the backward pass (used by
    ``vist3a stitch --gradient-checkpointing``); ``position_embedding(point, grid) -> [C,h,w]`` gives the input
    position embedding that a stitched decoder may add to the adapter's tokens (the official VIST3A AnySplat does).
    """

    name: str
    needs_rgb: bool  # True when a head after the stitch point reads the frames themselves

    def stitch_points(self, image_size: tuple[int, int]) -> list[StitchPoint]:
        """Candidate layers, ordered from the input, with their token grids for inputs of ``image_size`` (H, W)."""
        ...

    def stitch_targets(self, point: str) -> StitchTargets:
        """What self-distillation trains when the model is cut at ``point``."""
        ...

    def preprocess(self, frames: Tensor) -> Tensor:
        """frames ``[B,3,T,H,W]`` in [-1,1] (any device) -> the model's own input (resized, normalised), on the
        model's device and in its dtype."""
        ...

    def forward_features(self, x: Tensor, points: Sequence[str]) -> dict[str, Tensor]:
        """Activations ``[B,C,T,h,w]`` (prefix tokens dropped) at the named points, in one pass."""
        ...

    def forward_from(self, point: str, tokens: Tensor, aux: Mapping[str, Tensor] | None = None) -> Decoded3D:
        """Run the layers after ``point`` on tokens ``[B,C,T,h,w]``.

        ``aux["frames"]``: the preprocessed frames, when ``needs_rgb``. ``aux["prefix"]`` (optional): the prefix
        tokens at ``point``, to continue a forward pass exactly; without them the decoder inserts its learned special
        tokens, as a stitched decoder does (the layers that computed them are gone).
        """
        ...

    def forward(self, x: Tensor) -> Decoded3D:
        """The original model on preprocessed input (the distillation teacher)."""
        ...

    def distill_loss(self, student: Decoded3D, teacher: Decoded3D) -> dict[str, Tensor]:
        """Weighted L1 per output head; the values sum to the total loss."""
        ...


@runtime_checkable
class Reward(Protocol):
    """A differentiable score of generated content; higher is better."""

    name: str

    def __call__(
        self,
        *,
        prompts: Sequence[str],
        frames: Tensor | None = None,
        renders: Tensor | None = None,
        decoded: Decoded3D | None = None,
    ) -> Tensor:
        """Score ``[B]``. frames and renders are ``[B,3,V,H,W]`` in [-1,1]."""
        ...


@runtime_checkable
class DenoisingLoop(Protocol):
    """One text-to-video denoising run that the caller drives step by step (the aligner's seam).

    ``latents`` is the initial noise in the denoiser's space ``[B,C,T',h,w]``; call
    ``latents = loop.step(latents, i)`` for each ``i`` in ``range(len(loop.timesteps))``, in order, then
    ``loop.to_raw(latents)``. Running every step equals ``sample()`` with the same arguments. ``step`` is
    ``update(predict(latents.detach()), latents)``: the denoiser sees a detached input, so gradients reach earlier
    latents only through the scheduler update (truncated backpropagation); an aligner runs ``predict`` without
    gradients at most steps and ``update`` always with them.
    """

    latents: Tensor
    timesteps: Tensor

    def step(self, latents: Tensor, index: int, *, detach_input: bool = True) -> Tensor:
        """Latents after denoising step ``index``."""
        ...

    def predict(self, latents: Tensor, index: int) -> Tensor:
        """The (guided) denoiser output for ``latents`` at step ``index``."""
        ...

    def update(self, prediction: Tensor, latents: Tensor, index: int) -> Tensor:
        """The scheduler update of step ``index``; steps are updated in order, each once."""
        ...

    def to_raw(self, latents: Tensor) -> Tensor:
        """Final latents -> RAW VAE latents ``[B,C,T',h,w]``."""
        ...


@runtime_checkable
class SteppableGenerator(Generator, Protocol):
    """A generator whose denoising loop the caller can run itself, with gradients at chosen steps."""

    def denoising(
        self,
        prompts: Sequence[str],
        *,
        num_frames: int,
        height: int,
        width: int,
        steps: int,
        guidance: float,
        negative_prompt: str | None = None,
        generator: torch.Generator | None = None,
    ) -> DenoisingLoop:
        """The loop of ``sample()`` with the same arguments, not yet run."""
        ...


@runtime_checkable
class TrainableGenerator(Generator, Protocol):
    """A generator that can score its denoiser on captioned clips (the aligner's optional data term)."""

    def training_loss(self, latents: Tensor, prompts: Sequence[str], *, generator: torch.Generator | None = None) -> Tensor:
        """The family's denoising loss (e.g. flow matching) on clean RAW latents ``[B,C,T',h,w]``, differentiable."""
        ...
