"""AnySplat as a vist3a Decoder3D: checkpoint loading, the official inference outputs, 3D outputs in vist3a's
conventions and the distillation loss. The VGGT parts (stitch points, features, resuming) come from vist3a_vggt."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from vist3a_vggt.decoder import DTYPES, VGGTDecoder, resolve_checkpoint
from vist3a_vggt.geometry import pose_encoding_to_cameras, to_homogeneous, unproject_depth

from vist3a.errors import ConfigError, InputError, ShapeError
from vist3a.io.checkpoint import check_state_dict, load_state_dict, save_checkpoint
from vist3a.scene import Cameras, Decoded3D, Gaussians, PointMaps
from vist3a.stitch.losses import gradient_l1, l1
from vist3a_anysplat import AnySplatConfig
from vist3a_anysplat.config import AnySplatArchitecture, parse_architecture
from vist3a_anysplat.gaussians import adapt, voxelize_batch
from vist3a_anysplat.model import AnySplat, EncoderAnySplat

TAN_OFFSET = 1e-3
"""AnySplat adds this to tan(fov/2) when it turns the pose encoding into focal lengths."""
DISTILL_PREFIXES = ("encoder.distill_aggregator.", "encoder.distill_camera_head.", "encoder.distill_depth_head.")
GAUSSIAN_FIELDS = ("means", "covariances", "harmonics", "opacities", "scales", "rotations")
WEIGHTS = {"depth": 1.0, "depth_grad": 5e-3, "depth_conf": 1e-2, "gaussian_conf": 1e-2, "anchor_features": 0.1,
           "scales": 10.0, "means": 1.0, "covariances": 1.0, "harmonics": 1.0, "opacities": 1.0, "rotations": 1.0,
           "extrinsic": 1.0, "intrinsic": 1.0, "pose_enc_list": 1.0}  # fmt: skip
"""VIST3A's AnySplat distillation weights, by loss term."""


def build_model(arch: AnySplatArchitecture, weights: Path | None, meta: bool = False) -> AnySplat:
    """The network with ``weights`` loaded strictly by official name (bf16 parts are kept as stored until the caller
    casts), random weights without them, or parameters on the meta device with ``meta``."""
    if meta or weights is not None:
        state = {} if weights is None else load_state_dict(weights)
        if arch.encoder_cfg.distill:
            state = {k: v for k, v in state.items() if not k.startswith(DISTILL_PREFIXES)}
        with torch.device("meta"):
            model = _construct(arch)
        if weights is not None:
            check_state_dict(model, state, weights)
            model.load_state_dict(state, strict=True, assign=True)
        return model
    return _construct(arch)


def _construct(arch: AnySplatArchitecture) -> AnySplat:
    try:
        return AnySplat(EncoderAnySplat(arch))
    except (ValueError, RuntimeError) as exc:  # a combination no validator foresaw
        raise ConfigError(f"anysplat: cannot build this architecture: {str(exc).splitlines()[0]}") from None


class AnySplatDecoder(VGGTDecoder):
    """AnySplat behind the Decoder3D protocol; ``reconstruct`` gives the official inference outputs.

    The model's own input ``x`` is images ``[B,S,3,H,W]`` in [0,1] with H and W multiples of the patch size. The
    Gaussian head reads these frames too, so :meth:`forward_from` needs ``aux["frames"]``.
    """

    name = "anysplat"
    needs_rgb = True
    trained_heads = ("camera_head", "depth_head", "gaussian_param_head")
    model: EncoderAnySplat

    def __init__(self, model: EncoderAnySplat, voxelize: bool | None = None) -> None:
        super().__init__(model)
        self.voxelize = model.anysplat.encoder_cfg.voxelize if voxelize is None else voxelize

    @classmethod
    def from_config(cls, cfg: AnySplatConfig) -> AnySplatDecoder:  # type: ignore[override]
        """Build from a checkpoint (a folder's config.json, else ``architecture``, else the released AnySplat) or with
        random weights. ``device="meta"`` reads no weights."""
        default = parse_architecture(cfg.architecture, "anysplat architecture") if cfg.architecture else AnySplatArchitecture()
        meta = cfg.device == "meta"
        arch, weights = default, None
        if cfg.checkpoint is not None and not (meta and not Path(cfg.checkpoint).expanduser().exists()):
            arch, weights = resolve_checkpoint(cfg.checkpoint, default, parse_architecture)
        encoder = build_model(arch, None if meta else weights, meta).encoder
        encoder.frames_chunk_size = cfg.frames_chunk_size
        return cls(encoder, cfg.voxelize).to(device=cfg.device, dtype=DTYPES[cfg.dtype])

    @property
    def config(self) -> AnySplatArchitecture:
        """The full AnySplat configuration (``arch`` is its VGGT part)."""
        return self.model.anysplat

    def save_pretrained(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """``config.json`` (per-submodule format) and ``model.safetensors`` with the official names."""
        return save_checkpoint(directory, AnySplat(self.model), self.config.to_json(), overwrite=overwrite)

    # --- the official interface -------------------------------------------------------------------------------

    @torch.no_grad()
    def reconstruct(self, images: Tensor) -> dict[str, Any]:  # type: ignore[override]
        """The official ``AnySplat.inference`` outputs for images ``[B,S,3,H,W]`` (or ``[S,3,H,W]``) in [0,1].

        ``gaussians``: ``means [B,N,3]``, ``covariances [B,N,3,3]``, ``harmonics [B,N,3,K]``, ``opacities [B,N]``,
        ``scales [B,N,3]``, ``rotations [B,N,4]`` (xyzw), N = S*H*W in (view, row, column) order, or the voxels.
        ``pred_context_pose``: ``extrinsic [B,S,4,4]`` camera-to-world, ``intrinsic [B,S,3,3]`` normalised by W and H.
        Also ``pred_pose_enc_list [iters,B,S,9]``, ``depth [B,S,H,W,1]``, ``depth_conf [B,S,H,W]``,
        ``gaussian_conf [B,S,H,W]`` (the raw confidence channel) and ``scene_scale`` (mean norm of the points).
        """
        images = self._check_images(images[None] if images.ndim == 4 else images, check_range=True)
        decoded = self.forward(images)
        heads = decoded.heads
        return {
            "gaussians": self._official_gaussians(decoded),
            "pred_context_pose": {"extrinsic": heads["extrinsic"], "intrinsic": heads["intrinsic"]},
            "pred_pose_enc_list": heads["pose_enc_list"],
            "depth": heads["depth"],
            "depth_conf": heads["depth_conf"],
            "gaussian_conf": heads["gaussian_conf"],
            "scene_scale": heads["world_points"].norm(dim=-1).mean().clip(min=1e-8),
        }

    # --- Decoder3D --------------------------------------------------------------------------------------------

    def forward(self, x: Tensor) -> Decoded3D:
        """The original model on images ``[B,S,3,H,W]`` in [0,1] (the distillation teacher)."""
        x = self._check_images(x)
        return self._decoded(self.model(x), tuple(x.shape[-2:]))

    def forward_from(self, point: str, tokens: Tensor, aux: Mapping[str, Tensor] | None = None) -> Decoded3D:
        """Continue after ``point`` from patch tokens ``[B,C,S,h,w]``; ``aux["frames"]`` ``[B,S,3,H,W]`` in [0,1] (the
        :meth:`preprocess` output) feeds the Gaussian head, ``aux["prefix"]`` as in VGGT."""
        if aux is None or "frames" not in aux:
            raise InputError("anysplat: forward_from needs aux['frames'] [B,S,3,H,W] in [0,1] (its Gaussian head reads RGB)")
        return super().forward_from(point, tokens, aux)

    def distill_loss(self, student: Decoded3D, teacher: Decoded3D) -> dict[str, Tensor]:
        """Weighted L1 per output (VIST3A's AnySplat weights): confidences x1e-2, multi-scale depth gradients x5e-3,
        Gaussian scales x10, anchor features x0.1, the rest (depth, per-pixel Gaussians, context cameras, the
        pose-encoding list) x1. The values sum to the total loss."""
        s, t = student.heads, teacher.heads
        if not all(k in s and k in t for k in ("depth", "anchor_features")):
            raise InputError("distill_loss: student and teacher must both be AnySplat outputs")
        terms = {"depth_grad": WEIGHTS["depth_grad"] * gradient_l1(s["depth"], t["depth"])}
        for name in ("depth", "depth_conf", "gaussian_conf", "anchor_features", "extrinsic", "intrinsic", "pose_enc_list"):
            terms[name] = WEIGHTS[name] * l1(s[name], t[name])
        for name in GAUSSIAN_FIELDS:
            terms[name] = WEIGHTS[name] * l1(s[f"gaussians.{name}"], t[f"gaussians.{name}"])
        return terms

    # --- helpers ----------------------------------------------------------------------------------------------

    def _first_read_layer(self) -> int:
        return min(super()._first_read_layer(), *self.model.gaussian_param_head.cfg.intermediate_layer_idx)

    def _heads(self, outputs: list[Tensor | None], image_size: tuple[int, int], aux: Mapping[str, Tensor]) -> dict[str, Tensor]:
        frames = aux["frames"]
        if frames.ndim != 5 or frames.shape[2] != 3 or tuple(frames.shape[-2:]) != image_size or frames.shape[:2] != outputs[-1].shape[:2]:
            want = f"[{','.join(map(str, outputs[-1].shape[:2]))},3,{image_size[0]},{image_size[1]}]"
            raise ShapeError(f"aux['frames']: expected {want} to match the tokens, got {list(frames.shape)}")
        return {**self.model.heads(outputs, image_size), "gaussian_params": self.model.gaussian_params(outputs, frames)}

    def _decoded(self, out: dict[str, Tensor], image_size: tuple[int, int]) -> Decoded3D:
        """Cameras (world-to-camera, pixels), depth, points and per-pixel Gaussians (voxelised ones when enabled)."""
        height, width = image_size
        extrinsics, intrinsics = pose_encoding_to_cameras(out["pose_enc"], image_size, TAN_OFFSET)
        world_to_camera = to_homogeneous(extrinsics)
        depth = out["depth"][..., 0]
        points = unproject_depth(depth, extrinsics, intrinsics)
        raw = out["gaussian_params"].permute(0, 1, 3, 4, 2)
        cfg = self.config.encoder_cfg
        sh_degree, exponent = cfg.gaussian_adapter.sh_degree, cfg.opacity_exponent
        per_pixel = adapt(points.flatten(1, 3), raw[..., :-1].flatten(1, 3), sh_degree, exponent)
        heads = {
            **out, "world_points": points, "anchor_features": raw[..., :-1], "gaussian_conf": raw[..., -1],
            "extrinsic": torch.linalg.inv(world_to_camera.float()).to(world_to_camera.dtype),  # no bf16 inverse
            "intrinsic": intrinsics / intrinsics.new_tensor([width, height, 1.0])[:, None],
            **{f"gaussians.{k}": v for k, v in per_pixel.items()},
        }  # fmt: skip
        if self.voxelize:
            means, features = voxelize_batch(points.flatten(1, 3), raw[..., :-1].flatten(1, 3), raw[..., -1].flatten(1), cfg.voxel_size)
            fused = adapt(means, features, sh_degree, exponent)
            heads.update({f"voxels.{k}": v for k, v in fused.items()})
        return Decoded3D(
            cameras=Cameras(world_to_camera, intrinsics, image_size),
            points=PointMaps(points, out["depth_conf"], depth, out["depth_conf"]),
            gaussians=_to_scene(heads, "voxels" if self.voxelize else "gaussians"),
            heads=heads,
        )

    def _official_gaussians(self, decoded: Decoded3D) -> dict[str, Tensor]:
        source = "voxels" if self.voxelize else "gaussians"
        return {k: decoded.heads[f"{source}.{k}"] for k in GAUSSIAN_FIELDS}


def _to_scene(heads: Mapping[str, Tensor], source: str) -> Gaussians:
    """Official Gaussians -> vist3a's: xyzw -> wxyz quaternions, harmonics ``[B,N,3,K]`` -> ``sh [B,N,K,3]``."""
    x, y, z, w = heads[f"{source}.rotations"].unbind(-1)
    return Gaussians(
        means=heads[f"{source}.means"],
        scales=heads[f"{source}.scales"],
        quats=torch.stack((w, x, y, z), dim=-1),
        opacities=heads[f"{source}.opacities"],
        sh=heads[f"{source}.harmonics"].transpose(-1, -2),
    )


def build_decoder(cfg: AnySplatConfig) -> AnySplatDecoder:
    """The registered factory."""
    return AnySplatDecoder.from_config(cfg)
