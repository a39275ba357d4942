"""VGGT as a vist3a Decoder3D: checkpoint loading, stitch points, 3D outputs and the distillation loss."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vist3a.devices import to_module
from vist3a.errors import CheckpointError, ConfigError, InputError, ShapeError
from vist3a.io.checkpoint import CONFIG_NAME, WEIGHTS_NAME, check_state_dict, load_state_dict, read_config, save_checkpoint
from vist3a.protocols import StitchPoint, StitchTargets
from vist3a.scene import Cameras, Decoded3D, PointMaps
from vist3a.stitch.losses import gradient_l1, l1
from vist3a_vggt import VGGTConfig
from vist3a_vggt.config import VGGTArchitecture, parse_architecture, vggt_1b
from vist3a_vggt.geometry import pose_encoding_to_cameras, to_homogeneous, unproject_depth
from vist3a_vggt.model import VGGT

OFFICIAL_WEIGHTS = "model.pt"
POSE_WEIGHT, CONFIDENCE_WEIGHT, GRADIENT_WEIGHT, DEFAULT_WEIGHT = 5.0, 5e-3, 5e-3, 1.0
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
A = TypeVar("A")


def resolve_checkpoint(checkpoint: str, default: A, parse: Callable[[dict[str, Any], str], A] = parse_architecture) -> tuple[A, Path]:
    """The architecture and weights file of a folder, a weights file or a hub id already in the local cache.

    A folder's ``config.json`` (read by ``parse``) gives the architecture; without one, and for a bare ``.pt``, it is
    ``default``. Nothing is downloaded.
    """
    path = Path(checkpoint).expanduser()
    if not path.exists():
        path = _cached_snapshot(checkpoint)
    if path.is_file():
        config = path.parent / CONFIG_NAME
        use_config = path.suffix == ".safetensors" and config.is_file()
        return (parse(read_config(path.parent), str(config)) if use_config else default), path
    weights = next((path / n for n in (WEIGHTS_NAME, OFFICIAL_WEIGHTS) if (path / n).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{path}: no {WEIGHTS_NAME} or {OFFICIAL_WEIGHTS} in this folder")
    config = path / CONFIG_NAME
    arch = parse(read_config(path), str(config)) if config.is_file() else default
    return arch, weights


def _cached_snapshot(repo_id: str) -> Path:
    """The local Hugging Face cache entry of ``repo_id`` (no network access)."""
    from huggingface_hub import try_to_load_from_cache

    for name in (WEIGHTS_NAME, OFFICIAL_WEIGHTS):
        try:
            found = try_to_load_from_cache(repo_id, name)
        except Exception:  # an id that is not a valid repo name
            found = None
        if isinstance(found, str):
            return Path(found).parent
    raise CheckpointError(
        f"{repo_id}: not a local file or folder and not in the Hugging Face cache "
        f"(download it first, e.g. `hf download {repo_id} {OFFICIAL_WEIGHTS}`, and pass the path)"
    )


def build_model(arch: VGGTArchitecture, weights: Path | None, meta: bool = False) -> VGGT:
    """The network with ``weights`` loaded strictly (built on the meta device, no random init), random weights
    without them, or parameters on the meta device (nothing read) with ``meta``."""
    if meta:
        with torch.device("meta"):
            return _construct(arch)
    if weights is None:
        return _construct(arch)
    state = load_state_dict(weights)
    with torch.device("meta"):
        model = _construct(arch)
    check_state_dict(model, state, weights)
    model.load_state_dict(state, strict=True, assign=True)
    return model


def _construct(arch: VGGTArchitecture) -> VGGT:
    try:
        return VGGT(arch)
    except (ValueError, RuntimeError) as exc:  # a combination no validator foresaw
        raise ConfigError(f"vggt: cannot build this architecture: {str(exc).splitlines()[0]}") from None


class VGGTDecoder(nn.Module):
    """VGGT behind the Decoder3D protocol; ``reconstruct`` gives the official output dict.

    The model's own input ``x`` is images ``[B,S,3,H,W]`` in [0,1] with H and W multiples of the patch size.
    """

    name = "vggt"
    needs_rgb = False
    trained_heads: tuple[str, ...] = ("camera_head", "depth_head", "point_head")
    """The heads that get LoRA in :meth:`stitch_targets`."""

    def __init__(self, model: VGGT) -> None:
        super().__init__()
        self.model = model.eval()
        self.patch_size = model.patch_size

    @classmethod
    def from_config(cls, cfg: VGGTConfig) -> VGGTDecoder:
        """Build from a checkpoint (a folder's config.json, else ``architecture``, else VGGT-1B) or random weights.

        ``device="meta"`` reads no weights: a hub id that is not cached then gets ``architecture`` or VGGT-1B.
        """
        default = parse_architecture(cfg.architecture, "vggt architecture") if cfg.architecture else vggt_1b()
        meta = cfg.device == "meta"
        arch, weights = default, None
        if cfg.checkpoint is not None and not (meta and not Path(cfg.checkpoint).expanduser().exists()):
            arch, weights = resolve_checkpoint(cfg.checkpoint, default)
        model = build_model(arch, weights, meta)
        model.frames_chunk_size = cfg.frames_chunk_size
        return cls(model).to(device=cfg.device, dtype=DTYPES[cfg.dtype])

    @property
    def arch(self) -> VGGTArchitecture:
        return self.model.arch

    def save_pretrained(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """``config.json`` (per-submodule format) and ``model.safetensors`` with the official names."""
        return save_checkpoint(directory, self.model, self.arch.to_json(), overwrite=overwrite)

    # --- the official interface -------------------------------------------------------------------------------

    @torch.no_grad()
    def reconstruct(self, images: Tensor, query_points: Tensor | None = None) -> dict[str, Tensor]:
        """The official VGGT output dict for images ``[B,S,3,H,W]`` (or ``[S,3,H,W]``) in [0,1].

        Keys: ``pose_enc [B,S,9]``, ``depth [B,S,H,W,1]``, ``depth_conf``, ``world_points [B,S,H,W,3]``,
        ``world_points_conf [B,S,H,W]``, ``images``; with ``query_points [B,N,2]`` (pixels, frame 0) also
        ``track [B,S,N,2]``, ``vis`` and ``conf [B,S,N]``.
        """
        images = self._check_images(images[None] if images.ndim == 4 else images, check_range=True)
        if query_points is not None:
            query_points = query_points[None] if query_points.ndim == 2 else query_points
            if query_points.ndim != 3 or query_points.shape[-1] != 2 or query_points.shape[0] != images.shape[0]:
                raise ShapeError(f"query_points: expected [B,N,2] pixel (x, y), got {list(query_points.shape)}")
            if self.model.track_head is None:
                raise InputError("this VGGT has no track head; query_points cannot be tracked")
            query_points = query_points.to(images.device)
        out = self.model(images, query_points)
        out.pop("pose_enc_list", None)
        return out

    # --- Decoder3D --------------------------------------------------------------------------------------------

    def stitch_points(self, image_size: tuple[int, int]) -> list[StitchPoint]:
        """``enc_blocks_k`` after DINO block k, ``agg_blocks_j`` after aggregator layer j (j up to the first layer
        a head reads), with token grids for images of ``image_size`` (H, W) (floored to whole patches)."""
        grid = (image_size[0] // self.patch_size, image_size[1] // self.patch_size)
        dino, agg = self.arch.patch_embed, self.arch.aggregator
        points = [StitchPoint(f"enc_blocks_{k}", grid, dino.embed_dim, 1 + dino.num_register_tokens, k) for k in range(1, dino.depth + 1)]
        points += [
            StitchPoint(f"agg_blocks_{j}", grid, agg.embed_dim, 1 + agg.num_register_tokens, dino.depth + j)
            for j in range(agg.aa_block_size, self._first_read_layer() + 1, agg.aa_block_size)
        ]
        return points

    def stitch_targets(self, point: str) -> StitchTargets:
        """LoRA on every Linear/Conv2d after ``point`` in the aggregator and the camera, depth and point heads; the
        special tokens inserted at the cut are trained in full (as VIST3A does for DINO's cls and registers)."""
        kind, k = self._parse_point(point)
        if kind == "enc":
            after = [f"model.aggregator.patch_embed.blocks.{i}." for i in range(k, self.arch.patch_embed.depth)]
            after += ["model.aggregator.frame_blocks.", "model.aggregator.global_blocks."]
            tokens = ("model.aggregator.patch_embed.cls_token", "model.aggregator.patch_embed.register_tokens")
        else:
            after = [f"model.aggregator.{part}_blocks.{i}." for part in ("frame", "global") for i in range(k, self.arch.aggregator.depth)]
            tokens = ("model.aggregator.camera_token", "model.aggregator.register_token")
        after += [f"model.{head}." for head in self.trained_heads]
        modules = tuple(
            name for name, module in self.named_modules()
            if isinstance(module, (nn.Linear, nn.Conv2d)) and any(name.startswith(prefix) for prefix in after)
        )  # fmt: skip
        present = {name for name, _ in self.named_parameters()}
        return StitchTargets(modules, tuple(t for t in tokens if t in present))

    def position_embedding(self, point: str, grid: tuple[int, int]) -> Tensor:
        """DINO's patch position embedding ``[C,h,w]`` for a ``grid`` of tokens, for cuts inside the encoder."""
        kind, _ = self._parse_point(point)
        if kind != "enc":
            raise InputError(f"{point}: only cuts inside the DINO encoder (enc_blocks_*) have an input position embedding")
        table = self.model.aggregator.patch_embed.patch_pos_embed(*grid)[0]  # [h*w, C]
        return table.T.reshape(-1, *grid)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute each DINO and aggregator block in the backward pass instead of storing its activations."""
        agg = self.model.aggregator
        for block in (*agg.patch_embed.blocks, *agg.frame_blocks, *agg.global_blocks):
            block.gradient_checkpointing = enabled

    def preprocess(self, frames: Tensor) -> Tensor:
        """frames ``[B,3,T,H,W]`` in [-1,1] -> images ``[B,T,3,H',W']`` in [0,1]; a size that is not a multiple of the
        patch size is resized (bilinear, antialiased) to the nearest one."""
        if frames.ndim != 5 or frames.shape[1] != 3:
            raise ShapeError(f"frames: expected [B,3,T,H,W], got {list(frames.shape)}")
        b, _, t, h, w = frames.shape
        images = ((frames.transpose(1, 2) + 1) / 2).clamp(0, 1).flatten(0, 1)
        size = tuple(max(1, round(v / self.patch_size)) * self.patch_size for v in (h, w))
        if size != (h, w):
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
        return to_module(images.view(b, t, 3, *size), self.model)

    def forward(self, x: Tensor) -> Decoded3D:
        """The original model on images ``[B,S,3,H,W]`` in [0,1] (the distillation teacher)."""
        x = self._check_images(x)
        out = self.model(x)
        out.pop("images")
        return self._decoded(out, tuple(x.shape[-2:]))

    def forward_features(self, x: Tensor, points: Sequence[str]) -> dict[str, Tensor]:
        """Patch tokens ``[B,C,S,h,w]`` at the named points, in one pass that stops at the deepest one."""
        return self.forward_features_with_prefix(x, points)[0]

    def forward_features_with_prefix(self, x: Tensor, points: Sequence[str]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """As :meth:`forward_features`, plus each point's prefix tokens ``[B,S,n_prefix,C]``.

        Passing ``aux={"prefix": prefix[point]}`` to :meth:`forward_from` continues the official forward exactly.
        """
        x = self._check_images(x)
        wanted = [self._parse_point(p) for p in points]
        b, s = x.shape[:2]
        grid = (x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        dino, feats, prefix = self.model.aggregator.patch_embed, {}, {}

        def keep(name: str, tokens: Tensor, n: int) -> None:
            prefix[name] = tokens[:, :, :n]
            feats[name] = tokens[:, :, n:].reshape(b, s, *grid, -1).permute(0, 4, 1, 2, 3)

        tokens, done = self.model.aggregator.embed(x), 0
        for k in sorted({k for kind, k in wanted if kind == "enc"}):
            tokens, done = dino.run(tokens, done, k), k
            keep(f"enc_blocks_{k}", tokens.view(b, s, *tokens.shape[1:]), dino.num_prefix)
        agg_points = sorted({k for kind, k in wanted if kind == "agg"})
        if agg_points:
            patches = dino.patch_tokens(dino.run(tokens, done))
            tokens, done = self.model.with_special_tokens(patches.view(b, s, *patches.shape[1:])), 0
            for j in agg_points:
                tokens, done = self.model.aggregator.run(tokens, grid, done, j)[0], j
                keep(f"agg_blocks_{j}", tokens, self.model.aggregator.patch_start_idx)
        return feats, prefix

    def forward_from(self, point: str, tokens: Tensor, aux: Mapping[str, Tensor] | None = None) -> Decoded3D:
        """Continue after ``point`` from patch tokens ``[B,C,S,h,w]``.

        ``aux["prefix"]`` ``[B,S,n_prefix,C]`` gives the prefix tokens at that point (exact continuation); without
        it the learned tokens are inserted: DINO's cls (with its positional embedding) and registers, or the
        aggregator's camera and register tokens (slot 0 for frame 0), as a stitched decoder does.
        """
        kind, k = self._parse_point(point)
        dim = self.arch.patch_embed.embed_dim
        if tokens.ndim != 5 or tokens.shape[1] != dim:
            raise ShapeError(f"{point}: expected tokens [B,{dim},S,h,w], got {list(tokens.shape)}")
        b, _, s, h, w = tokens.shape
        patches = tokens.permute(0, 2, 3, 4, 1).reshape(b, s, h * w, dim)
        special = None if aux is None else aux.get("prefix")
        if kind == "enc":
            dino = self.model.aggregator.patch_embed
            start = dino.prefix(b * s).view(b, s, -1, dim) if special is None else special
            x = dino.run(torch.cat((start.to(patches.dtype), patches), dim=2).flatten(0, 1), k)
            patches, special, k = dino.patch_tokens(x).view(b, s, h * w, dim), None, 0
        outputs = self.model.run_aggregator(self.model.with_special_tokens(patches, special), (h, w), k)
        image_size = (h * self.patch_size, w * self.patch_size)
        return self._decoded(self._heads(outputs, image_size, aux or {}), image_size)

    def distill_loss(self, student: Decoded3D, teacher: Decoded3D) -> dict[str, Tensor]:
        """Weighted L1 per head (VIST3A weights): pose x5, confidences x5e-3, multi-scale gradients of depth and
        points x5e-3, depth and points x1. The values sum to the total loss."""
        s, t = student.heads, teacher.heads
        terms: dict[str, Tensor] = {}
        if "pose_enc_list" in s and "pose_enc_list" in t:
            terms["pose"] = POSE_WEIGHT * l1(s["pose_enc_list"], t["pose_enc_list"])
        for key in ("depth", "world_points"):
            if key in s and key in t:
                terms[key] = DEFAULT_WEIGHT * l1(s[key], t[key])
                terms[f"{key}_grad"] = GRADIENT_WEIGHT * gradient_l1(s[key], t[key])
                terms[f"{key}_conf"] = CONFIDENCE_WEIGHT * l1(s[f"{key}_conf"], t[f"{key}_conf"])
        if not terms:
            raise InputError("distill_loss: student and teacher share no VGGT head outputs")
        return terms

    # --- helpers ----------------------------------------------------------------------------------------------

    def _first_read_layer(self) -> int:
        reads = [i for head in self.arch.dpt_heads().values() for i in head.intermediate_layer_idx]
        return min(reads, default=self.arch.aggregator.depth - 1)

    def _heads(self, outputs: list[Tensor | None], image_size: tuple[int, int], aux: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The heads on the aggregator outputs in :meth:`forward_from` (``aux`` as given there)."""
        return self.model.heads(outputs, image_size)

    def _parse_point(self, point: str) -> tuple[str, int]:
        known = {p.name for p in self.stitch_points((self.patch_size, self.patch_size))}
        if point not in known:
            raise InputError(f"unknown stitch point {point!r} for {self.name} (known: enc_blocks_1..{self.arch.patch_embed.depth}"
                             f"{', agg_blocks_*' if any(p.startswith('agg') for p in known) else ''})")  # fmt: skip
        kind, _, k = point.partition("_blocks_")
        return kind, int(k)

    def _check_images(self, images: Tensor, check_range: bool = False) -> Tensor:
        """``images`` checked, on the model's device and in its dtype."""
        if not isinstance(images, Tensor) or not images.is_floating_point():
            raise InputError("images: expected a floating-point tensor [B,S,3,H,W] in [0,1]")
        if images.ndim != 5 or images.shape[2] != 3:
            raise ShapeError(f"images: expected [B,S,3,H,W], got {list(images.shape)}")
        h, w = images.shape[-2:]
        if h % self.patch_size or w % self.patch_size or h == 0 or w == 0:
            raise ShapeError(f"images: height and width must be multiples of {self.patch_size}, got {h}x{w}")
        if check_range and images.numel() and (images.min() < 0 or images.max() > 1):
            lo, hi = images.min().item(), images.max().item()
            raise InputError(f"images: values must be in [0,1], got [{lo:.3g}, {hi:.3g}] (VGGT normalises internally)")
        return to_module(images, self.model)

    def _decoded(self, out: dict[str, Tensor], image_size: tuple[int, int]) -> Decoded3D:
        cameras = None
        if "pose_enc" in out:
            extrinsics, intrinsics = pose_encoding_to_cameras(out["pose_enc"], image_size)
            cameras = Cameras(to_homogeneous(extrinsics), intrinsics, image_size)
        depth = out["depth"][..., 0] if "depth" in out else None
        points = out.get("world_points")
        if points is None and depth is not None and cameras is not None:
            points = unproject_depth(depth, cameras.extrinsics[..., :3, :], cameras.intrinsics)
        pointmaps = None
        if points is not None:
            pointmaps = PointMaps(points, out.get("world_points_conf"), depth, out.get("depth_conf"))
        return Decoded3D(cameras=cameras, points=pointmaps, heads=out)


def build_decoder(cfg: VGGTConfig) -> Any:
    """The registered factory."""
    return VGGTDecoder.from_config(cfg)
