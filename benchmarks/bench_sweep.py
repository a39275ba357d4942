"""The layer sweep three ways: vist3a's one streaming pass for every layer, the official design (cache every layer's
features, fit afterwards) and one streaming pass per layer. Prints wall time, the data each keeps in memory and the
largest difference between their adapters, for several numbers of clips.

Models: a tiny Wan pipeline (diffusers' real classes, random weights) and a small VGGT (8 DINO blocks = 8 stitch
points, random weights), 5 frames, 32x48 generator and 28x42 decoder frames; clips are ``synthetic:N``.

    python benchmarks/bench_sweep.py [--clips 8 16 32]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import vist3a_wan
from bench_vggt import mid
from vist3a_vggt.decoder import VGGTDecoder
from vist3a_vggt.model import VGGT
from vist3a_wan.generator import WanGenerator

from vist3a.generators.options import DiffusersVideoConfig
from vist3a.io.clips import open_clips, resize_frames
from vist3a.stitch.adapter import im2col, interpolate_latents, tokens_to_rows
from vist3a.stitch.spec import StitchSpec, derive_spec
from vist3a.stitch.statistics import SweepStatistics
from vist3a.stitch.sweep import SweepSetup, run_sweep

GEN_SIZE, DEC_SIZE, FRAMES = (32, 48), (28, 42), 5


def models():
    generator = WanGenerator(vist3a_wan.tiny_pipeline(seed=0), DiffusersVideoConfig(tiny=True))
    torch.manual_seed(0)
    decoder = VGGTDecoder(VGGT(mid(dim=64, dino_depth=8, depth=4, heads=4))).eval()
    points = decoder.stitch_points(DEC_SIZE)
    specs = {p.name: str(derive_spec(generator.latent, p, GEN_SIZE)) for p in points}
    return generator, decoder, SweepSetup(points, specs, GEN_SIZE, DEC_SIZE, heldout=0.0)


def held_mib(tensors) -> float:
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def streaming(generator, decoder, clips, setup):
    sweep = run_sweep(generator, decoder, clips, setup)
    fits = sweep.fits()
    return {n: f.weight for n, f in fits.items()}, held_mib(t for s in sweep.stats.values() for t in s.tensors.values())


def per_layer(generator, decoder, clips, setup):
    weights, held = {}, 0.0
    for point in setup.points:
        one = SweepSetup([point], {point.name: setup.specs[point.name]}, GEN_SIZE, DEC_SIZE, heldout=0.0)
        sweep = run_sweep(generator, decoder, clips, one)
        weights[point.name] = sweep.fits()[point.name].weight
        held = max(held, held_mib(t for s in sweep.stats.values() for t in s.tensors.values()))
    return weights, held


def cached(generator, decoder, clips, setup):
    """Keep X and every layer's Y for all clips (float32), then fit each layer from the cache."""
    names = [p.name for p in setup.points]
    xs, ys = [], {n: [] for n in names}
    with torch.no_grad():
        for i in range(len(clips)):
            frames = clips[i][None]
            latents = generator.encode(resize_frames(frames, GEN_SIZE))
            features = decoder.forward_features(decoder.preprocess(resize_frames(frames, DEC_SIZE)), names)
            xs.append(im2col(interpolate_latents(latents.double(), generator.latent.temporal_factor), StitchSpec.parse(setup.specs[names[0]])).float())
            for n in names:
                ys[n].append(tokens_to_rows(features[n]).float())
    x = torch.cat(xs)
    cache = [x, *(torch.cat(v) for v in ys.values())]
    weights = {}
    for n in names:
        stats = SweepStatistics(x.shape[1], {n: ys[n][0].shape[1]})
        stats.update("fit", x, {n: torch.cat(ys[n])})
        weights[n] = stats.solve(n).weight
    return weights, held_mib(cache)


METHODS = {
    "one pass, all layers (vist3a)": streaming,
    "cache features, fit after (official)": cached,
    "one pass per layer": per_layer,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, nargs="+", default=[8, 16, 32])
    args = parser.parse_args()
    generator, decoder, setup = models()
    warmup = open_clips("synthetic:2", frames=FRAMES, size=GEN_SIZE)
    for method in METHODS.values():  # first calls pay one-off costs (allocator, thread pools)
        method(generator, decoder, warmup, setup)
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"{len(setup.points)} stitch points; baseline = one streaming pass (vist3a), same run")
    print("| clips | method | wall s | time / baseline | data held MiB | max abs weight diff vs baseline |")
    print("|---:|---|---:|---:|---:|---:|")
    for n in args.clips:
        clips = open_clips(f"synthetic:{n}", frames=FRAMES, size=GEN_SIZE)
        results = {}
        for name, method in METHODS.items():
            start = time.perf_counter()
            weights, held = method(generator, decoder, clips, setup)
            results[name] = (time.perf_counter() - start, held, weights)
        base_time, _, base = results["one pass, all layers (vist3a)"]
        for name, (seconds, held, weights) in results.items():
            diff = max(float((weights[k].double() - base[k].double()).abs().max()) for k in base)
            print(f"| {n} | {name} | {seconds:.2f} | {seconds / base_time:.2f} | {held:.2f} | {diff:.2e} |")


if __name__ == "__main__":
    main()
