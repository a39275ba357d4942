"""``vist3a synth demo``: the whole VIST3A recipe on the synthetic world, through the same commands a user runs.

pair -> sweep-layers -> stitch -> align -> generate, on the world's own generator (``synth-wan``) and 3D model
(``synth-anysplat``). Each stage is skipped when its output exists, so an interrupted demo continues where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import typer

from vist3a.errors import InputError
from vist3a_synth.data import SynthClips

GENERATOR, DECODER = "synth-wan", "synth-anysplat"
DEMO_PROMPT = "a red cone to the left of a blue sphere"  # both colour-shape pairs are held out of training


@dataclass(frozen=True)
class DemoScale:
    """How much work each stage does."""

    clips: int
    stitch_steps: int
    align_steps: int
    rollout_steps: int
    generate_steps: int
    render_frames: int


SCALES = {
    "quick": DemoScale(clips=8, stitch_steps=4, align_steps=2, rollout_steps=2, generate_steps=4, render_frames=8),
    "full": DemoScale(clips=64, stitch_steps=300, align_steps=150, rollout_steps=8, generate_steps=20, render_frames=60),
}


def stages(out: Path, scale: DemoScale, seed: int, device: str = "auto") -> list[tuple[str, Path, list[str]]]:
    """``(name, output that marks it done, vist3a argv)`` for every stage, in order; the stages that run models run
    them on ``device``."""
    pair, align = out / "pair", out / "align"
    data = f"synthetic:{scale.clips}"
    on_device = ["--device", device]
    return [
        ("pair", pair / "pair.yaml", ["pair", GENERATOR, DECODER, "--out", str(pair)]),
        ("sweep-layers", pair / "sweep.json", ["sweep-layers", "--pair", str(pair), "--data", data, "--clips", str(scale.clips), *on_device]),
        ("stitch", pair / "stitched", ["stitch", "--pair", str(pair), "--data", data, "--clips", str(scale.clips),
                                       "--steps", str(scale.stitch_steps), "--warmup", str(scale.stitch_steps // 10),
                                       "--lora-rank", "8", "--lora-alpha", "16", *on_device]),
        ("align", align / "lora_ema", ["align", "--pair", str(pair), "--prompts", str(out / "prompts.txt"),
                                       "--out", str(align), "--steps", str(scale.align_steps),
                                       "--min-steps", str(scale.rollout_steps), "--max-steps", str(scale.rollout_steps),
                                       "--grad-steps", "1", "--reward", "synth-clip=1.0", "--reward", "consistency=1.0",
                                       "--reward-option", "consistency.lpips_weight=0", "--seed", str(seed), *on_device]),
        ("generate", out / "generate", ["generate", DEMO_PROMPT, "--pair", str(pair), "--lora", str(align / "lora_ema"),
                                        "--steps", str(scale.generate_steps), "--render-frames", str(scale.render_frames), "--template", "none", "--seed", str(seed),
                                        "--out", str(out / "generate"), *on_device]),
    ]  # fmt: skip


def write_prompts(path: Path, count: int = 64) -> None:
    """Training prompts for the aligner: captions of train-split scenes (one per line)."""
    if not path.exists():
        clips = SynthClips(count, 1, (8, 8))
        path.write_text("".join(clips.caption(i) + "\n" for i in range(count)))


def run_demo(out: Path, scale: str, seed: int = 0, device: str = "auto") -> dict[str, Path]:
    """Run every stage not yet done; returns where each stage's output went."""
    from vist3a.cli import main

    if scale not in SCALES:
        raise InputError(f"--scale must be one of {', '.join(SCALES)}, got {scale!r}")
    out.mkdir(parents=True, exist_ok=True)
    write_prompts(out / "prompts.txt")
    done = {}
    for name, marker, argv in stages(out, SCALES[scale], seed, device):
        if not marker.exists():
            print(f"== {name}: vist3a {' '.join(argv)}")
            started = time.monotonic()
            code = main(argv)
            if code:
                raise typer.Exit(code)  # the stage has printed its one-line error
            print(f"== {name} done in {time.monotonic() - started:.0f} s")
        done[name] = marker
    return done
