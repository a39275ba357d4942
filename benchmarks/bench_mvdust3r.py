"""Forward time and peak memory of the vist3a MV-DUSt3R+ decoder (random weights).

CPU (default): the tiny reference config and a mid-size config (ViT-S encoder), against a baseline measured in the
same run (the encoder of the same config alone, the per-view cost every stitch point still pays).
GPU: ``--device cuda --dtype bfloat16 --full`` adds the released MV-DUSt3R+ (n_ref 4) at 13 views of 224x224.

    python benchmarks/bench_mvdust3r.py
    python benchmarks/bench_mvdust3r.py --device cuda --dtype bfloat16 --full
"""

from __future__ import annotations

import argparse
import json
import platform
from functools import partial
from pathlib import Path

import torch
from bench_vggt import measure
from vist3a_mvdust3r.config import MVDUSt3RArchitecture, parse_architecture, released
from vist3a_mvdust3r.decoder import MVDUSt3RDecoder
from vist3a_mvdust3r.model import MVDUSt3R
from vist3a_vggt.decoder import DTYPES

TINY = Path(__file__).resolve().parents[2] / "shared/reference/mvdust3r-tiny-a/config.json"


def tiny() -> MVDUSt3RArchitecture:
    if TINY.is_file():
        return parse_architecture(json.loads(TINY.read_text()), str(TINY))
    return mid(64, 2, 4, 48, 2, 4)


def mid(enc: int = 384, enc_depth: int = 12, enc_heads: int = 6, dec: int = 256, dec_depth: int = 6, dec_heads: int = 4) -> MVDUSt3RArchitecture:
    """MV-DUSt3R+ with a ViT-S encoder and a narrower, shallower decoder (heads keep upstream's hard-coded widths)."""
    arch = released(n_ref=3).to_json()["model"]
    arch["args"] |= {"enc_embed_dim": enc, "enc_depth": enc_depth, "enc_num_heads": enc_heads, "dec_embed_dim": dec,
                     "dec_depth": dec_depth, "dec_num_heads": dec_heads}  # fmt: skip
    return parse_architecture({"model": arch}, "mid config")


def run(name: str, arch: MVDUSt3RArchitecture, views: int, args: argparse.Namespace) -> list[str]:
    torch.manual_seed(0)
    size = arch.args.img_size
    with torch.device(args.device):
        decoder = MVDUSt3RDecoder(MVDUSt3R(arch)).to(dtype=DTYPES[args.dtype])
    images = torch.rand(1, views, 3, *size, device=args.device, dtype=DTYPES[args.dtype])
    model, grid = decoder.model, decoder.model.grid(size)
    with torch.inference_mode():
        base_t, _ = measure(lambda: model.encode(model.embed(images), grid), args.device, args.repeats)
        full_t, full_m = measure(partial(decoder.reconstruct, images), args.device, args.repeats)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return [name, f"{params:.1f}M", f"{views}x{size[0]}x{size[1]}", str(arch.n_ref), args.dtype, f"{base_t * 1e3:.0f}",
            f"{full_t * 1e3:.0f}", f"{full_t / base_t:.2f}", f"{full_m:.2f}"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--full", action="store_true", help="add the released MV-DUSt3R+, 13 views 224x224 (GPU)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    cases = [("tiny (mvdust3r-tiny-a)", tiny(), 4), ("mid (ViT-S enc, 6-block dec)", mid(), 4)]
    if args.full:
        cases.append(("MV-DUSt3R+ (released)", released(), 13))
    header = ["config", "params", "views x H x W", "n_ref", "dtype", "baseline encoder ms", "MV-DUSt3R+ ms", "ratio", "peak GiB"]
    rows = []
    for case in cases:
        rows.append(run(*case, args))
        if args.device == "cuda":
            torch.cuda.empty_cache()
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"device: {device}; torch {torch.__version__}; median of {args.repeats}; baseline = encoder alone, same run")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
