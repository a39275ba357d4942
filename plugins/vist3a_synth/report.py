"""The measurements behind docs/synth.md's report on a stitched pairing of the world (``vist3a synth report``).

- :func:`noise_robustness`: stitched decoding vs decode-then-reconstruct of noised latents ``z + a * rms(z) * eps``,
  scored against the ground truth (VIST3A Fig. 8).
- :func:`generation_scores`: rewards, 3D consistency and attribute accuracy of generated scenes for one LoRA (or
  none), and the agreement of the stitched decoder's geometry with the original decoder run on the generated video.

Depth is compared after a per-clip median scale alignment (``abs_rel``); cameras by the angle of each view's rotation
relative to view 0 (``rotation_error``), which needs no scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from vist3a.io.clips import resize_frames
from vist3a.pipeline import Vist3aPipeline
from vist3a.protocols import Decoder3D
from vist3a.scene import Decoded3D
from vist3a.stitch.stitched import StitchedDecoder
from vist3a.stitch.workspace import PairWorkspace
from vist3a_synth.classifier import attribute_accuracy
from vist3a_synth.data import SynthClips


def abs_rel(pred: Tensor, target: Tensor, valid: Tensor) -> float:
    """Mean ``|s*pred - target| / target`` over ``valid`` pixels, ``s`` the per-clip median ratio; inputs ``[N,...]``."""
    errors = []
    for p, t, v in zip(pred, target, valid):
        p, t = p[v], t[v]
        scale = (t.median() / p.median().clamp_min(1e-8)) if p.numel() else 1.0
        errors.append(((scale * p - t).abs() / t).mean())
    return torch.stack(errors).mean().item()


def rotation_error(pred: Tensor, target: Tensor) -> float:
    """Mean angle (degrees) between predicted and true rotations of views 1.. relative to view 0; ``[N,V,4,4]``."""
    def relative(ext: Tensor) -> Tensor:
        rot = ext[..., :3, :3]
        return rot[:, 1:] @ rot[:, :1].transpose(-1, -2)

    diff = relative(pred) @ relative(target).transpose(-1, -2)
    cos = ((diff.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos)).mean().item()


def _original(decoder: Decoder3D, frames: Tensor) -> Decoded3D:
    return decoder(decoder.preprocess(frames))


def _depth_at(decoded: Decoded3D, size: tuple[int, int]) -> Tensor:
    depth = decoded.points.depth  # type: ignore[union-attr]
    return torch.nn.functional.interpolate(depth, size=size, mode="nearest") if tuple(depth.shape[-2:]) != size else depth


@torch.no_grad()
def noise_robustness(pair: Path, alphas: Sequence[float], *, clips: int = 16, seed: int = 0,
                     device: str = "cpu") -> list[dict[str, float]]:  # fmt: skip
    """Depth abs-rel and rotation error against the ground truth of ``clips`` test scenes, for stitched decoding and
    for decode-then-reconstruct, at each latent noise level ``alpha``; the models run on ``device``."""
    workspace = PairWorkspace.load(pair)
    generator, decoder = workspace.load_models(device)
    stitched = StitchedDecoder.from_pretrained(pair / "stitched", device=device)
    data = SynthClips(clips, workspace.frames, workspace.generator_resolution, seed, "test")
    samples = [data.sample(i) for i in range(clips)]
    frames = torch.stack([s.frames for s in samples])
    depth, extrinsics = torch.stack([s.depth for s in samples]), torch.stack([s.extrinsics for s in samples])
    latents = generator.encode(frames)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed)).to(latents.device)
    rows = []
    for alpha in alphas:
        noisy = latents + alpha * latents.square().mean().sqrt() * noise
        video = generator.decode(noisy).float().clamp(-1, 1)
        decoder_video = resize_frames(video, stitched.config.decoder_resolution)
        row = {"alpha": alpha}
        for name, out in (("stitched", stitched(noisy, decoder_video)), ("decode+reconstruct", _original(decoder, decoder_video))):
            out = out.to("cpu", torch.float32)
            row[f"{name} abs_rel"] = abs_rel(_depth_at(out, depth.shape[-2:]), depth, depth > 0)
            row[f"{name} rot_deg"] = rotation_error(out.cameras.extrinsics, extrinsics)  # type: ignore[union-attr]
        rows.append(row)
    return rows


@torch.no_grad()
def generation_scores(pipeline: Vist3aPipeline, decoder: Decoder3D, prompts: Sequence[str], rewards: dict[str, object], *,
                      steps: int, guidance: float, seed: int = 0) -> dict[str, float]:  # fmt: skip
    """Mean reward values, attribute accuracy, and stitched-vs-original geometry agreement over ``prompts``."""
    options = pipeline.options(steps=steps, guidance=guidance, seed=seed, template="none")
    totals: dict[str, float] = {}
    videos, depth_gaps, rotation_gaps = [], [], []
    for i, prompt in enumerate(prompts):
        generation = pipeline(prompt, options.model_copy(update={"seed": seed + i}))
        frames, decoded = generation.frames, generation.decoded
        for name, reward in rewards.items():
            totals[name] = totals.get(name, 0.0) + reward(prompts=[prompt], frames=frames, decoded=decoded).mean().item()  # type: ignore[operator]
        original = _original(decoder, resize_frames(frames, pipeline.stitched.config.decoder_resolution))
        target = original.points.depth  # type: ignore[union-attr]
        depth_gaps.append(abs_rel(decoded.points.depth, target, target > 0))  # type: ignore[union-attr]
        rotation_gaps.append(rotation_error(decoded.cameras.extrinsics, original.cameras.extrinsics))  # type: ignore[union-attr]
        videos.append(frames.cpu())
    scores = {name: value / len(prompts) for name, value in totals.items()}
    scores["attribute accuracy"] = attribute_accuracy(torch.cat(videos), list(prompts))
    scores["stitched vs original depth abs_rel"] = sum(depth_gaps) / len(depth_gaps)
    scores["stitched vs original rotation deg"] = sum(rotation_gaps) / len(rotation_gaps)
    return scores


def held_out_prompts(count: int, seed: int = 0) -> list[str]:
    """Captions of ``count`` test-split scenes: every one asks for a colour-shape pair never seen in training."""
    clips = SynthClips(count, 1, (8, 8), seed, "test")
    return [clips.caption(i) for i in range(count)]


def markdown(rows: Sequence[dict[str, object]]) -> str:
    """A markdown table of ``rows`` (dicts with the same keys); floats to 4 significant digits."""
    keys = list(rows[0])
    cells = [[f"{row[k]:.4g}" if isinstance(row[k], float) else str(row[k]) for k in keys] for row in rows]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)] + ["| " + " | ".join(c) + " |" for c in cells]
    return "\n".join(lines)
