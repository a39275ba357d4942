"""GPU check: gsplat against the torch reference on the same CUDA device (agreement and speed).

Random scenes from ``bench_render.scene`` (SH degree 3, "RGB+ED", one camera) at several Gaussian counts and image
sizes. Per case: PSNR of gsplat's RGB against ours, the largest alpha difference, and the median forward and
forward+backward times of both backends; the ratio is our time over gsplat's, from the same run. The first gsplat
call may JIT-compile its CUDA kernels (needs nvcc; minutes); it is timed separately.

    python benchmarks/check_gsplat.py
"""

from __future__ import annotations

import argparse
import shutil
import time
from functools import partial

import torch
from bench_render import forward_backward, median_time, scene

from vist3a.render import rasterize

CASES = [(10_000, 128), (10_000, 256), (100_000, 256), (100_000, 512), (300_000, 512)]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10(torch.mean((a - b) ** 2).clamp(min=1e-20)))


def compare(tensors: list[torch.Tensor], size: int) -> tuple[float, float]:
    """PSNR (dB) of gsplat's RGB against ours, and the largest alpha difference."""
    with torch.no_grad():
        ours, ours_a, _ = rasterize(*tensors, size, size, sh_degree=3, render_mode="RGB+ED", backend="torch")
        theirs, theirs_a, _ = rasterize(*tensors, size, size, sh_degree=3, render_mode="RGB+ED", backend="gsplat")
    return psnr(ours[..., :3], theirs[..., :3]), float((ours_a - theirs_a).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import gsplat  # noqa: PLC0415  (the point of this script; fails loudly when missing)

    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, gsplat {gsplat.__version__}, "
          f"nvcc {shutil.which('nvcc')}, float32")  # fmt: skip
    start = time.perf_counter()
    compare(scene(100, 64, "cuda"), 64)
    torch.cuda.synchronize()
    print(f"# first gsplat call (includes any JIT build): {time.perf_counter() - start:.1f} s", flush=True)
    print("| Gaussians | image | PSNR dB | max alpha diff | ours fwd ms | gsplat fwd ms | ratio | ours fwd+bwd ms "
          "| gsplat fwd+bwd ms | ratio |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, size in CASES:
        tensors = scene(n, size, "cuda")
        quality, alpha_diff = compare(tensors, size)
        times = [median_time(partial(forward_backward, tensors, size, b, bw), "cuda", args.repeats)
                 for bw in (False, True) for b in ("torch", "gsplat")]  # fmt: skip
        f_ours, f_gs, b_ours, b_gs = (t * 1e3 for t in times)
        print(f"| {n} | {size}x{size} | {quality:.1f} | {alpha_diff:.1e} | {f_ours:.1f} | {f_gs:.2f} | "
              f"{f_ours / f_gs:.1f} | {b_ours:.1f} | {b_gs:.2f} | {b_ours / b_gs:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
