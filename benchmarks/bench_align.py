"""Time and peak memory of one alignment step (``vist3a.align.trainer.align``), with and without checkpointing.

A step is the trainer's own: a 4-step rollout with CFG (gradients at one random step and the last), VAE decode,
stitched VGGT, a differentiable stand-in reward on the frames and the depth, backward, clipping, AdamW and the EMA.
``align()`` runs a warm-up step, then the timed step, and is stopped before it saves anything. Random weights
throughout; a tiny UMT5 stands in for the text encoder (the prompt embedding is cached after the warm-up).

Configs: ``tiny`` (the tests' tiny Wan + the vggt-tiny-a architecture, 5 x 32 x 48), ``mid`` (a 4-layer, 384-wide
Wan DiT, a 32-channel Wan VAE, a 4 + 4 block 256-wide VGGT, 9 x 128 x 128) and ``full`` (Wan2.1-1.3B's DiT and VAE,
VGGT-1B, ``--frames`` x ``--size`` x ``--size``; needs a GPU). Checkpointing: none; the DiT's blocks; the DiT plus the
checkpointed VAE decode (what ``vist3a align --gradient-checkpointing`` does). Each case runs in a fresh
process; peak memory is the rise above the loaded models (CPU: peak resident memory; CUDA: max_memory_allocated).

    python benchmarks/bench_align.py                                          # CPU: tiny and mid
    python benchmarks/bench_align.py --device cuda --dtype bfloat16 --configs full --size 512 --frames 13
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import platform
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKPOINTING = ("none", "DiT", "DiT + decode")
PROMPT = "a red car in a room"


@dataclass(frozen=True)
class Case:
    config: str
    checkpointing: str


class _Stop(Exception):
    """Ends ``align()`` after the timed step."""


class StandIn:
    """A differentiable stand-in reward: mean frame intensity plus the mean of tanh(depth) of the 3D output."""

    name = "stand-in"

    def __call__(self, *, prompts: Any, frames: Any = None, renders: Any = None, decoded: Any = None) -> Any:
        return frames.flatten(1).mean(1) + decoded.points.depth.flatten(1).float().tanh().mean(1)


def wan_pipeline(*, heads: int, head_dim: int, layers: int, ffn: int, text_dim: int, vae_dim: int) -> Any:
    """A random ``WanPipeline``: Wan 2.1's DiT and VAE classes at the given sizes (their other settings are Wan
    2.1's), a one-layer UMT5 of width ``text_dim`` and the tests' in-process tokenizer."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from vist3a.generators.tiny import eval_mode, tiny_tokenizer, vocab_size

    transformer = WanTransformer3DModel(num_attention_heads=heads, attention_head_dim=head_dim, ffn_dim=ffn,
                                        num_layers=layers, text_dim=text_dim)  # fmt: skip
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=vocab_size(), d_model=text_dim, d_kv=8, d_ff=37, num_layers=1,
                                               num_heads=4, relative_attention_num_buckets=8))  # fmt: skip
    return eval_mode(WanPipeline(tokenizer=tiny_tokenizer(), text_encoder=text_encoder, vae=AutoencoderKLWan(base_dim=vae_dim),
                                 transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0)))  # fmt: skip


def build(config: str, args: argparse.Namespace) -> tuple[Any, str]:
    """The ``Vist3aPipeline`` of ``config`` on ``args.device`` / ``args.dtype``, and its video shape."""
    import torch
    from bench_generate import stitched
    from bench_vggt import mid, tiny
    from vist3a_vggt.config import vggt_1b
    from vist3a_vggt.decoder import DTYPES, VGGTDecoder
    from vist3a_vggt.model import VGGT
    from vist3a_wan.generator import WanGenerator

    from vist3a.generators.diffusers_video import place_pipeline
    from vist3a.generators.options import DiffusersVideoConfig
    from vist3a.pipeline import Vist3aPipeline

    torch.manual_seed(0)
    if config == "tiny":
        pipe, arch, frames, (height, width) = WanGenerator.tiny_pipeline(), tiny(), 5, (32, 48)
    elif config == "mid":
        pipe = wan_pipeline(heads=6, head_dim=64, layers=4, ffn=1024, text_dim=256, vae_dim=32)
        arch, frames, (height, width) = mid(dim=256, dino_depth=4, depth=4, heads=4), 9, (128, 128)
    else:  # Wan2.1-T2V-1.3B: 30 layers, 12 heads x 128 = 1536 wide, FFN 8960, UMT5-XXL width 4096; the full VAE
        pipe = wan_pipeline(heads=12, head_dim=128, layers=30, ffn=8960, text_dim=4096, vae_dim=96)
        arch, frames, (height, width) = vggt_1b(), args.frames, (args.size, args.size)
    options = DiffusersVideoConfig(device=args.device, dtype=args.dtype)
    generator = WanGenerator(place_pipeline(pipe, options), options)
    with torch.device(args.device):
        decoder = VGGTDecoder(VGGT(arch)).to(dtype=DTYPES[args.dtype])
    model = stitched(decoder, (height * 7 // 8, width * 7 // 8), args.device, DTYPES[args.dtype])
    pipeline = Vist3aPipeline(generator, model, frames=frames, resolution=(height, width), source={"benchmark": config})
    dit, vggt = (_count(m) for m in (generator.trainable(), decoder))
    return pipeline, f"DiT {dit}, VGGT {vggt}, {frames}x{height}x{width}"


def _count(module: Any) -> str:
    n = sum(p.numel() for p in module.parameters())
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def enable_checkpointing(pipeline: Any, mode: str) -> None:
    """``DiT``: the denoiser's blocks only; ``DiT + decode``: also the VAE decode, as ``vist3a align
    --gradient-checkpointing`` does."""
    from vist3a.align.trainer import enable_gradient_checkpointing

    if mode != "none":
        enable_gradient_checkpointing(pipeline.generator, decode=mode == "DiT + decode")


def _start_memory(cuda: bool) -> int:
    """Reset the peak (CPU: the kernel's high-water mark, where /proc allows it) and return the current use."""
    import torch
    from bench_wan_vae import _rss_bytes

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # ru_maxrss then also covers building the models
    return _rss_bytes()


def _peak_memory(cuda: bool) -> int:
    import torch

    return torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _run_case(case: Case, args: argparse.Namespace, queue: mp.Queue) -> None:
    import torch

    from vist3a.align.lora import LoraOptions
    from vist3a.align.prompts import PromptSampler
    from vist3a.align.rollout import RolloutConfig
    from vist3a.align.trainer import AlignConfig, align

    pipeline, shape = build(case.config, args)
    enable_checkpointing(pipeline, case.checkpointing)
    rollout = RolloutConfig(min_steps=args.rollout_steps, max_steps=args.rollout_steps, grad_steps=1)
    config = AlignConfig(steps=3, checkpoint_every=1000, rollout=rollout, lora=LoraOptions(rank=args.lora_rank))
    cuda, marks = args.device.startswith("cuda"), []

    def on_step(step: int, record: dict[str, float]) -> None:
        if not math.isfinite(record["loss"]):
            raise RuntimeError(f"step {step}: non-finite loss, the trainer skipped its backward pass")
        if cuda:
            torch.cuda.synchronize()
        marks.append(time.perf_counter())
        if step == 2:
            raise _Stop

    base = _start_memory(cuda)
    with tempfile.TemporaryDirectory() as directory:
        try:
            align(pipeline, {StandIn.name: (StandIn(), 1.0)}, PromptSampler([PROMPT], templates=["{prompt}"]), config,
                  Path(directory), on_step=on_step)  # fmt: skip
        except _Stop:
            pass
    queue.put((shape, marks[1] - marks[0], max(_peak_memory(cuda) - base, 0)))


def measure(case: Case, args: argparse.Namespace) -> tuple[str, float, int]:
    """Shape, seconds and peak memory (bytes) of one case, in a fresh process."""
    from bench_wan_vae import in_fresh_process

    return in_fresh_process(_run_case, case, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--configs", nargs="+", default=["tiny", "mid"], choices=["tiny", "mid", "full"])
    parser.add_argument("--checkpointing", nargs="+", default=list(CHECKPOINTING), choices=CHECKPOINTING)
    parser.add_argument("--size", type=int, default=512, help="full: video height and width")
    parser.add_argument("--frames", type=int, default=13, help="full: video frames")
    parser.add_argument("--rollout-steps", type=int, default=4)
    parser.add_argument("--lora-rank", type=int, default=8)
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")

    import torch

    machine = torch.cuda.get_device_name() if cuda else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"  # fmt: skip
    print(f"one alignment step after one warm-up, {args.dtype} on {args.device} ({machine}), torch {torch.__version__}; "
          f"rollout {args.rollout_steps} steps with CFG, gradients at 1 random step + the last, LoRA rank {args.lora_rank}")  # fmt: skip
    print("| config | models, video | checkpointing | time (s) | time / none | peak memory (MiB) | memory / none |")
    print("|---|---|---|---:|---:|---:|---:|")
    for config in args.configs:
        results = {mode: measure(Case(config, mode), args) for mode in args.checkpointing}
        _, ref_time, ref_mem = results.get("none", next(iter(results.values())))
        for mode, (shape, seconds, peak) in results.items():
            print(f"| {config} | {shape} | {mode} | {seconds:.2f} | {seconds / ref_time:.2f} | {peak / 2**20:.0f} | "
                  f"{peak / (ref_mem or 1):.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
