"""Forward time and peak memory of the vist3a VGGT decoder (random weights).

CPU (default): the tiny reference config and a mid-size config, against a baseline measured in the same run
(the DINO encoder of the same config alone, i.e. the per-frame cost every stitch point still pays).
GPU: ``--device cuda --dtype bfloat16 --full`` adds VGGT-1B at 13 frames 448x448.

    python benchmarks/bench_vggt.py
    python benchmarks/bench_vggt.py --device cuda --dtype bfloat16 --full
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from functools import partial
from pathlib import Path

import torch
from vist3a_vggt.config import VGGTArchitecture, parse_architecture, vggt_1b
from vist3a_vggt.decoder import DTYPES, VGGTDecoder
from vist3a_vggt.model import VGGT

TINY = Path(__file__).resolve().parents[2] / "shared/reference/vggt-tiny-a/config.json"


def tiny() -> VGGTArchitecture:
    if TINY.is_file():
        return parse_architecture(json.loads(TINY.read_text()), str(TINY))
    return mid(64, 2, 4, 4)


def mid(dim: int = 384, dino_depth: int = 12, depth: int = 12, heads: int = 6) -> VGGTArchitecture:
    """A ViT-S-sized encoder and aggregator with proportionally narrower heads."""
    idx = [depth // 6, depth // 2 - 1, 3 * depth // 4 - 1, depth - 1]
    dpt = {"dim_in": 2 * dim, "features": dim // 4, "out_channels": [dim // 4, dim // 2, dim, dim], "intermediate_layer_idx": idx}
    return VGGTArchitecture.model_validate({
        "aggregator": {"img_size": 518, "embed_dim": dim, "depth": depth, "num_heads": heads},
        "aggregator.patch_embed": {"img_size": 518, "embed_dim": dim, "depth": dino_depth, "num_heads": heads},
        "camera_head": {"dim_in": 2 * dim, "trunk_depth": 2, "num_heads": heads},
        "point_head": {**dpt, "output_dim": 4, "activation": "inv_log"},
        "depth_head": {**dpt, "output_dim": 2, "activation": "exp"},
        "track_head": None,
    })  # fmt: skip


def measure(fn, device: str, repeats: int) -> tuple[float, float]:
    """Median seconds and peak memory (GiB; CUDA allocator peak, or process max RSS on CPU)."""
    fn()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return sorted(times)[len(times) // 2], peak


def run(name: str, arch: VGGTArchitecture, frames: int, size: tuple[int, int], args: argparse.Namespace) -> list[str]:
    torch.manual_seed(0)
    with torch.device(args.device):
        model = VGGT(arch)
    decoder = VGGTDecoder(model).to(dtype=DTYPES[args.dtype])
    images = torch.rand(1, frames, 3, *size, device=args.device, dtype=DTYPES[args.dtype])
    dino = decoder.model.aggregator

    with torch.inference_mode():
        base_t, base_m = measure(lambda: dino.patch_embed.run(dino.embed(images)), args.device, args.repeats)
        full_t, full_m = measure(partial(decoder.reconstruct, images), args.device, args.repeats)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    del decoder, model
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return [name, f"{params:.1f}M", f"{frames}x{size[0]}x{size[1]}", args.dtype, f"{base_t * 1e3:.0f}",
            f"{full_t * 1e3:.0f}", f"{full_t / base_t:.2f}", f"{full_m:.2f}"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--full", action="store_true", help="add VGGT-1B, 13 frames 448x448 (GPU)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    cases = [("tiny (vggt-tiny-a)", tiny(), 4, (56, 84)), ("mid (ViT-S, 12+12)", mid(), 4, (224, 224))]
    if args.full:
        cases.append(("VGGT-1B", vggt_1b(), 13, (448, 448)))
    header = ["config", "params", "frames x H x W", "dtype", "baseline DINO ms", "VGGT ms", "ratio", "peak GiB"]
    rows = [run(*case, args) for case in cases]
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"device: {device}; torch {torch.__version__}; median of {args.repeats}; baseline = DINO encoder alone, same run")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
