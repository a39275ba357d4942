"""MV-DUSt3R(+) architecture configs: the constructor arguments of the official ``AsymmetricCroCo3DStereoMultiView``
plus the head settings upstream hard-codes (``implicit``).

``config.json`` is ``{"model": {"class", "args", "implicit"}}`` as in the reference fixture; a flat object of
constructor arguments (the hub-mixin form) is read too. Omitted arguments take upstream's constructor defaults, so
an argument this implementation does not build (``pos_embed="cosine"``, ``head_type="dpt"``, ``GS_skip=True``) is a
one-line ConfigError rather than a silent difference. Never evaluated: the official checkpoints' constructor string
is not read at all.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import Field, field_serializer, field_validator, model_validator

from vist3a.config import StrictModel, validate
from vist3a.errors import ConfigError

CLASS_NAME = "dust3r.model.AsymmetricCroCo3DStereoMultiView"
INFO_KEYS = ("fixture", "seed", "upstream", "forward", "weights", "torch_version", "num_parameters",
             "state_dict_non_float_entries", "inputs", "outputs")  # fmt: skip
DEFAULT_N_REF = 4
"""References of MV-DUSt3R+ when the config does not fix ``n_ref`` (upstream's demo.py)."""
INF = math.inf


class SkipProjConfig(StrictModel):
    """``LinearPts3d``'s RGB skip branch (upstream hard-codes width 256 and scale 1e-4)."""

    skip_dim: int = Field(256, gt=0)
    skip_proj_scale: float = 1e-4
    note: str | None = None


class GSHeadConfig(StrictModel):
    """``GSHead``'s hard-coded settings; ``cp`` and ``radius`` are stored but unused upstream."""

    mlp_dim: int = Field(768, gt=0)
    mlp_depth: int = Field(1, gt=0)
    cp: bool = True
    radius: float = 0.5
    norm_layer: Literal["nn.LayerNorm (eps 1e-5)"] = "nn.LayerNorm (eps 1e-5)"
    skip: Literal[False] = False
    sh_degree: int | None = None
    """Descriptive; must equal ``args.sh_degree`` when given."""
    note: str | None = None


class ImplicitConfig(StrictModel):
    """What the constructor does not expose, with upstream's values as defaults."""

    model_config = StrictModel.model_config | {"populate_by_name": True}

    gs_head: GSHeadConfig = Field(GSHeadConfig(), alias="GSHead")
    skip_proj: SkipProjConfig = Field(SkipProjConfig(), alias="LinearPts3d.skip_proj")
    rope: str | None = Field(None, alias="RoPE2D")
    """Descriptive (which RoPE kernel upstream ran)."""


class MVDUSt3RArgs(StrictModel):
    """``AsymmetricCroCo3DStereoMultiView(...)`` arguments; defaults are upstream's constructor defaults."""

    model_config = StrictModel.model_config | {"populate_by_name": True}

    output_mode: Literal["pts3d"] = "pts3d"
    head_type: Literal["linear"] = "linear"
    depth_mode: tuple[Literal["linear", "square", "exp"], float, float] = ("exp", -INF, INF)
    conf_mode: tuple[Literal["exp", "sigmoid"], float, float] = ("exp", 1.0, INF)
    freeze: Literal["none", "mask", "encoder"] = "none"
    """Training only."""
    landscape_only: bool = True
    """Heads always run at the true (H, W) here (see docs/decoders/mvdust3r.md)."""
    patch_embed_cls: Literal["PatchEmbedDust3R", "ManyAR_PatchEmbed"] = "PatchEmbedDust3R"
    """Both build the same patch conv; they differ only in how upstream treats portrait images (see the docs)."""
    gs: bool = Field(False, alias="GS")
    gs_skip: Literal[False] = Field(False, alias="GS_skip")
    sh_degree: int = Field(0, ge=0, le=4)
    pts_head_config: dict[Literal["skip"], bool] = {}
    n_ref: int | None = Field(None, gt=0)
    img_size: tuple[int, int] = (224, 224)
    patch_size: int = Field(16, gt=0)
    mask_ratio: float = 0.9
    """Training only (the ``mask_token`` parameter exists regardless)."""
    enc_embed_dim: int = Field(768, gt=0)
    enc_depth: int = Field(12, gt=0)
    enc_num_heads: int = Field(12, gt=0)
    dec_embed_dim: int = Field(512, gt=0)
    dec_depth: int = Field(8, gt=0)
    dec_num_heads: int = Field(16, gt=0)
    mlp_ratio: float = Field(4.0, gt=0)
    norm_im2_in_dec: bool = True
    pos_embed: str = "cosine"
    m_ref_flag: bool = False

    @field_validator("img_size", mode="before")
    @classmethod
    def _square(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) else value

    @field_serializer("depth_mode", "conf_mode")
    def _finite_json(self, mode: tuple[str, float, float]) -> list[Any]:
        """Infinite bounds as the strings ``"-inf"``/``"inf"`` (JSON has no infinity)."""
        return [v if not isinstance(v, float) or math.isfinite(v) else ("inf" if v > 0 else "-inf") for v in mode]

    @model_validator(mode="after")
    def _check(self) -> MVDUSt3RArgs:
        if not re.fullmatch(r"RoPE\d+(\.\d+)?", self.pos_embed):
            raise ValueError(f"pos_embed {self.pos_embed!r} is not supported (only RoPE<freq>, e.g. RoPE100)")
        if self.depth_mode[1:] != (-INF, INF):
            raise ValueError("depth_mode bounds must be (-inf, inf) (upstream asserts this)")
        for name, dim, heads in (("enc", self.enc_embed_dim, self.enc_num_heads), ("dec", self.dec_embed_dim, self.dec_num_heads)):
            if dim % heads or (dim // heads) % 4:
                raise ValueError(f"{name}_embed_dim {dim} must split into {heads} heads of a multiple of 4 channels (2-D RoPE)")
        if any(n % self.patch_size for n in self.img_size):
            raise ValueError(f"img_size {self.img_size} must be a multiple of patch_size {self.patch_size}")
        if self.m_ref_flag and self.n_ref == 1:
            raise ValueError("m_ref_flag needs n_ref > 1 reference views")
        return self

    @property
    def rope_base(self) -> float:
        return float(self.pos_embed.removeprefix("RoPE"))

    @property
    def skip(self) -> bool:
        return self.pts_head_config.get("skip", False)


class MVDUSt3RArchitecture(StrictModel):
    """Constructor arguments plus the implicit head settings."""

    args: MVDUSt3RArgs
    implicit: ImplicitConfig = ImplicitConfig()

    @model_validator(mode="after")
    def _check(self) -> MVDUSt3RArchitecture:
        declared = self.implicit.gs_head.sh_degree
        if declared is not None and declared != self.args.sh_degree:
            raise ValueError(f"implicit.GSHead.sh_degree {declared} differs from args.sh_degree {self.args.sh_degree}")
        return self

    @property
    def n_ref(self) -> int:
        """Reference views the forward uses: ``args.n_ref``, else 4 for MV-DUSt3R+ and 1 for MV-DUSt3R."""
        return self.args.n_ref or (DEFAULT_N_REF if self.args.m_ref_flag else 1)

    @property
    def variant(self) -> str:
        return "MV-DUSt3R+" if self.args.m_ref_flag else "MV-DUSt3R"

    def with_n_ref(self, n_ref: int | None) -> MVDUSt3RArchitecture:
        """A copy whose forward uses ``n_ref`` references (None keeps this one's)."""
        if n_ref is None:
            return self
        args = validate(MVDUSt3RArgs, {**self.args.model_dump(by_alias=True), "n_ref": n_ref}, "n_ref")
        return self.model_copy(update={"args": args})

    def to_json(self) -> dict[str, Any]:
        """The ``config.json`` form that :func:`parse_architecture` reads back."""
        args = self.args.model_dump(mode="json", by_alias=True)
        return {"model": {"class": CLASS_NAME, "args": args, "implicit": self.implicit.model_dump(mode="json", by_alias=True)}}


def released(m_ref_flag: bool = True, n_ref: int | None = None) -> MVDUSt3RArchitecture:
    """The released configuration (scripts/test_mvd*.sh): MV-DUSt3R+ with ``m_ref_flag``, MV-DUSt3R without."""
    args = {
        "pos_embed": "RoPE100", "img_size": 224, "head_type": "linear", "output_mode": "pts3d",
        "depth_mode": ("exp", -INF, INF), "conf_mode": ("exp", 1, 1e9), "enc_embed_dim": 1024, "enc_depth": 24,
        "enc_num_heads": 16, "dec_embed_dim": 768, "dec_depth": 12, "dec_num_heads": 12, "GS": True, "sh_degree": 0,
        "pts_head_config": {"skip": True}, "m_ref_flag": m_ref_flag, "n_ref": n_ref,
    }  # fmt: skip
    return validate(MVDUSt3RArchitecture, {"args": args}, "MV-DUSt3R config")


def parse_architecture(values: dict[str, Any], where: str) -> MVDUSt3RArchitecture:
    """A ``config.json`` dict (fixture form or flat constructor arguments) -> a validated architecture."""
    if "model" in values:
        unknown = sorted(k for k in values if k not in ("model", *INFO_KEYS) and not k.startswith("_"))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (expected model and informational keys)")
        model = values["model"]
        if not isinstance(model, dict) or "args" not in model:
            raise ConfigError(f"{where}: model: expected an object with class, args and optionally implicit")
        if model.get("class", CLASS_NAME) != CLASS_NAME:
            raise ConfigError(f"{where}: model.class: expected {CLASS_NAME}, got {model['class']!r}")
        parts = {"args": model["args"], "implicit": model.get("implicit", {})}
        return validate(MVDUSt3RArchitecture, parts, where)
    args = {k: v for k, v in values.items() if not k.startswith("_")}
    return validate(MVDUSt3RArchitecture, {"args": args}, where)
