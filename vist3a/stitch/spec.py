"""The stitch adapter's Conv3d geometry: the grammar ``conv3d_k5x3x3_o1024_s1x2x2_p2x1x1`` and its derivation."""

from __future__ import annotations

import re
from dataclasses import dataclass

from vist3a.errors import InputError
from vist3a.protocols import LatentSpec, StitchPoint

Triple = tuple[int, int, int]
_GRAMMAR = re.compile(r"conv3d_k(\d+)x(\d+)x(\d+)_o(\d+)_s(\d+)x(\d+)x(\d+)_p(\d+)x(\d+)x(\d+)")


@dataclass(frozen=True)
class StitchSpec:
    """A Conv3d over ``(T, h, w)``: kernel, output channels, stride and (replicate) padding, each ``(t, h, w)``."""

    kernel: Triple
    out_channels: int
    stride: Triple = (1, 1, 1)
    padding: Triple = (0, 0, 0)

    def __post_init__(self) -> None:
        if min(*self.kernel, *self.stride, self.out_channels) < 1 or min(self.padding) < 0:
            raise InputError(f"invalid stitch spec {self}: kernel, stride and channels must be >= 1, padding >= 0")
        if any(p >= k for p, k in zip(self.padding, self.kernel)):
            raise InputError(f"invalid stitch spec {self}: padding must be smaller than the kernel")

    @classmethod
    def parse(cls, text: str) -> StitchSpec:
        """``conv3d_k{t}x{h}x{w}_o{channels}_s{t}x{h}x{w}_p{t}x{h}x{w}`` -> StitchSpec."""
        match = _GRAMMAR.fullmatch(text.strip())
        if match is None:
            raise InputError(f"invalid stitch spec {text!r}; expected e.g. conv3d_k5x3x3_o1024_s1x2x2_p2x1x1")
        v = [int(g) for g in match.groups()]
        return cls(kernel=(v[0], v[1], v[2]), out_channels=v[3], stride=(v[4], v[5], v[6]), padding=(v[7], v[8], v[9]))

    def __str__(self) -> str:
        k, s, p = ("x".join(map(str, t)) for t in (self.kernel, self.stride, self.padding))
        return f"conv3d_k{k}_o{self.out_channels}_s{s}_p{p}"

    def output_size(self, size: Triple) -> Triple:
        """``(T, h, w)`` after the convolution of an input of ``size``."""
        out = tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, self.kernel, self.stride, self.padding))
        return out  # type: ignore[return-value]


def derive_spec(
    latent: LatentSpec,
    point: StitchPoint,
    generator_size: tuple[int, int],
    temporal_kernel: int = 5,
) -> StitchSpec:
    """The Conv3d that maps latents of frames at ``generator_size`` (H, W) onto ``point``'s token grid.

    Time keeps its length (kernel ``temporal_kernel``, stride 1, "same" padding): the adapter first interpolates the
    latent frames back to the video's frame count. Per spatial axis the stride is ``latent size // grid size`` and
    the kernel the smallest odd size above the stride that, with padding up to half the kernel, lands exactly on the
    grid (Wan at 512 -> 64 -> k3 s2 p1 -> 32, the VGGT grid at 448; 384 -> 48 -> k7 s3 p0 -> 14, MV-DUSt3R's grid).
    """
    if temporal_kernel < 1 or temporal_kernel % 2 == 0:
        raise InputError(f"temporal kernel must be odd and positive, got {temporal_kernel}")
    for n in generator_size:
        if n % latent.spatial_factor:
            raise InputError(f"generator resolution {n} is not divisible by the VAE's spatial factor {latent.spatial_factor}")
    axes = [_derive_axis(n // latent.spatial_factor, g, point.name) for n, g in zip(generator_size, point.grid)]
    (kh, sh, ph), (kw, sw, pw) = axes
    return StitchSpec((temporal_kernel, kh, kw), point.channels, (1, sh, sw), (temporal_kernel // 2, ph, pw))


def _derive_axis(size: int, grid: int, point: str) -> tuple[int, int, int]:
    """(kernel, stride, padding) taking ``size`` latent cells to ``grid`` tokens along one axis."""
    if size < grid:
        raise InputError(
            f"stitch point {point!r} needs a {grid}-token grid but the latents have only {size} cells; "
            "raise the generator resolution or lower the decoder's"
        )
    stride = size // grid
    for kernel in range(stride + 1 + stride % 2, 4 * stride + 2, 2):
        for padding in range(kernel // 2, -1, -1):
            if (size + 2 * padding - kernel) // stride + 1 == grid:
                return kernel, stride, padding
    raise InputError(f"no Conv3d maps {size} latent cells onto the {grid}-token grid of {point!r}")
