"""Import the official VIST3A stitched AnySplat (``anysplat_stitched.pth`` from HJGO/VIST3A) into our stitched format.

The official file is ``{"lora": ..., "stitching_layer": {"weight", "bias"}, "mask_token", "cls_token",
"register_tokens"}``. ``lora`` is loralib's ``lora_state_dict(bias="lora_only")`` of the stitched AnySplat, whose
first k DINO blocks were deleted from the ``ModuleList`` (so official block ``i`` is our block ``i + k``). Per layer:

- ``<layer>.lora_A`` / ``<layer>.lora_B``: Linear ``[r,in]`` / ``[out,r]``; Conv2d (square kernel k)
  ``[r*k, in*k]`` / ``[out*k, r*k]``, delta ``(B @ A).view(weight.shape) * alpha / r``.
- ``<layer>.bias``: the trained bias, which replaces the base bias.

Linear and 1x1-conv LoRA map exactly onto PEFT (``lora_A.default.weight`` / ``lora_B.default.weight``, same
``alpha / r`` scaling). A k x k conv delta has rank up to ``r*k*k``, more than a rank-r PEFT conv holds, so it is
merged into the conv's weight; those weights and the trained biases are stored in full with the stitched decoder
(``StitchedConfig.trained_parameters``) and the PEFT LoRA of those convs is zero. The base AnySplat is referenced,
not copied. ``mask_token`` is checked and dropped: neither forward uses it. The official forward adds DINO's patch
position embedding to the stitch conv's tokens, so the converted decoder sets ``add_position_embedding``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor, nn

import vist3a
from vist3a.errors import CheckpointError
from vist3a.stitch.adapter import AdapterConfig
from vist3a.stitch.stitched import LoraSettings, StitchedConfig, StitchedDecoder

RELEASE_POINT = "enc_blocks_2"
RELEASE_SPEC = "conv3d_k5x3x3_o1024_s1x2x2_p2x1x1"
RELEASE_LORA = LoraSettings(rank=64, alpha=32.0, dropout=0.0)
TOP_KEYS = {"lora", "stitching_layer", "mask_token", "cls_token", "register_tokens"}
DINO_BLOCK = re.compile(r"^(encoder\.aggregator\.patch_embed\.blocks\.)(\d+)\.")


def load_official(path: str | Path) -> dict:
    """The official ``.pth`` through ``torch.load(weights_only=True)``, top-level keys checked."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ... for files it refuses
        raise CheckpointError(
            f"{path}: cannot be read with torch.load(weights_only=True) ({str(exc).splitlines()[0][:120]}); if you "
            "trust the file, re-save it once as plain tensors: torch.save(torch.load(p, weights_only=False), p)"
        ) from None
    if not isinstance(state, dict) or set(state) != TOP_KEYS:
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a VIST3A stitched AnySplat file (expected keys {sorted(TOP_KEYS)}, got {found})")
    return state


def official_name(module: str, cut: int) -> str:
    """Our LoRA layer name (``model.<...>``) -> the official stitched-model name (``encoder.<...>``, DINO blocks
    renumbered after the ``cut`` deleted ones)."""
    name = "encoder." + module.removeprefix("model.")
    match = DINO_BLOCK.match(name)
    if match:
        name = f"{match[1]}{int(match[2]) - cut}." + name[match.end() :]
    return name


def convert_official_stitched(pth: str | Path, anysplat_checkpoint: str, out_dir: str | Path, *,
                              stitch_point: str = RELEASE_POINT, spec: str = RELEASE_SPEC,
                              lora: LoraSettings = RELEASE_LORA, temporal_factor: int = 4,
                              decoder_resolution: tuple[int, int] = (448, 448)) -> Path:  # fmt: skip
    """Convert ``pth`` onto AnySplat from ``anysplat_checkpoint`` and save a StitchedDecoder folder at ``out_dir``
    (with the rebased AnySplat in ``out_dir/anysplat``). The defaults are the release's settings."""
    out = Path(out_dir)
    if out.exists():
        raise CheckpointError(f"{out} already exists; choose another folder")
    state = load_official(pth)
    decoder = vist3a.load_decoder("anysplat", anysplat_checkpoint)
    cut = int(stitch_point.rpartition("_")[2])
    layers = _lora_layers(decoder, stitch_point)
    peft_state, merged = _apply_lora(decoder, layers, state["lora"], cut, lora.alpha / lora.rank, pth)
    _copy(decoder.model.aggregator.patch_embed.mask_token, state["mask_token"], "mask_token", pth)
    config = StitchedConfig(
        decoder="anysplat", decoder_checkpoint=_checkpoint_reference(anysplat_checkpoint), stitch_point=stitch_point,
        adapter=AdapterConfig(spec=spec, in_channels=state["stitching_layer"]["weight"].shape[1],
                              temporal_factor=temporal_factor),
        lora=lora, trained_parameters=merged, add_position_embedding=True, decoder_resolution=decoder_resolution,
    )  # fmt: skip
    stitched = StitchedDecoder(config, decoder)
    _load_trained(stitched, state, peft_state, pth)
    return stitched.save_pretrained(out)


def _checkpoint_reference(checkpoint: str) -> str:
    """A local checkpoint as an absolute path (the folder can move); a hub id as it is."""
    path = Path(checkpoint).expanduser()
    return str(path.resolve()) if path.exists() else checkpoint


def _lora_layers(decoder: nn.Module, point: str) -> dict[str, nn.Module]:
    modules = dict(decoder.named_modules())
    return {name: modules[name] for name in decoder.stitch_targets(point).lora_modules}


def _apply_lora(decoder: nn.Module, layers: dict[str, nn.Module], lora: dict[str, Tensor], cut: int, scaling: float,
                source: str | Path) -> tuple[dict[str, Tensor], list[str]]:  # fmt: skip
    """Write biases and k x k conv deltas into ``decoder``; return the exact PEFT LoRA for the other layers (our
    names) and the names of the parameters changed in place (stored in full with the stitched decoder)."""
    expected = {}
    for name, module in layers.items():
        theirs = official_name(name, cut)
        expected |= {f"{theirs}.lora_A": name, f"{theirs}.lora_B": name}
        if module.bias is not None:
            expected[f"{theirs}.bias"] = name
    unknown, missing = sorted(set(lora) - set(expected)), sorted(set(expected) - set(lora))
    if unknown or missing:
        raise CheckpointError(f"{source}: lora keys do not match this AnySplat at the stitch point: "
                              f"{len(unknown)} unknown {unknown[:3]}, {len(missing)} missing {missing[:3]}")  # fmt: skip
    peft: dict[str, Tensor] = {}
    merged: list[str] = []
    for name, module in layers.items():
        theirs = official_name(name, cut)
        a, b = lora[f"{theirs}.lora_A"].float(), lora[f"{theirs}.lora_B"].float()
        if module.bias is not None:
            _copy(module.bias, lora[f"{theirs}.bias"], f"{theirs}.bias", source)
            merged.append(f"{name}.bias")
        if isinstance(module, nn.Conv2d) and module.kernel_size != (1, 1):
            delta = _conv_delta(module, a, b, theirs, source)
            with torch.no_grad():
                module.weight += (delta * scaling).to(module.weight.dtype)
            merged.append(f"{name}.weight")
            continue
        shape = module.weight.shape[:2]
        if a.shape[1] != shape[1] or b.shape[0] != shape[0] or a.shape[0] != b.shape[1]:
            raise CheckpointError(f"{source}: {theirs} LoRA shapes {list(a.shape)}, {list(b.shape)} do not fit weight {list(module.weight.shape)}")
        extra = (1, 1) if isinstance(module, nn.Conv2d) else ()
        peft[f"{name}.lora_A.weight"] = a.reshape(*a.shape, *extra)
        peft[f"{name}.lora_B.weight"] = b.reshape(*b.shape, *extra)
    return peft, merged


def _conv_delta(module: nn.Conv2d, a: Tensor, b: Tensor, name: str, source: str | Path) -> Tensor:
    """loralib's Conv2d delta ``(B @ A).view(weight.shape)`` (unscaled)."""
    if a.shape[0] != b.shape[1] or b.shape[0] * a.shape[1] != module.weight.numel():
        raise CheckpointError(f"{source}: {name} LoRA shapes {list(a.shape)}, {list(b.shape)} do not fit weight {list(module.weight.shape)}")
    return (b @ a).view(module.weight.shape)


def _load_trained(stitched: StitchedDecoder, state: dict, peft: dict[str, Tensor], source: str | Path) -> None:
    """The stitch conv, the DINO tokens and the PEFT LoRA (zero on the layers merged into the base)."""
    conv = state["stitching_layer"]
    if set(conv) != {"weight", "bias"}:
        raise CheckpointError(f"{source}: stitching_layer must hold weight and bias, got {sorted(conv)}")
    _copy(stitched.adapter.conv.weight, conv["weight"], "stitching_layer.weight", source)
    _copy(stitched.adapter.conv.bias, conv["bias"], "stitching_layer.bias", source)
    dino = stitched.decoder.model.aggregator.patch_embed
    _copy(dino.cls_token, state["cls_token"], "cls_token", source)
    _copy(dino.register_tokens, state["register_tokens"], "register_tokens", source)
    for name, parameter in stitched.decoder.named_parameters():
        if ".lora_" in name:
            key = name.replace(".default.", ".")
            with torch.no_grad():
                parameter.copy_(peft[key]) if key in peft else parameter.zero_()


def _copy(target: Tensor, value: object, name: str, source: str | Path) -> None:
    if not isinstance(value, Tensor) or value.shape != target.shape:
        got = list(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise CheckpointError(f"{source}: {name} should have shape {list(target.shape)}, got {got}")
    with torch.no_grad():
        target.copy_(value.to(target.dtype))
