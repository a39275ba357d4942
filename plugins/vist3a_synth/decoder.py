"""``synth-anysplat``: a small AnySplat (our vist3a_anysplat model) for the world's 9-frame 64x64 clips, its training
losses and its held-out metrics.

Scale: the world has a fixed metric scale (cameras 3.6-4.4 units from the scene centre), so the model is trained in
it, VGGT-style relative to the first input view: depth is the GT z-depth, the pose encoding's translation is that of
the GT world-to-camera relative to view 0 (``E_i E_0^-1``), and the Gaussians live in view 0's camera frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import Tensor
from vist3a_anysplat import AnySplatConfig
from vist3a_anysplat.decoder import AnySplatDecoder

from vist3a.config import StrictModel
from vist3a.render import render
from vist3a.scene import Cameras, Decoded3D
from vist3a_synth.raycast import SKY

NAME = "synth-anysplat"
WEIGHTS = Path(__file__).parent / "weights" / NAME
SIZE, FRAMES = 64, 9
SH_DEGREE = 3
"""The smallest degree our AnySplat's Gaussian head builds; the adapter damps degrees >= 1 (x0.1 x 0.25^d)."""
SCALE_BIAS = 30.0
"""Initial raw Gaussian scale: ``0.001 * softplus(30) = 0.03`` units, about half a pixel at the world's depths."""
CONTEXT = (0, 2, 4, 6, 8)
"""The evaluation protocol: these views go in, the others are rendered at their GT cameras."""
FAR_DEPTH = 50.0
"""Training depth target of the sky and cap of the ground's (world units): unsupervised, the sky's depth ran to 1e5
and dominated the stitched decoder's L1 distillation. Capping costs 0.007 abs-rel on the training clips' GT."""
NEAR_DEPTH = 10.0
"""Depth cap of the ``abs_rel_near`` metric (world units, 2.5x the camera distance): beyond it lies only the ground
plane running to the horizon, whose depth a 64-pixel image barely resolves (like KITTI's 80 m cap)."""


class DecoderArchitecture(StrictModel):
    """The synth-anysplat settings ``train decoder --config FILE`` may change; the defaults build the shipped model.

    ``embed_dim``, ``depth`` and ``num_heads`` are the aggregator's (its frame and global blocks, ``depth`` of each;
    the heads read 4 of its layers, evenly spaced and ending at the last); ``features`` is the DPT heads' width;
    ``patch_size`` must divide the 64-pixel frames. The AnySplat config checks the rest (e.g. a head width that 2D
    RoPE can split) when the model is built.
    """

    embed_dim: PositiveInt = 96
    depth: int = Field(4, ge=4)
    num_heads: PositiveInt = 4
    patch_size: PositiveInt = 8
    features: PositiveInt = 32

    @model_validator(mode="after")
    def _fits(self) -> DecoderArchitecture:
        if SIZE % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} does not divide the {SIZE}-pixel frames")
        return self

    def config(self) -> dict[str, Any]:
        """The model's ``config.json`` (per-submodule AnySplat format)."""
        size, dim_in = {"img_size": SIZE, "patch_size": self.patch_size}, 2 * self.embed_dim
        layers = [(i + 1) * self.depth // 4 - 1 for i in range(4)]
        dpt = {"dim_in": dim_in, "patch_size": self.patch_size, "features": self.features,
               "out_channels": [32, 64, 128, 128], "intermediate_layer_idx": layers}  # fmt: skip
        tokens = {**size, "embed_dim": self.embed_dim, "num_heads": self.num_heads}
        return {
            "encoder_cfg": {"gaussian_adapter": {"sh_degree": SH_DEGREE}, "intermediate_layer_idx": layers, "voxelize": False},
            "decoder_cfg": {"background_color": list(SKY)},
            "encoder.aggregator": {**tokens, "depth": self.depth, "num_register_tokens": 4},
            "encoder.aggregator.patch_embed": {**tokens, "depth": 2, "num_register_tokens": 0},
            "encoder.camera_head": {"dim_in": dim_in, "trunk_depth": 2, "num_heads": self.num_heads},
            "encoder.depth_head": {**dpt, "output_dim": 2, "activation": "exp"},
            "encoder.gaussian_param_head": {**dpt, "output_dim": 1 + 3 + 4 + 3 * (SH_DEGREE + 1) ** 2 + 1},
        }


def build(cfg: AnySplatConfig) -> AnySplatDecoder:
    """The registered factory: the shipped weights unless ``cfg`` names a checkpoint or an architecture."""
    if cfg.checkpoint is None and cfg.architecture is None:
        cfg = cfg.model_copy(update={"checkpoint": str(WEIGHTS)})
    return AnySplatDecoder.from_config(cfg)


def new_decoder(seed: int, architecture: DecoderArchitecture | None = None) -> AnySplatDecoder:
    """Random synth-anysplat weights of ``architecture`` (default: the shipped model's) from ``seed``, the Gaussian
    scales initialised to :data:`SCALE_BIAS`."""
    torch.manual_seed(seed)
    config = (architecture or DecoderArchitecture()).config()
    decoder = AnySplatDecoder.from_config(AnySplatConfig(architecture=config, voxelize=False))
    with torch.no_grad():
        decoder.model.gaussian_param_head.scratch.output_conv2[-1].bias[1:4] = SCALE_BIAS
    return decoder


# --- ground truth ---------------------------------------------------------------------------------------------


def relative(extrinsics: Tensor) -> Tensor:
    """World-to-camera ``[B,S,4,4]`` -> relative to view 0 (``E_i E_0^-1``; view 0 becomes the identity)."""
    return extrinsics @ torch.linalg.inv(extrinsics[:, :1])


def matrix_to_quaternion(rotation: Tensor) -> Tensor:
    """Rotations ``[..., 3, 3]`` -> unit quaternions xyzw ``[..., 4]`` with w >= 0 (the inverse of
    ``quaternion_to_matrix``; picks the best-conditioned of the four candidate formulas)."""
    m = rotation
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    diag = torch.stack((m[..., 0, 0], m[..., 1, 1], m[..., 2, 2], trace), dim=-1)
    r = lambda i, j: m[..., i, j]  # noqa: E731
    candidates = torch.stack((
        torch.stack((1 + 2 * r(0, 0) - trace, r(0, 1) + r(1, 0), r(0, 2) + r(2, 0), r(2, 1) - r(1, 2)), -1),
        torch.stack((r(0, 1) + r(1, 0), 1 + 2 * r(1, 1) - trace, r(1, 2) + r(2, 1), r(0, 2) - r(2, 0)), -1),
        torch.stack((r(0, 2) + r(2, 0), r(1, 2) + r(2, 1), 1 + 2 * r(2, 2) - trace, r(1, 0) - r(0, 1)), -1),
        torch.stack((r(2, 1) - r(1, 2), r(0, 2) - r(2, 0), r(1, 0) - r(0, 1), 1 + trace), -1),
    ), dim=-2)  # fmt: skip
    best = diag.argmax(-1)[..., None, None].expand(*diag.shape, 4)[..., :1, :]
    quat = torch.nn.functional.normalize(candidates.gather(-2, best)[..., 0, :], dim=-1)
    return torch.where(quat[..., 3:] < 0, -quat, quat)


def pose_encoding(extrinsics: Tensor, intrinsics: Tensor, image_size: tuple[int, int]) -> Tensor:
    """GT world-to-camera ``[B,S,4,4]`` and pixel intrinsics -> VGGT's ``[B,S,9]`` (T, quat xyzw, fov_h, fov_w),
    relative to view 0."""
    rel = relative(extrinsics)
    height, width = image_size
    fov_h = 2 * torch.atan(height / 2 / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan(width / 2 / intrinsics[..., 0, 0])
    return torch.cat((rel[..., :3, 3], matrix_to_quaternion(rel[..., :3, :3]), fov_h[..., None], fov_w[..., None]), dim=-1)


# --- losses ---------------------------------------------------------------------------------------------------


def depth_loss(depth: Tensor, target: Tensor) -> Tensor:
    """Mean relative error ``|d - d*| / d*`` (abs-rel) of ``[B,S,H,W]`` depth against GT ``target`` (0 = sky) capped
    at :data:`FAR_DEPTH`, sky included."""
    capped = torch.where(target > 0, target.clamp(max=FAR_DEPTH), FAR_DEPTH)
    return ((depth - capped).abs() / capped).mean()


def camera_loss(pose_enc_list: Tensor, target: Tensor) -> Tensor:
    """L1 between every refinement iteration's pose encoding ``[iters,B,S,9]`` and the GT ``[B,S,9]``."""
    return (pose_enc_list - target).abs().mean()


def held_out(views: Tensor, frames: int) -> Tensor:
    """The frame indices not in ``views``."""
    return torch.tensor([i for i in range(frames) if i not in views.tolist()], dtype=torch.long)


def render_views(decoded: Decoded3D, clips: dict[str, Tensor], views: Tensor, targets: Tensor) -> Tensor:
    """The Gaussians decoded from ``views`` of ``clips`` rendered on the sky colour at the GT cameras of ``targets``
    (relative to the first of ``views``, the decoder's reference) -> RGB ``[B,V,H,W,3]``."""
    extrinsics = clips["extrinsics"][:, targets] @ torch.linalg.inv(clips["extrinsics"][:, views[:1]])
    cameras = Cameras(extrinsics, clips["intrinsics"][:, targets], decoded.cameras.image_size)
    return render(decoded.gaussians, cameras, background=extrinsics.new_tensor(SKY), mode="RGB", backend="torch").rgb


def training_losses(
    decoder: AnySplatDecoder, clips: dict[str, Tensor], views: Tensor, targets: Tensor, camera_weight: float = 1.0
) -> dict[str, Tensor]:
    """The three training terms on a batch of rendered clips (``rendered(...)`` tensors, frames uint8): the model sees
    ``views``; depth abs-rel and the pose-encoding L1 on them, and the L1 of the ``targets`` views (none of ``views``)
    rendered at their GT cameras. ``loss`` is their sum, the camera term times ``camera_weight`` (the terms are
    returned unweighted and detached, for the log)."""
    images = clips["frames"].float() / 255
    decoded = decoder(images[:, views])
    target = pose_encoding(clips["extrinsics"][:, views], clips["intrinsics"][:, views], (SIZE, SIZE))
    terms = {"depth": depth_loss(decoded.points.depth, clips["depth"][:, views].float()),
             "camera": camera_loss(decoded.heads["pose_enc_list"], target)}  # fmt: skip
    if len(targets):
        rgb = render_views(decoded, clips, views, targets)
        terms["render"] = (rgb - images[:, targets].permute(0, 1, 3, 4, 2)).abs().mean()
    loss = sum(value * (camera_weight if key == "camera" else 1.0) for key, value in terms.items())
    return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}  # type: ignore[dict-item]


# --- metrics --------------------------------------------------------------------------------------------------


def camera_errors(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per view (view 0 excluded) rotation error in degrees and translation error (world units) between relative
    world-to-camera matrices ``[B,S,4,4]``."""
    r = pred[:, 1:, :3, :3] @ target[:, 1:, :3, :3].transpose(-1, -2)
    cos = ((r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.acos(cos)), (pred[:, 1:, :3, 3] - target[:, 1:, :3, 3]).norm(dim=-1)


def psnr(rgb: Tensor, target: Tensor) -> Tensor:
    """Per image PSNR (dB) of ``[..., H, W, 3]`` images in [0, 1]."""
    mse = ((rgb.clamp(0, 1) - target) ** 2).flatten(-3).mean(-1)
    return -10 * torch.log10(mse.clamp_min(1e-10))


@torch.no_grad()
def evaluate(decoder: AnySplatDecoder, data: dict[str, Tensor], batch: int = 4) -> dict[str, float]:
    """The held-out metrics on rendered clips (``rendered(...)`` tensors): the :func:`depth_errors` of all 9 views,
    camera errors of views 1-8 relative to view 0 (all 9 views in), and the PSNR of the odd views rendered from the
    :data:`CONTEXT` views at their GT cameras. Batches run on the decoder's device."""
    totals: dict[str, list[Tensor]] = {}
    device = next(decoder.parameters()).device
    for start in range(0, len(data["frames"]), batch):
        part = {k: v[start : start + batch].to(device) for k, v in data.items()}
        for key, value in _clip_metrics(decoder, part).items():
            totals.setdefault(key, []).append(value.cpu())
    return {key: float(torch.cat(values).mean()) for key, values in totals.items()}


def _clip_metrics(decoder: AnySplatDecoder, part: dict[str, Tensor]) -> dict[str, Tensor]:
    images = part["frames"].float() / 255
    decoded = decoder(images)
    rot, trans = camera_errors(decoded.cameras.extrinsics, relative(part["extrinsics"]))
    views = torch.tensor(CONTEXT)
    held = held_out(views, images.shape[1])
    rgb = render_views(decoder(images[:, views]), part, views, held)
    return {**depth_errors(decoded.points.depth, part["depth"].float(), part["ids"]), "rot_deg": rot.flatten(),
            "trans": trans.flatten(), "psnr": psnr(rgb, images[:, held].permute(0, 1, 3, 4, 2)).flatten()}  # fmt: skip


def depth_errors(depth: Tensor, target: Tensor, ids: Tensor) -> dict[str, Tensor]:
    """Per clip depth abs-rel of ``depth`` against GT ``target`` (0 = sky), both ``[B,S,H,W]``: over all GT pixels
    (``abs_rel``), after a per-clip median scale alignment (``abs_rel_median``), over GT depth up to
    :data:`NEAR_DEPTH` (``abs_rel_near``) and over the objects' pixels, ``ids > 0`` (``abs_rel_objects``)."""
    valid = target > 0
    ratio = torch.stack([t[v].median() / d[v].median() for d, t, v in zip(depth, target, valid)])
    rel = (depth - target).abs() / target.clamp_min(1e-6)
    aligned = (depth * ratio[:, None, None, None] - target).abs() / target.clamp_min(1e-6)
    return {"abs_rel": _masked_mean(rel, valid), "abs_rel_median": _masked_mean(aligned, valid),
            "abs_rel_near": _masked_mean(rel, valid & (target <= NEAR_DEPTH)),
            "abs_rel_objects": _masked_mean(rel, valid & (ids > 0))}  # fmt: skip


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Per clip mean of ``values [B,...]`` where ``mask``."""
    return (values * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1)
