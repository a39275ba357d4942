"""The stitched decoder: RAW video latents -> stitch adapter -> the 3D model's layers after the stitch point.

Saved as a folder: ``config.json`` (decoder, stitch point, adapter and LoRA settings, resolutions, latent
convention), ``model.safetensors`` (the adapter and the fully trained parameters such as special tokens) and
``lora/`` (PEFT ``adapter_config.json`` + ``adapter_model.safetensors``). The base decoder's weights are not copied:
``config.json`` names them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from safetensors.torch import save_file
from torch import Tensor, nn

from vist3a.config import StrictModel, validate
from vist3a.errors import CheckpointError, InputError
from vist3a.io.atomic import atomic_directory
from vist3a.io.checkpoint import CONFIG_NAME, WEIGHTS_NAME, check_state_dict, load_state_dict, read_config
from vist3a.protocols import Decoder3D
from vist3a.scene import Decoded3D
from vist3a.stitch.adapter import AdapterConfig, StitchAdapter

LORA_DIR = "lora"
LORA_LAYERS = (nn.Linear, nn.Conv2d)


class LoraSettings(StrictModel):
    """LoRA on every Linear and Conv2d after the stitch point (the paper: rank 64, alpha 32)."""

    rank: int = 64
    alpha: float = 32.0
    dropout: float = 0.0


class StitchedConfig(StrictModel):
    """Everything needed to rebuild a stitched decoder (its config.json)."""

    decoder: str
    """Decoder id (registry id or spec name) passed to ``vist3a.load_decoder``."""
    decoder_checkpoint: str | None = None
    stitch_point: str
    adapter: AdapterConfig
    lora: LoraSettings | None = LoraSettings()
    trained_parameters: list[str] = []
    """Further decoder parameters (names before LoRA wrapping) stored and trained in full, besides the decoder's
    special tokens; e.g. the merged weights of an imported release."""
    add_position_embedding: bool = False
    """Add the decoder's input position embedding to the adapter's tokens (``Decoder3D.position_embedding``), as
    the official VIST3A stitched AnySplat does."""
    decoder_resolution: tuple[int, int]
    """(H, W) of the frames the decoder's heads see (and of decoded RGB when it needs it)."""
    latents: Literal["raw"] = "raw"
    """Latent convention of the input: RAW VAE latents, as every Generator returns them."""


class StitchedDecoder(nn.Module):
    """``forward(latents [B,C,T',h,w], frames [B,3,T,H,W] in [-1,1] | None) -> Decoded3D``.

    ``frames`` (e.g. the video VAE's decoded frames) are required when the decoder ``needs_rgb``.
    """

    def __init__(self, config: StitchedConfig, decoder: Decoder3D) -> None:
        super().__init__()
        if not isinstance(decoder, nn.Module):
            raise TypeError("the decoder must be a torch.nn.Module")
        self.config, self.decoder = config, decoder
        if config.add_position_embedding and not hasattr(decoder, "position_embedding"):
            raise InputError(f"{decoder.name} has no input position embedding to add at the stitch point")
        self.adapter = StitchAdapter(config.adapter)
        targets = decoder.stitch_targets(config.stitch_point)
        if config.lora is not None:
            names = _lora_layers(decoder, targets.lora_modules)
            lora = LoraConfig(
                r=config.lora.rank, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                target_modules="^(" + "|".join(map(re.escape, names)) + ")$",
            )  # fmt: skip
            inject_adapter_in_model(lora, decoder)
        named = dict(decoder.named_parameters())
        self.full_parameters = [_wrapped_name(n, named) for n in (*targets.parameters, *config.trained_parameters)]
        for name, parameter in decoder.named_parameters():
            parameter.requires_grad_("lora_" in name or name in self.full_parameters)

    def forward(self, latents: Tensor, frames: Tensor | None = None) -> Decoded3D:
        aux = None
        if self.decoder.needs_rgb:
            if frames is None:
                raise ValueError(f"{self.decoder.name} reads RGB frames after the stitch point: pass frames")
            aux = {"frames": self.decoder.preprocess(frames)}
        tokens = self.adapter(latents)
        if self.config.add_position_embedding:
            grid = (tokens.shape[-2], tokens.shape[-1])
            tokens = tokens + self.decoder.position_embedding(self.config.stitch_point, grid)[:, None].to(tokens.dtype)
        return self.decoder.forward_from(self.config.stitch_point, tokens, aux)

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)

    def trained_state(self) -> dict[str, Tensor]:
        """Adapter and fully trained decoder parameters (LoRA is saved separately)."""
        state = {f"adapter.{k}": v for k, v in self.adapter.state_dict().items()}
        named = dict(self.decoder.named_parameters())
        state.update({f"decoder.{n}": named[n].detach() for n in self.full_parameters})
        return state

    def save_pretrained(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        from vist3a import __version__

        config = {"_class_name": type(self).__name__, "_vist3a_version": __version__, **self.config.model_dump(mode="json")}
        with atomic_directory(directory, overwrite=overwrite) as tmp:
            (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            save_file({k: v.detach().cpu().contiguous() for k, v in self.trained_state().items()}, tmp / WEIGHTS_NAME)
            if self.config.lora is not None:
                (tmp / LORA_DIR).mkdir()
                lora_state = get_peft_model_state_dict(self.decoder)
                save_file({k: v.detach().cpu().contiguous() for k, v in lora_state.items()}, tmp / LORA_DIR / "adapter_model.safetensors")
                self.decoder.peft_config["default"].save_pretrained(tmp / LORA_DIR)
        return Path(directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, decoder: Decoder3D | None = None, *, device: str = "cpu",
                        dtype: torch.dtype | None = None) -> StitchedDecoder:  # fmt: skip
        """Rebuild from a folder; the base decoder is loaded through ``vist3a.load_decoder`` unless given."""
        import vist3a

        directory = Path(directory)
        values = read_config(directory)
        if values.pop("_class_name", None) != cls.__name__:
            raise CheckpointError(f"{directory / CONFIG_NAME}: not a {cls.__name__} folder")
        values.pop("_vist3a_version", None)
        config = validate(StitchedConfig, values, str(directory / CONFIG_NAME))
        if decoder is None:
            decoder = vist3a.load_decoder(config.decoder, config.decoder_checkpoint)
        stitched = cls(config, decoder).to(dtype=dtype)
        state = load_state_dict(directory / WEIGHTS_NAME)
        check_state_dict(stitched.trained_state(), state, directory / WEIGHTS_NAME)
        stitched.load_state_dict(state, strict=False)
        if config.lora is not None:
            lora_state = load_state_dict(directory / LORA_DIR / "adapter_model.safetensors")
            result = set_peft_model_state_dict(stitched.decoder, lora_state)
            if getattr(result, "unexpected_keys", None):
                raise CheckpointError(f"{directory / LORA_DIR}: unexpected LoRA keys {result.unexpected_keys[:5]}")
        return stitched.to(device=device).eval()


def _wrapped_name(name: str, named: dict[str, nn.Parameter]) -> str:
    """A parameter's name after LoRA wrapping (a wrapped layer keeps its own weights under ``base_layer``)."""
    if name in named:
        return name
    head, _, leaf = name.rpartition(".")
    wrapped = f"{head}.base_layer.{leaf}"
    if wrapped not in named:
        raise ValueError(f"the decoder has no parameter {name!r}")
    return wrapped


def _lora_layers(decoder: nn.Module, prefixes: tuple[str, ...]) -> list[str]:
    """Names of every Linear / Conv2d inside the modules named ``prefixes``."""
    names = [
        name for name, module in decoder.named_modules()
        if isinstance(module, LORA_LAYERS) and any(name == p or name.startswith(p + ".") for p in prefixes)
    ]  # fmt: skip
    if not names:
        raise ValueError(f"{getattr(decoder, 'name', 'decoder')}: no Linear or Conv2d layer under {list(prefixes)}")
    return names
