"""Stitched decoding vs decode-then-reconstruct, and on a GPU the cost of every stage of ``vist3a generate``.

CPU (default): the real Wan 2.1 VAE and a mid-size VGGT (random weights) on a 9 x 128 x 128 video (decoder at 112):
(a) stitched = adapter + the VGGT layers after enc_blocks_2, from the latents; (b) decode-then-reconstruct = VAE
decode + the full VGGT on the decoded frames. Prints both times and the ratio (b) / (a), measured in the same run.

GPU (``--device cuda --dtype bfloat16 --full``): Wan2.1-1.3B's DiT (random weights, CFG = two calls per step), the
Wan VAE, VGGT-1B and AnySplat (random weights) at 13 x 512 x 512 (decoders at 448). Per stage: median time, peak
memory, FLOPs (torch.utils.flop_counter) and time / compute floor, the floor being FLOPs / a bf16 matmul rate measured
in the same run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from bench_vggt import mid
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from torch.utils.flop_counter import FlopCounterMode
from vist3a_anysplat import AnySplatConfig
from vist3a_anysplat.decoder import AnySplatDecoder
from vist3a_vggt import VGGTConfig
from vist3a_vggt.decoder import VGGTDecoder
from vist3a_vggt.model import VGGT

from vist3a.io.clips import resize_frames
from vist3a.protocols import LatentSpec
from vist3a.stitch.adapter import AdapterConfig
from vist3a.stitch.spec import derive_spec
from vist3a.stitch.stitched import StitchedConfig, StitchedDecoder

WAN_LATENT = LatentSpec(channels=16, spatial_factor=8, temporal_factor=4)


def timed(fn: Callable[[], object], device: str, repeats: int) -> tuple[float, float]:
    """Median seconds and peak memory in GiB (CUDA allocator; 0 on CPU) of ``fn`` after one warm-up."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    fn()
    sync()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else 0.0
    return sorted(times)[len(times) // 2], peak


def flops(fn: Callable[[], object]) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def stitched(decoder, size: tuple[int, int], device: str, dtype: torch.dtype) -> StitchedDecoder:
    """The decoder cut after DINO block 2, fed by Wan latents of frames 8/7 the decoder's size (512 for 448)."""
    point = next(p for p in decoder.stitch_points(size) if p.name == "enc_blocks_2")
    spec = derive_spec(WAN_LATENT, point, (size[0] * 8 // 7, size[1] * 8 // 7))
    config = StitchedConfig(decoder=decoder.name, stitch_point="enc_blocks_2", lora=None, decoder_resolution=size,
                            adapter=AdapterConfig(spec=str(spec), in_channels=16, temporal_factor=4))  # fmt: skip
    return StitchedDecoder(config, decoder).to(device=device, dtype=dtype).eval()


def matmul_rate(device: str, dtype: torch.dtype) -> float:
    a = torch.randn(8192, 8192, device=device, dtype=dtype)
    seconds, _ = timed(lambda: a @ a, device, 10)
    return 2 * 8192**3 / seconds


def cpu(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    vae = AutoencoderKLWan().eval()
    decoder = VGGTDecoder(VGGT(mid())).eval()
    model = stitched(decoder, (112, 112), "cpu", torch.float32)
    latents = torch.randn(1, 16, 3, 16, 16)
    with torch.no_grad():
        frames = vae.decode(latents).sample
        a, _ = timed(lambda: model(latents), "cpu", args.repeats)
        b, _ = timed(lambda: decoder.forward(decoder.preprocess(resize_frames(vae.decode(latents).sample, (112, 112)))), "cpu", args.repeats)
    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}; video {frames.shape[2]}x128x128, decoder 112x112, median of {args.repeats}")
    print("| path | seconds | ratio to stitched |\n|---|---:|---:|")
    print(f"| stitched (adapter + VGGT after enc_blocks_2) | {a:.2f} | 1.00 |")
    print(f"| decode-then-reconstruct (VAE decode + full VGGT) | {b:.2f} | {b / a:.2f} |")


def gpu(args: argparse.Namespace) -> None:
    device, dtype = "cuda", getattr(torch, args.dtype)
    torch.manual_seed(0)
    with torch.device(device):
        dit = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                                    out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30,
                                    cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6).to(dtype).eval()  # fmt: skip
        vae = AutoencoderKLWan().to(dtype).eval()
        vggt = VGGTDecoder.from_config(VGGTConfig(device=device, dtype=args.dtype))
        anysplat = AnySplatDecoder.from_config(AnySplatConfig(device=device, dtype=args.dtype))
    latents = torch.randn(1, 16, 4, 64, 64, device=device, dtype=dtype)
    text = torch.randn(1, 512, 4096, device=device, dtype=dtype)
    t = torch.tensor([500.0], device=device)
    with torch.no_grad():
        frames = resize_frames(vae.decode(latents).sample.float(), (448, 448)).to(dtype)
        stages = {
            "DiT step (CFG, x2 calls)": lambda: [dit(hidden_states=latents, timestep=t, encoder_hidden_states=text) for _ in range(2)],
            "VAE decode": lambda: vae.decode(latents),
            "VGGT-1B stitched": lambda m=stitched(vggt, (448, 448), device, dtype): m(latents),
            "VGGT-1B full (after decode)": lambda: vggt.forward(vggt.preprocess(frames)),
            "AnySplat stitched (+ RGB)": lambda m=stitched(anysplat, (448, 448), device, dtype): m(latents, frames),
            "AnySplat full (after decode)": lambda: anysplat.forward(anysplat.preprocess(frames)),
        }
        rate = matmul_rate(device, dtype)
        print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.dtype}; 13x512x512 video, decoders at 448; "
              f"matmul rate {rate / 1e12:.0f} TFLOP/s; median of {args.repeats}")
        print("| stage | ms | peak GiB | TFLOPs | time / compute floor |\n|---|---:|---:|---:|---:|")
        for name, fn in stages.items():
            seconds, peak = timed(fn, device, args.repeats)
            work = flops(fn)
            print(f"| {name} | {seconds * 1e3:.1f} | {peak:.2f} | {work / 1e12:.2f} | {seconds / (work / rate):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--full", action="store_true", help="the real-size GPU stages")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    gpu(args) if args.full else cpu(args)


if __name__ == "__main__":
    main()
