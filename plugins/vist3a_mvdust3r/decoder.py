"""MV-DUSt3R(+) as a vist3a Decoder3D: checkpoint loading, the official outputs, stitch points after the encoder
blocks, 3D outputs in vist3a's conventions, the distillation loss and the test-time Gaussian refinement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from vist3a_vggt.decoder import DTYPES

from vist3a.devices import to_module
from vist3a.errors import ConfigError, InputError, ShapeError
from vist3a.io.checkpoint import CONFIG_NAME, check_state_dict, read_config, save_checkpoint
from vist3a.io.clips import resize_frames
from vist3a.protocols import StitchPoint, StitchTargets
from vist3a.scene import Cameras, Decoded3D, Gaussians, PointMaps
from vist3a.stitch.losses import l1
from vist3a_mvdust3r import MVDUSt3RConfig
from vist3a_mvdust3r.checkpoint import PICKLE_SUFFIXES, inferred_architecture, locate, read_checkpoint
from vist3a_mvdust3r.config import MVDUSt3RArchitecture, parse_architecture, released
from vist3a_mvdust3r.geometry import estimate_focal, intrinsics_matrix, solve_pose
from vist3a_mvdust3r.model import MVDUSt3R
from vist3a_mvdust3r.refine import refine_gaussians

WEIGHTS = {"pts3d": 1.0, "conf": 1e-2, "rgb": 1.0, "opacity": 1.0, "scale": 1.0, "rotation": 1.0}
"""VIST3A's MV-DUSt3R distillation weights: confidence x1e-2, point maps and Gaussian attributes x1."""
POINT_PREFIX = "enc_blocks_"


def build_model(arch: MVDUSt3RArchitecture, state: Mapping[str, Tensor] | None, source: str = "", meta: bool = False) -> MVDUSt3R:
    """The network with ``state`` loaded strictly by official name, random weights without it, or parameters on the
    meta device (nothing read) with ``meta``."""
    if state is None and not meta:
        return _construct(arch)
    with torch.device("meta"):
        model = _construct(arch)
    if state is not None:
        check_state_dict(model, state, source)
        model.load_state_dict(state, strict=True, assign=True)
    return model


def _construct(arch: MVDUSt3RArchitecture) -> MVDUSt3R:
    try:
        return MVDUSt3R(arch)
    except (ValueError, RuntimeError) as exc:  # a combination no validator foresaw
        raise ConfigError(f"mvdust3r: cannot build this architecture: {str(exc).splitlines()[0]}") from None


def _meta_architecture(checkpoint: str) -> MVDUSt3RArchitecture | None:
    """The config.json beside a local checkpoint, read without touching its weights."""
    path = Path(checkpoint).expanduser()
    folder = path if path.is_dir() else path.parent
    if not path.exists() or path.suffix in PICKLE_SUFFIXES or not (folder / CONFIG_NAME).is_file():
        return None
    return parse_architecture(read_config(folder), str(folder / CONFIG_NAME))


class MVDUSt3RDecoder(nn.Module):
    """MV-DUSt3R(+) behind the Decoder3D protocol; ``reconstruct`` gives the official output dicts.

    The model's own input ``x`` is images ``[B,S,3,H,W]`` in [0,1] (S >= 2 and >= n_ref views, H and W multiples of
    the patch size); view 0 is the reference whose camera frame holds every point. The pointmap head's skip branch
    reads the frames, so :meth:`forward_from` needs ``aux["frames"]``.
    """

    name = "mvdust3r"
    needs_rgb = True

    def __init__(self, model: MVDUSt3R) -> None:
        super().__init__()
        self.model = model.eval()
        self.patch_size = model.patch_size

    @classmethod
    def from_config(cls, cfg: MVDUSt3RConfig) -> MVDUSt3RDecoder:
        """Build from a checkpoint (its config.json, else ``architecture``, else the released MV-DUSt3R(+) that its
        keys imply) or with random weights. ``device="meta"`` reads no weights."""
        arch = parse_architecture(cfg.architecture, "mvdust3r architecture") if cfg.architecture else None
        state, meta, source = None, cfg.device == "meta", ""
        if cfg.checkpoint is not None and meta:
            arch = _meta_architecture(cfg.checkpoint) or arch
        elif cfg.checkpoint is not None:
            path = locate(cfg.checkpoint)
            state, found = read_checkpoint(path)
            arch, source = found or arch or inferred_architecture(state), str(path)
        arch = (arch or released()).with_n_ref(cfg.n_ref)
        model = build_model(arch, state, source, meta)
        return cls(model).to(device=cfg.device, dtype=DTYPES[cfg.dtype])

    @property
    def arch(self) -> MVDUSt3RArchitecture:
        return self.model.arch

    def save_pretrained(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """``config.json`` (the fixture format) and ``model.safetensors`` with the official names."""
        return save_checkpoint(directory, self.model, self.arch.to_json(), overwrite=overwrite)

    # --- the official interface -------------------------------------------------------------------------------

    @torch.no_grad()
    def reconstruct(self, images: Tensor) -> dict[str, Any]:
        """The official ``(pred1, pred2s)`` for images ``[B,S,3,H,W]`` (or ``[S,3,H,W]``) in [0,1], as
        ``{"pred1": {...}, "pred2s": [{...}] * (S-1)}``.

        Batch ``B * n_ref`` (index ``b * n_ref + r`` is path r), channels last: ``pts3d`` / ``pts3d_in_other_view``
        ``[.,H,W,3]`` in view 0's camera frame, ``conf [.,H,W]`` and, with the Gaussian head, ``rgb`` (SH
        coefficients), ``opacity [.,H,W,1]``, ``scale [.,H,W,3]``, ``rotation [.,H,W,4]`` (wxyz). In path r >= 1
        slot 0 (``pred1``) holds view r and slot r holds view 0.
        """
        images = self._check_images(images[None] if images.ndim == 4 else images, check_range=True)
        out = self.model(self._normalised(images))
        second = [{("pts3d_in_other_view" if k == "pts3d" else k): v[j] for k, v in out.items()} for j in range(1, len(out["conf"]))]
        return {"pred1": {k: v[0] for k, v in out.items()}, "pred2s": second}

    # --- Decoder3D --------------------------------------------------------------------------------------------

    def stitch_points(self, image_size: tuple[int, int]) -> list[StitchPoint]:
        """``enc_blocks_k`` after encoder block k (k = 1..enc_depth; no prefix tokens), with the token grid of images
        of ``image_size`` (H, W) (floored to whole patches)."""
        grid = (image_size[0] // self.patch_size, image_size[1] // self.patch_size)
        args = self.arch.args
        return [StitchPoint(f"{POINT_PREFIX}{k}", grid, args.enc_embed_dim, 0, k) for k in range(1, args.enc_depth + 1)]

    def stitch_targets(self, point: str) -> StitchTargets:
        """LoRA on every Linear/Conv2d after ``point``: the later encoder blocks, the decoder and both kinds of heads.
        MV-DUSt3R has no special tokens to train in full."""
        k = self._parse_point(point)
        after = [f"model.enc_blocks.{i}." for i in range(k, self.arch.args.enc_depth)]
        after += ["model.decoder_embed", "model.dec_blocks.", "model.dec_blocks2.", "model.dec_same_view_blocks.",
                  "model.downstream_head1.", "model.downstream_head2.", "model.downstream_GS_head."]  # fmt: skip
        modules = tuple(
            name for name, module in self.named_modules()
            if isinstance(module, (nn.Linear, nn.Conv2d)) and name.startswith(tuple(after))
        )  # fmt: skip
        return StitchTargets(modules)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute each encoder and decoder block in the backward pass instead of storing its activations."""
        model = self.model
        for block in (*model.enc_blocks, *model.dec_blocks, *model.dec_blocks2, *(model.dec_same_view_blocks or ())):
            block.gradient_checkpointing = enabled

    def preprocess(self, frames: Tensor) -> Tensor:
        """frames ``[B,3,T,H,W]`` in [-1,1] -> images ``[B,T,3,H',W']`` in [0,1]; a size that is not a multiple of the
        patch size is resized (bilinear, antialiased) to the nearest one."""
        if frames.ndim != 5 or frames.shape[1] != 3:
            raise ShapeError(f"frames: expected [B,3,T,H,W], got {list(frames.shape)}")
        size = tuple(max(1, round(n / self.patch_size)) * self.patch_size for n in frames.shape[-2:])
        images = ((resize_frames(frames, size) + 1) / 2).clamp(0, 1)
        return to_module(images.transpose(1, 2), self.model)

    def forward(self, x: Tensor) -> Decoded3D:
        """The original model on images ``[B,S,3,H,W]`` in [0,1] (the distillation teacher)."""
        x = self._check_images(x)
        return self._decoded(self.model(self._normalised(x)), x.shape[0])

    def forward_features(self, x: Tensor, points: Sequence[str]) -> dict[str, Tensor]:
        """Tokens ``[B,C,S,h,w]`` after the named encoder blocks, in one pass that stops at the deepest one."""
        x = self._check_images(x)
        b, s = x.shape[:2]
        grid = self.model.grid(x.shape[-2:])
        tokens, done, found = self.model.embed(self._normalised(x)), 0, {}
        for k in sorted({self._parse_point(p) for p in points}):
            tokens, done = self.model.encode(tokens, grid, done, k), k
            found[f"{POINT_PREFIX}{k}"] = tokens.view(b, s, *grid, -1).permute(0, 4, 1, 2, 3)
        return found

    def forward_from(self, point: str, tokens: Tensor, aux: Mapping[str, Tensor] | None = None) -> Decoded3D:
        """Continue after ``point`` from tokens ``[B,C,S,h,w]``; ``aux["frames"]`` ``[B,S,3,H,W]`` in [0,1] (the
        :meth:`preprocess` output, H = h * patch) feeds the pointmap head's RGB skip. Exact: there are no prefix tokens."""
        k = self._parse_point(point)
        dim = self.arch.args.enc_embed_dim
        if tokens.ndim != 5 or tokens.shape[1] != dim:
            raise ShapeError(f"{point}: expected tokens [B,{dim},S,h,w], got {list(tokens.shape)}")
        if aux is None or "frames" not in aux:
            raise InputError("mvdust3r: forward_from needs aux['frames'] [B,S,3,H,W] in [0,1] (its pointmap head reads RGB)")
        b, _, s, h, w = tokens.shape
        frames = aux["frames"]
        want = (b, s, 3, h * self.patch_size, w * self.patch_size)
        if tuple(frames.shape) != want:
            raise ShapeError(f"aux['frames']: expected [{','.join(map(str, want))}] to match the tokens, got {list(frames.shape)}")
        x = self.model.encode(tokens.permute(0, 2, 3, 4, 1).reshape(b * s, h * w, dim), (h, w), k)
        return self._decoded(self.model.decode(x.view(b, s, h * w, dim), self._normalised(frames), (h, w)), b)

    def distill_loss(self, student: Decoded3D, teacher: Decoded3D) -> dict[str, Tensor]:
        """Weighted L1 per head over every reference path (VIST3A's MV-DUSt3R weights): ``conf`` x1e-2, ``pts3d`` and
        the Gaussian attributes x1. The values sum to the total loss."""
        s, t = student.heads, teacher.heads
        terms = {k: weight * l1(s[k], t[k]) for k, weight in WEIGHTS.items() if k in s and k in t}
        if "pts3d" not in terms:
            raise InputError("distill_loss: student and teacher must both be MV-DUSt3R outputs")
        return terms

    def refine(self, decoded: Decoded3D, images: Tensor, **options: Any) -> Decoded3D:
        """``decoded`` with its Gaussians refined on the source views ``images [B,S,3,H,W]`` in [0,1] (VIST3A's 100
        steps of MSE + 0.05 LPIPS; ``options`` as in :func:`vist3a_mvdust3r.refine.refine_gaussians`)."""
        if decoded.gaussians is None or decoded.cameras is None:
            raise InputError("refine: the decoded scene has no Gaussians (this MV-DUSt3R has no Gaussian head)")
        return replace(decoded, gaussians=refine_gaussians(decoded.gaussians, decoded.cameras, images, **options))

    # --- helpers ----------------------------------------------------------------------------------------------

    @staticmethod
    def _normalised(images: Tensor) -> Tensor:
        """[0,1] -> [-1,1] as upstream's ``Normalize(0.5, 0.5)``."""
        return (images - 0.5) / 0.5

    def _parse_point(self, point: str) -> int:
        depth = self.arch.args.enc_depth
        k = point.removeprefix(POINT_PREFIX)
        if not point.startswith(POINT_PREFIX) or not k.isdigit() or not 1 <= int(k) <= depth:
            raise InputError(f"unknown stitch point {point!r} for {self.name} (known: {POINT_PREFIX}1..{depth})")
        return int(k)

    def _check_images(self, images: Tensor, check_range: bool = False) -> Tensor:
        if not isinstance(images, Tensor) or not images.is_floating_point():
            raise InputError("images: expected a floating-point tensor [B,S,3,H,W] in [0,1]")
        if images.ndim != 5 or images.shape[2] != 3:
            raise ShapeError(f"images: expected [B,S,3,H,W], got {list(images.shape)}")
        views, (h, w) = images.shape[1], images.shape[-2:]
        if views < max(2, self.model.n_ref):
            raise ShapeError(f"images: {views} view(s); this model needs at least {max(2, self.model.n_ref)} (n_ref = {self.model.n_ref})")
        if h % self.patch_size or w % self.patch_size or h == 0 or w == 0:
            raise ShapeError(f"images: height and width must be multiples of {self.patch_size}, got {h}x{w}")
        if check_range and (images.min() < 0 or images.max() > 1):
            raise InputError(f"images: values must be in [0,1], got [{images.min().item():.3g}, {images.max().item():.3g}]")
        return to_module(images, self.model)

    def _decoded(self, out: dict[str, Tensor], batch: int) -> Decoded3D:
        """Per-slot outputs ``[S, B*n_ref, ...]`` -> heads ``[B*n_ref, S, ...]`` and, from path 0 (views in input order),
        point maps in view 0's frame, cameras recovered from them and per-pixel Gaussians."""
        heads = {k: v.transpose(0, 1) for k, v in out.items()}
        first = {k: v.unflatten(0, (batch, self.model.n_ref))[:, 0] for k, v in heads.items()}  # [B,S,H,W,k]
        points, conf = first["pts3d"], first["conf"]
        cameras = cameras_from_points(points, conf)
        cam = torch.einsum("bvij,bvhwj->bvhwi", cameras.extrinsics[..., :3, :3], points) + cameras.extrinsics[:, :, None, None, :3, 3]
        gaussians = None
        if "rgb" in first:
            gaussians = Gaussians(
                means=points.flatten(1, 3), scales=first["scale"].abs().flatten(1, 3), quats=first["rotation"].flatten(1, 3),
                opacities=first["opacity"].flatten(1, 4), sh=first["rgb"].unflatten(-1, (-1, 3)).flatten(1, 3),
            )  # fmt: skip
        return Decoded3D(cameras=cameras, points=PointMaps(points, conf, cam[..., 2]), gaussians=gaussians, heads=heads)


@torch.no_grad()
def cameras_from_points(points: Tensor, confidence: Tensor) -> Cameras:
    """Cameras of point maps ``[B,S,H,W,3]`` in view 0's frame: view 0 is the identity, one focal (estimated on view 0)
    for all views, each other pose by weighted PnP; weights ``log(confidence)`` (0 for confidence <= 1). No gradient."""
    b, s, h, w, _ = points.shape
    weights = confidence.float().log().clamp_min(0)
    focal = estimate_focal(points[:, 0].float(), weights[:, 0])
    intrinsics = intrinsics_matrix(focal, (h, w))[:, None].expand(b, s, 3, 3)
    extrinsics = torch.eye(4, device=points.device).repeat(b, s, 1, 1)
    if s > 1:
        rest = solve_pose(points[:, 1:].float().flatten(0, 1), intrinsics[:, 1:].flatten(0, 1), weights[:, 1:].flatten(0, 1))
        extrinsics[:, 1:] = rest.view(b, s - 1, 4, 4)
    return Cameras(extrinsics.to(points.dtype), intrinsics.to(points.dtype), (h, w))
