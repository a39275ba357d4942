"""Architecture configs: the per-submodule ``config.json`` format (as in the reference fixtures) and VGGT-1B.

A ``config.json`` holds one object per submodule (``aggregator``, ``aggregator.patch_embed``, ``camera_head``,
``point_head``, ``depth_head``, ``track_head``); a head that is absent is disabled. The hub format of the official
``VGGT`` class (``img_size``, ``patch_size``, ``embed_dim`` and ``enable_*`` flags) is accepted too. Descriptive keys
(``class``, ``note``, ``block_fn`` ...) must name what this implementation builds; anything else is an error.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from vist3a.config import StrictModel, validate
from vist3a.errors import ConfigError

SUBMODULES = ("aggregator", "aggregator.patch_embed", "camera_head", "point_head", "depth_head", "track_head")
HUB_KEYS = ("img_size", "patch_size", "embed_dim", "enable_camera", "enable_point", "enable_depth", "enable_track")
INFO_KEYS = ("fixture", "seed", "upstream", "vggt", "forward", "weights", "torch_version", "num_parameters", "outputs")


class _Part(StrictModel):
    note: str | None = None
    """Free text, ignored."""


class DinoConfig(_Part):
    """The DINOv2 ViT with registers that embeds each frame (``aggregator.patch_embed``)."""

    class_: Literal["DinoVisionTransformer", "DinoVisionTransformer (vit_large)"] = Field("DinoVisionTransformer", alias="class")
    block_fn: Literal["NestedTensorBlock(attn_class=MemEffAttention)"] = "NestedTensorBlock(attn_class=MemEffAttention)"
    act_layer: Literal["nn.GELU"] = "nn.GELU"
    ffn_layer: Literal["mlp"] = "mlp"
    img_size: int = Field(518, gt=0)
    patch_size: int = Field(14, gt=0)
    in_chans: Literal[3] = 3
    embed_dim: int = Field(1024, gt=0)
    depth: int = Field(24, gt=0)
    num_heads: int = Field(16, gt=0)
    mlp_ratio: float = Field(4.0, gt=0)
    qkv_bias: bool = True
    ffn_bias: bool = True
    proj_bias: bool = True
    drop_path_rate: float = 0.0
    drop_path_uniform: bool = False
    init_values: float | None = 1.0
    block_chunks: Literal[0] = 0
    num_register_tokens: int = Field(4, ge=0)
    interpolate_antialias: bool = True
    interpolate_offset: float = 0.0
    qk_norm: bool = False

    @model_validator(mode="after")
    def _check(self) -> DinoConfig:
        _divisible("aggregator.patch_embed.embed_dim", self.embed_dim, self.num_heads)
        return self


def _divisible(name: str, value: int, by: int) -> None:
    if value % by:
        raise ValueError(f"{name} {value} is not divisible by {by}")


class AggregatorConfig(_Part):
    """Alternating frame/global attention over the DINO patch tokens plus camera and register tokens."""

    class_: Literal["vggt.models.aggregator.Aggregator"] = Field("vggt.models.aggregator.Aggregator", alias="class")
    block_fn: Literal["vggt.layers.block.Block"] = "vggt.layers.block.Block"
    patch_embed: str = "dinov2_vitl14_reg"
    """Descriptive only: the encoder is always built from ``aggregator.patch_embed``."""
    img_size: int = Field(518, gt=0)
    patch_size: int = Field(14, gt=0)
    embed_dim: int = Field(1024, gt=0)
    depth: int = Field(24, gt=0)
    num_heads: int = Field(16, gt=0)
    mlp_ratio: float = Field(4.0, gt=0)
    num_register_tokens: int = Field(4, ge=0)
    qkv_bias: bool = True
    proj_bias: bool = True
    ffn_bias: bool = True
    aa_order: list[Literal["frame", "global"]] = ["frame", "global"]
    aa_block_size: int = Field(1, gt=0)
    qk_norm: bool = True
    rope_freq: float = 100
    init_values: float | None = 0.01

    @model_validator(mode="after")
    def _check(self) -> AggregatorConfig:
        if sorted(self.aa_order) != ["frame", "global"]:
            raise ValueError(f"aa_order must hold 'frame' and 'global' once each, got {self.aa_order}")
        _divisible("depth", self.depth, self.aa_block_size)
        _divisible("embed_dim", self.embed_dim, self.num_heads)
        if self.rope_freq > 0:
            _divisible("head dim (embed_dim / num_heads) with RoPE", self.embed_dim // self.num_heads, 4)
        return self


class CameraHeadConfig(_Part):
    """Iterative pose refinement from the last layer's camera tokens."""

    class_: Literal["vggt.heads.camera_head.CameraHead"] = Field("vggt.heads.camera_head.CameraHead", alias="class")
    dim_in: int = Field(2048, gt=0)
    trunk_depth: int = Field(4, ge=0)
    pose_encoding_type: Literal["absT_quaR_FoV"] = "absT_quaR_FoV"
    num_heads: int = Field(16, gt=0)
    mlp_ratio: float = Field(4, gt=0)
    init_values: float | None = 0.01
    trans_act: Literal["linear", "inv_log", "exp", "relu"] = "linear"
    quat_act: Literal["linear", "inv_log", "exp", "relu"] = "linear"
    fl_act: Literal["linear", "inv_log", "exp", "relu"] = "relu"
    num_iterations_in_forward: int = Field(4, gt=0)

    @model_validator(mode="after")
    def _check(self) -> CameraHeadConfig:
        _divisible("camera_head.dim_in", self.dim_in, self.num_heads)
        return self


class DPTConfig(_Part):
    """A DPT head reading four aggregator layers."""

    class_: Literal["vggt.heads.dpt_head.DPTHead"] = Field("vggt.heads.dpt_head.DPTHead", alias="class")
    dim_in: int = Field(2048, gt=0)
    patch_size: int = Field(14, gt=0)
    output_dim: int = Field(4, gt=1)
    activation: Literal["inv_log", "exp", "norm_exp", "norm", "relu", "xy_inv_log", "sigmoid", "linear"] = "inv_log"
    conf_activation: Literal["expp1", "expp0", "sigmoid"] = "expp1"
    features: int = Field(256, gt=1)
    out_channels: list[int] = Field([256, 512, 1024, 1024], min_length=4, max_length=4)
    intermediate_layer_idx: list[int] = Field([4, 11, 17, 23], min_length=4, max_length=4)
    pos_embed: bool = True
    feature_only: bool = False
    down_ratio: int = Field(1, gt=0)


class TrackerConfig(_Part):
    """The iterative point tracker (correlation pyramid + update transformer)."""

    class_: Literal["vggt.heads.track_modules.base_track_predictor.BaseTrackerPredictor"] = Field(
        "vggt.heads.track_modules.base_track_predictor.BaseTrackerPredictor", alias="class"
    )
    stride: int = Field(2, gt=0)
    corr_levels: int = Field(7, gt=0)
    corr_radius: int = Field(4, ge=0)
    latent_dim: int = Field(128, gt=0)
    hidden_size: int = Field(384, gt=0)
    use_spaceatt: bool = True
    depth: int = Field(6, gt=0)
    max_scale: float = 518
    predict_conf: bool = True
    updateformer_fixed_defaults: dict[str, float] = {"num_heads": 8, "num_virtual_tracks": 64, "mlp_ratio": 4.0}

    @model_validator(mode="after")
    def _check(self) -> TrackerConfig:
        fixed = {"num_heads": 8, "num_virtual_tracks": 64, "mlp_ratio": 4.0}
        if self.updateformer_fixed_defaults != fixed:
            raise ValueError(f"updateformer_fixed_defaults must be {fixed} (fixed upstream)")
        _divisible("tracker.hidden_size", self.hidden_size, 8)
        _divisible("tracker.latent_dim", self.latent_dim, 2)
        return self


class TrackHeadConfig(_Part):
    """A feature-only DPT at half resolution feeding the tracker."""

    class_: Literal["vggt.heads.track_head.TrackHead"] = Field("vggt.heads.track_head.TrackHead", alias="class")
    dim_in: int = Field(2048, gt=0)
    patch_size: int = Field(14, gt=0)
    features: int = Field(128, gt=0)
    iters: int = Field(4, gt=0)
    predict_conf: bool = True
    stride: int = Field(2, gt=0)
    corr_levels: int = Field(7, gt=0)
    corr_radius: int = Field(4, ge=0)
    hidden_size: int = Field(384, gt=0)
    feature_extractor: DPTConfig
    tracker: TrackerConfig

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """Upstream builds both submodules from the head's own arguments unless they are given."""
        if not isinstance(data, dict):
            return data
        get = lambda key: data.get(key, cls.model_fields[key].default)  # noqa: E731
        extractor = {"dim_in": get("dim_in"), "patch_size": get("patch_size"), "features": get("features"),
                     "feature_only": True, "down_ratio": 2, "pos_embed": False}  # fmt: skip
        tracker = {"stride": get("stride"), "corr_levels": get("corr_levels"), "corr_radius": get("corr_radius"),
                   "latent_dim": get("features"), "hidden_size": get("hidden_size"), "predict_conf": get("predict_conf")}  # fmt: skip
        return {"feature_extractor": extractor, "tracker": tracker, **data}

    @model_validator(mode="after")
    def _check(self) -> TrackHeadConfig:
        if not self.feature_extractor.feature_only or self.feature_extractor.features != self.tracker.latent_dim:
            raise ValueError("feature_extractor must be feature_only with features == tracker.latent_dim")
        return self


class VGGTArchitecture(StrictModel):
    """Every submodule's constructor arguments; a head set to None is absent."""

    model_config = StrictModel.model_config | {"populate_by_name": True}

    aggregator: AggregatorConfig = AggregatorConfig()
    patch_embed: DinoConfig = Field(DinoConfig(), alias="aggregator.patch_embed")
    camera_head: CameraHeadConfig | None = CameraHeadConfig()
    point_head: DPTConfig | None = DPTConfig(output_dim=4, activation="inv_log")
    depth_head: DPTConfig | None = DPTConfig(output_dim=2, activation="exp")
    track_head: TrackHeadConfig | None = TrackHeadConfig.model_validate({})

    @model_validator(mode="after")
    def _check(self) -> VGGTArchitecture:
        agg, dino = self.aggregator, self.patch_embed
        if dino.embed_dim != agg.embed_dim or dino.patch_size != agg.patch_size:
            raise ValueError("aggregator.patch_embed must have the aggregator's embed_dim and patch_size")
        if (agg.img_size // agg.patch_size) ** 2 == 0:
            raise ValueError("img_size is smaller than one patch")
        for name in ("camera_head", "point_head", "depth_head", "track_head"):
            head = getattr(self, name)
            if head is not None and head.dim_in != 2 * agg.embed_dim:
                raise ValueError(f"{name}.dim_in must be 2 * embed_dim = {2 * agg.embed_dim}, got {head.dim_in}")
        for name, dpt in self.dpt_heads().items():
            if any(not 0 <= i < agg.depth for i in dpt.intermediate_layer_idx):
                raise ValueError(f"{name}.intermediate_layer_idx {dpt.intermediate_layer_idx} is outside 0..{agg.depth - 1}")
            if dpt.patch_size != agg.patch_size:
                raise ValueError(f"{name}.patch_size must equal the aggregator's patch_size")
        return self

    def dpt_heads(self) -> dict[str, DPTConfig]:
        """The DPT heads that exist, by state-dict prefix."""
        heads = {"point_head": self.point_head, "depth_head": self.depth_head}
        if self.track_head is not None:
            heads["track_head.feature_extractor"] = self.track_head.feature_extractor
        return {name: head for name, head in heads.items() if head is not None}

    def to_json(self) -> dict[str, Any]:
        """The per-submodule ``config.json`` form (what :func:`parse_architecture` reads back)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=False)


def vggt_1b(img_size: int = 518, patch_size: int = 14, embed_dim: int = 1024, **enabled: bool) -> VGGTArchitecture:
    """The released VGGT-1B configuration (``VGGT()`` defaults), optionally with heads disabled."""
    size = {"img_size": img_size, "patch_size": patch_size}
    dim_in = {"dim_in": 2 * embed_dim}
    values: dict[str, Any] = {
        "aggregator": {**size, "embed_dim": embed_dim},
        "aggregator.patch_embed": {**size, "embed_dim": embed_dim},
        "camera_head": dim_in,
        "point_head": {**dim_in, "patch_size": patch_size, "output_dim": 4, "activation": "inv_log"},
        "depth_head": {**dim_in, "patch_size": patch_size, "output_dim": 2, "activation": "exp"},
        "track_head": {**dim_in, "patch_size": patch_size},
    }
    for head in ("camera", "point", "depth", "track"):
        if not enabled.get(f"enable_{head}", True):
            values[f"{head}_head"] = None
    return validate(VGGTArchitecture, values, "VGGT-1B config")


def parse_architecture(values: dict[str, Any], where: str) -> VGGTArchitecture:
    """A per-submodule or hub-format config dict -> a validated architecture; ConfigError names the problem."""
    unknown = sorted(k for k in values if k not in (*SUBMODULES, *HUB_KEYS, *INFO_KEYS) and not k.startswith("_"))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (expected {', '.join(SUBMODULES)})")
    if any(k in values for k in SUBMODULES):
        parts = {k: values.get(k) for k in SUBMODULES}
        missing = [k for k in ("aggregator", "aggregator.patch_embed") if parts[k] is None]
        if missing:
            raise ConfigError(f"{where}: missing {', '.join(missing)}")
        return validate(VGGTArchitecture, parts, where)
    hub = {k: values[k] for k in HUB_KEYS if k in values}
    if hub.get("embed_dim", 1024) != 1024:
        raise ConfigError(f"{where}: embed_dim must be 1024 in the hub format (upstream always builds a ViT-L encoder)")
    return vggt_1b(**hub)
