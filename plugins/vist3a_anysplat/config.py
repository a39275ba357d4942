"""AnySplat's ``config.json``: the hub format (``encoder_cfg`` + ``decoder_cfg``, as ``PyTorchModelHubMixin`` writes
it) and the per-submodule format of the reference fixtures (the same plus ``encoder.aggregator``,
``encoder.aggregator.patch_embed``, ``encoder.camera_head``, ``encoder.depth_head`` and ``encoder.gaussian_param_head``).

Without the per-submodule keys the VGGT-1B submodules are used, as upstream builds them. Behavioural switches that
this implementation does not reproduce (point head, pose-given mode, pruning, confidence masks) must keep their
inference values; descriptive keys that upstream reads only in training are accepted as they are.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import Field, field_validator, model_validator
from vist3a_vggt.config import AggregatorConfig, CameraHeadConfig, DinoConfig, DPTConfig, VGGTArchitecture

from vist3a.config import StrictModel, validate
from vist3a.errors import ConfigError

SUBMODULES = ("encoder.aggregator", "encoder.aggregator.patch_embed", "encoder.camera_head", "encoder.depth_head",
              "encoder.gaussian_param_head")  # fmt: skip
INFO_KEYS = ("fixture", "seed", "upstream", "anysplat", "forward", "weights", "torch_version", "num_parameters", "outputs")
UPSTREAM_PREFIX = "src.model.encoder."
"""Upstream's vendored VGGT lives under this package; class names are compared without it."""
H = TypeVar("H", bound=DPTConfig)
MAX_COMPACT_LAYERS = 10
"""Upstream's heads index the aggregator's compact output list by position when it has at most this many entries."""


def gaussian_channels(sh_degree: int) -> int:
    """The Gaussian head's output width: opacity, scale(3), rotation(4), SH(3 x (d+1)^2), confidence."""
    return 1 + 3 + 4 + 3 * (sh_degree + 1) ** 2 + 1


class GaussianAdapterCfg(StrictModel):
    gaussian_scale_min: float = 0.5
    gaussian_scale_max: float = 15.0
    sh_degree: int = Field(4, ge=3, le=4)
    """Upstream's hard-coded head widths need degree >= 3; our Gaussians hold up to degree 4."""


class OpacityMappingCfg(StrictModel):
    initial: float = 0.0
    final: float = 0.0
    warm_up: int = Field(1, gt=0)


class EncoderCfg(StrictModel):
    """``EncoderAnySplatCfg``: the fields inference reads are checked; the training-only ones are kept as given."""

    name: Literal["anysplat"] = "anysplat"
    gaussian_adapter: GaussianAdapterCfg = GaussianAdapterCfg()
    opacity_mapping: OpacityMappingCfg = OpacityMappingCfg()
    intermediate_layer_idx: list[int] | None = [4, 11, 17, 23]
    voxelize: bool = True
    voxel_size: float = Field(0.002, gt=0)
    pred_head_type: Literal["depth"] = "depth"
    gs_params_head_type: Literal["dpt_gs"] = "dpt_gs"
    pose_free: Literal[True] = True
    pred_pose: Literal[True] = True
    gaussians_per_pixel: Literal[1] = 1
    num_surfaces: Literal[1] = 1
    gs_prune: Literal[False] = False
    render_conf: Literal[False] = False
    opacity_conf: Literal[False] = False
    distill: bool = False
    """With True the checkpoint also holds frozen teacher copies (``encoder.distill_*``); they are not loaded."""
    # read only in training or by unused code paths
    anchor_feat_dim: int = 128
    n_offsets: int = 2
    d_feature: int = 32
    add_view: bool = False
    num_monocular_samples: int = 32
    backbone: dict[str, Any] = {}
    visualizer: dict[str, Any] = {}
    apply_bounds_shim: bool = True
    input_mean: list[float] = [0.5, 0.5, 0.5]
    input_std: list[float] = [0.5, 0.5, 0.5]
    pretrained_weights: str = ""
    gt_pose_to_pts: bool = False
    opacity_threshold: float = 0.001
    gs_keep_ratio: float = 1.0
    freeze_backbone: bool = False
    freeze_module: str = "patch_embed"
    conf_threshold: float = 0.1

    @property
    def opacity_exponent(self) -> float:
        """``2 ** x`` of upstream's opacity mapping at inference (global step 0)."""
        return 2.0 ** self.opacity_mapping.initial


class DecoderCfg(StrictModel):
    """The splatting decoder (no parameters; rendering is vist3a's renderer)."""

    name: Literal["splatting_cuda"] = "splatting_cuda"
    background_color: list[float] = [1.0, 1.0, 1.0]
    make_scale_invariant: bool = False


class GaussianHeadConfig(DPTConfig):
    """``VGGT_DPT_GS_Head``: a DPT head whose fused map is added to a 7x7 conv of the RGB frames."""

    class_: Literal["heads.vggt_dpt_gs_head.VGGT_DPT_GS_Head"] = Field("heads.vggt_dpt_gs_head.VGGT_DPT_GS_Head", alias="class")
    output_dim: int = Field(gaussian_channels(4), gt=50)
    activation: Literal["norm_exp"] = "norm_exp"
    features: int = Field(256, gt=1)
    """Upstream's is 256; smaller widths build small models (vist3a_synth's synth-anysplat)."""
    hardcoded: dict[str, Any] | None = None
    """Descriptive (upstream's fixed widths: head_features_1 = head_features_2 = 128)."""

    @field_validator("patch_size", mode="before")
    @classmethod
    def _square(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == value[1]:
            return value[0]
        return value


class AnySplatArchitecture(StrictModel):
    """The encoder and decoder configs plus every submodule's constructor arguments."""

    model_config = StrictModel.model_config | {"populate_by_name": True}

    encoder_cfg: EncoderCfg = EncoderCfg()
    decoder_cfg: DecoderCfg = DecoderCfg()
    aggregator: AggregatorConfig = Field(AggregatorConfig(), alias="encoder.aggregator")
    patch_embed: DinoConfig = Field(DinoConfig(), alias="encoder.aggregator.patch_embed")
    camera_head: CameraHeadConfig = Field(CameraHeadConfig(), alias="encoder.camera_head")
    depth_head: DPTConfig = Field(DPTConfig(output_dim=2, activation="exp"), alias="encoder.depth_head")
    gaussian_param_head: GaussianHeadConfig = Field(GaussianHeadConfig(), alias="encoder.gaussian_param_head")

    @model_validator(mode="after")
    def _check(self) -> AnySplatArchitecture:
        want = gaussian_channels(self.encoder_cfg.gaussian_adapter.sh_degree)
        head = self.gaussian_param_head
        if head.output_dim != want:
            raise ValueError(f"gaussian_param_head.output_dim must be {want} for sh_degree "
                             f"{self.encoder_cfg.gaussian_adapter.sh_degree}, got {head.output_dim}")  # fmt: skip
        if head.dim_in != 2 * self.aggregator.embed_dim or head.patch_size != self.aggregator.patch_size:
            raise ValueError("gaussian_param_head must have dim_in 2 * embed_dim and the aggregator's patch_size")
        self.vggt()  # the VGGT parts' own checks
        return self

    def compact_layers(self) -> list[int]:
        """The aggregator layers upstream returns: ``intermediate_layer_idx`` plus the last layer, ascending."""
        idx = self.encoder_cfg.intermediate_layer_idx
        if idx is None:
            return list(range(self.aggregator.depth))
        return sorted({*idx, self.aggregator.depth - 1})

    def read_layers(self, head: DPTConfig) -> list[int]:
        """The aggregator layers a head really reads: upstream looks each index up by position in the compact list."""
        compact = self.compact_layers()
        wanted = head.intermediate_layer_idx
        positions = wanted if len(compact) > MAX_COMPACT_LAYERS else [wanted.index(i) for i in wanted]
        if any(not 0 <= p < len(compact) for p in positions):
            raise ValueError(f"intermediate_layer_idx {wanted} does not fit the {len(compact)} layers {compact} the aggregator returns")
        return [compact[p] for p in positions]

    def vggt(self) -> VGGTArchitecture:
        """The VGGT parts (no point or track head), each head reading the layers it really reads."""
        values = {
            "aggregator": self.aggregator, "aggregator.patch_embed": self.patch_embed, "camera_head": self.camera_head,
            "depth_head": self.resolved(self.depth_head), "point_head": None, "track_head": None,
        }  # fmt: skip
        return VGGTArchitecture.model_validate(values)

    def resolved(self, head: H) -> H:
        """A copy of ``head`` whose ``intermediate_layer_idx`` names the layers it really reads."""
        return head.model_copy(update={"intermediate_layer_idx": self.read_layers(head)})

    def to_json(self) -> dict[str, Any]:
        """The per-submodule ``config.json`` form (what :func:`parse_architecture` reads back)."""
        return self.model_dump(mode="json", by_alias=True)


def parse_architecture(values: dict[str, Any], where: str) -> AnySplatArchitecture:
    """A hub-format or per-submodule config dict -> a validated architecture; ConfigError names the problem."""
    known = ("encoder_cfg", "decoder_cfg", *SUBMODULES, *INFO_KEYS)
    unknown = sorted(k for k in values if k not in known and not k.startswith("_"))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (expected encoder_cfg, decoder_cfg and optionally {', '.join(SUBMODULES)})")
    if "encoder_cfg" not in values:
        raise ConfigError(f"{where}: missing encoder_cfg")
    given = [k for k in SUBMODULES if k in values]
    if given and len(given) < len(SUBMODULES):
        raise ConfigError(f"{where}: missing {', '.join(k for k in SUBMODULES if k not in values)} (give all submodules or none)")
    parts = {k: _without_upstream_prefix(values[k], f"{where}: {k}") for k in given}
    return validate(AnySplatArchitecture, {"encoder_cfg": values["encoder_cfg"], "decoder_cfg": values.get("decoder_cfg", {}), **parts}, where)


def _without_upstream_prefix(part: Any, where: str) -> Any:
    """Upstream's class names as this implementation spells them; ``use_checkpoint`` (speed only) is dropped."""
    if not isinstance(part, dict):
        raise ConfigError(f"{where}: expected an object")
    part = {k: v.removeprefix(UPSTREAM_PREFIX) if k in ("class", "block_fn") and isinstance(v, str) else v for k, v in part.items()}
    if not isinstance(part.pop("use_checkpoint", True), bool):
        raise ConfigError(f"{where}: use_checkpoint must be a boolean")
    return part
