"""Encode / decode time and peak memory of the full-size Wan 2.1 VAE (random weights).

Cases: encode, decode (no gradients), and decode + backward without and with vist3a's per-frame checkpointed
decode (the path the aligner uses). Each case runs in a fresh process so that peak memory is its own: on CPU the
peak resident memory above the loaded model, on CUDA ``torch.cuda.max_memory_allocated`` above the model.

    python benchmarks/bench_wan_vae.py                                   # CPU, float32, 13 x 256 x 256
    python benchmarks/bench_wan_vae.py --device cuda --dtype bfloat16 --size 512
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import resource
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

CASES = ("encode", "decode", "decode+backward", "decode+backward (checkpointed)")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _run_case(case: str, args: argparse.Namespace, queue: mp.Queue) -> None:
    import torch
    from diffusers import AutoencoderKLWan
    from vist3a_wan.generator import WanGenerator

    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    vae = AutoencoderKLWan().to(args.device, dtype).eval().requires_grad_(False)
    frames = torch.rand(1, 3, args.frames, args.size, args.size, device=args.device, dtype=dtype) * 2 - 1
    with torch.no_grad():
        latents = vae.encode(frames).latent_dist.mode()
    holder = SimpleNamespace(pipe=SimpleNamespace(vae=vae))  # the only state the checkpointed decode reads

    def once() -> None:
        if case == "encode":
            with torch.no_grad():
                vae.encode(frames).latent_dist.mode()
        elif case == "decode":
            with torch.no_grad():
                vae.decode(latents, return_dict=False)
        else:
            z = latents.clone().requires_grad_(True)
            decode = WanGenerator._decode_checkpointed if "checkpointed" in case else lambda _, x: vae.decode(x).sample
            decode(holder, z).float().square().mean().backward()

    cuda = args.device.startswith("cuda")
    for _ in range(args.warmup):
        once()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        once()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put((min(times), max(peak - base, 0)))


def in_fresh_process(target: Callable[..., None], *args: Any) -> Any:
    """What ``target(*args, queue)`` puts on the queue, run in a spawned process (so its peak memory is its own)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def measure(case: str, args: argparse.Namespace) -> tuple[float, int]:
    return in_fresh_process(_run_case, case, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=13)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (default: 1 on CPU, 3 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: 0 on CPU, 1 on CUDA)")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    args.repeats = args.repeats or (3 if cuda else 1)
    args.warmup = (1 if cuda else 0) if args.warmup is None else args.warmup

    import torch

    machine = torch.cuda.get_device_name() if cuda else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"Wan 2.1 VAE (random weights), {args.frames}x{args.size}x{args.size}, {args.dtype} on {args.device} ({machine}), "
          f"torch {torch.__version__}, best of {args.repeats}, warmup {args.warmup}")  # fmt: skip
    results = {case: measure(case, args) for case in args.cases}
    ref_time = results.get("decode", next(iter(results.values())))[0]
    ref_mem = results.get("decode+backward", next(iter(results.values())))[1] or 1
    print("| case | time (s) | time / decode | peak memory (MiB) | memory / decode+backward |")
    print("|---|---:|---:|---:|---:|")
    for case, (seconds, peak) in results.items():
        print(f"| {case} | {seconds:.2f} | {seconds / ref_time:.2f} | {peak / 2**20:.0f} | {peak / ref_mem:.2f} |")


if __name__ == "__main__":
    main()
