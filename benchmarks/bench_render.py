"""Forward and forward+backward time of the torch reference rasterizer (``vist3a.render``, backend "torch").

Random scenes (Gaussians in a cube 3 units in front of one camera, SH degree 3, "RGB+ED"), several Gaussian counts
and image sizes; median of ``--repeats`` runs after a warm-up (plus a process-wide warm-up). Each case runs both
compositing paths: per pixel (the default for these sizes) and the checkpointed tiles (forced by
``PIXEL_PAIRS_MAX = -1``); the ratio is tiles over per-pixel time, measured in the same run.

    python benchmarks/bench_render.py
    python benchmarks/bench_render.py --device cuda
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from functools import partial

import torch

from vist3a.render import rasterize, torch_backend

CASES = [(1_000, 64), (1_000, 128), (4_000, 128), (4_000, 256), (16_000, 256), (36_864, 64)]
PATHS = {"per-pixel": 1 << 62, "tiles": -1}  # PIXEL_PAIRS_MAX for each compositing path


def scene(n: int, size: int, device: str, seed: int = 0) -> list[torch.Tensor]:
    """``n`` Gaussians (SH degree 3) seen by one camera with a 60 degree field of view at ``size x size``."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5) * 2 + torch.tensor([0.0, 0.0, 3.0])
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.03 + 0.005
    opacities = torch.rand(n, generator=g)
    sh = torch.randn(n, 16, 3, generator=g) * 0.3
    f = size / (2 * 0.5774)  # tan(30 degrees)
    ks = torch.tensor([[[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]]])
    return [t.to(device) for t in (means, quats, scales, opacities, sh, torch.eye(4)[None], ks)]


def median_time(fn: Callable[[], object], device: str, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def forward_backward(tensors: list[torch.Tensor], size: int, backend: str, backward: bool) -> None:
    """One render building the graph to means, scales, opacities and SH (as in training); with ``backward``, the
    gradients too."""
    inputs = [t.clone().requires_grad_(i in (0, 2, 3, 4)) for i, t in enumerate(tensors)]
    out, alpha, _ = rasterize(*inputs, size, size, sh_degree=3, render_mode="RGB+ED", backend=backend)
    if backward:
        (out.sum() + alpha.sum()).backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, device {args.device}, float32")  # fmt: skip
    print("| Gaussians | image | path | forward ms | fwd+bwd ms | tiles / per-pixel, fwd | tiles / per-pixel, fwd+bwd |")
    print("|---|---|---|---|---|---|---|")
    warm = scene(*CASES[0], args.device)
    for _ in range(3):  # first calls in a process pay for allocator and thread-pool start-up
        forward_backward(warm, CASES[0][1], "torch", True)
    for n, size in CASES:
        tensors = scene(n, size, args.device)
        rows = {path: timed(tensors, size, max_pairs, args) for path, max_pairs in PATHS.items()}
        pixels, tiles = rows["per-pixel"], rows["tiles"]
        for path, (fwd, both) in rows.items():
            ratios = f"{tiles[0] / pixels[0]:.2f} | {tiles[1] / pixels[1]:.2f}" if path == "tiles" else "1.00 | 1.00"
            print(f"| {n} | {size}x{size} | {path} | {fwd * 1e3:.0f} | {both * 1e3:.0f} | {ratios} |", flush=True)


def timed(tensors: list[torch.Tensor], size: int, max_pairs: int, args: argparse.Namespace) -> tuple[float, float]:
    """Median forward and forward+backward times with ``PIXEL_PAIRS_MAX = max_pairs``."""
    saved, torch_backend.PIXEL_PAIRS_MAX = torch_backend.PIXEL_PAIRS_MAX, max_pairs
    try:
        return tuple(median_time(partial(forward_backward, tensors, size, "torch", bw), args.device, args.repeats)
                     for bw in (False, True))  # type: ignore[return-value]  # fmt: skip
    finally:
        torch_backend.PIXEL_PAIRS_MAX = saved


if __name__ == "__main__":
    main()
