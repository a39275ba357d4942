"""``vist3a synth report``: the numbers of docs/synth.md's report for a stitched pairing of the world."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vist3a.commands.options import DeviceOpt
from vist3a_synth.cli import app


@app.command()
def report(
    pair: Annotated[Path, typer.Option(help="A stitched pairing workspace of the world (e.g. runs/demo/pair).")],
    lora: Annotated[list[str], typer.Option(help="NAME=DIR of an aligned LoRA to score, repeatable; the base model is always scored.", show_default=False)] = [],  # noqa: B006
    prompts: Annotated[int, typer.Option(min=1, help="Test-split captions to generate from.")] = 16,
    clips: Annotated[int, typer.Option(min=1, help="Test clips for the latent-noise comparison.")] = 16,
    alphas: Annotated[str, typer.Option(help="Latent noise levels, comma-separated.")] = "0,0.1,0.25,0.5,1",
    steps: Annotated[int, typer.Option(min=1)] = 30,
    guidance: Annotated[float, typer.Option(min=0.0)] = 4.0,
    out: Annotated[Path | None, typer.Option(help="Also write the numbers as JSON here.")] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Latent-noise robustness of stitched vs decode-then-reconstruct, and generation scores per LoRA."""
    import vist3a
    from vist3a.errors import InputError
    from vist3a.pipeline import Vist3aPipeline, load_lora
    from vist3a.stitch.workspace import PairWorkspace
    from vist3a_synth import report as measure

    variants = {"base": None}
    for item in lora:
        name, sep, folder = item.partition("=")
        if not sep or not Path(folder).is_dir():
            raise InputError(f"--lora {item!r}: expected NAME=DIR with an existing LoRA folder")
        variants[name] = folder
    try:
        levels = [float(a) for a in alphas.split(",")]
    except ValueError:
        raise InputError(f"--alphas {alphas!r}: expected comma-separated numbers") from None
    noise = measure.noise_robustness(pair, levels, clips=clips, device=device)
    print(measure.markdown(noise))
    ref = PairWorkspace.load(pair).decoder
    decoder = vist3a.load_decoder(ref.id, ref.checkpoint, device=device)
    rewards = {"synth-clip": vist3a.load_reward("synth-clip", device=device),
               "consistency": vist3a.load_reward("consistency", lpips_weight=0, device=device)}
    texts, scores = measure.held_out_prompts(prompts), []
    for name, folder in variants.items():
        pipeline = Vist3aPipeline.from_pair(pair, device=device)
        if folder:
            load_lora(pipeline.generator, folder)
        scores.append({"lora": name, **measure.generation_scores(pipeline, decoder, texts, rewards, steps=steps, guidance=guidance)})
    print(measure.markdown(scores))
    if out:
        out.write_text(json.dumps({"noise": noise, "generation": scores}, indent=2))
