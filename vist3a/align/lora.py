"""LoRA on the generator's denoiser (PEFT), saved as a PEFT adapter folder that ``load_lora`` reads back."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
from safetensors.torch import save_file
from torch import Tensor, nn

from vist3a import distributed
from vist3a.align.ema import EMA
from vist3a.config import StrictModel
from vist3a.io.atomic import atomic_directory

PEFT_PREFIX = "base_model.model."  # how PeftModel.save_pretrained names the weights


class LoraOptions(StrictModel):
    """LoRA on the denoiser (the paper: rank 8, alpha 16 on the attention q/k/v/out projections)."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    """Module-name suffixes that get LoRA (diffusers' attention projections)."""


def attach_lora(denoiser: nn.Module, options: LoraOptions) -> dict[str, nn.Parameter]:
    """Inject LoRA into ``denoiser`` (everything else frozen); returns the trainable LoRA parameters by name."""
    config = LoraConfig(r=options.rank, lora_alpha=options.alpha, lora_dropout=options.dropout,
                        target_modules=list(options.targets))  # fmt: skip
    inject_adapter_in_model(config, denoiser)
    return trainable(denoiser)


def trainable(module: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters of ``module`` that require gradients, by name."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def lora_state(denoiser: nn.Module, ema: EMA | None = None) -> dict[str, Tensor]:
    """The adapter's weights (or their EMA) by PEFT name, in full; a collective when the denoiser is sharded."""
    state = get_peft_model_state_dict(denoiser)
    if ema is not None:
        averaged = {name.replace(".default", ""): value for name, value in ema.shadow.items()}
        state = {key: averaged[key].to(value.dtype) for key, value in state.items()}
    return distributed.full_tensors(state)


def save_lora(denoiser: nn.Module, directory: str | Path, state: Mapping[str, Tensor] | None = None, *,
              overwrite: bool = False) -> Path:  # fmt: skip
    """Write ``state`` (default: the adapter's current weights, see :func:`lora_state`) as ``adapter_config.json`` +
    ``adapter_model.safetensors``, atomically."""
    state = lora_state(denoiser) if state is None else state
    config = denoiser.peft_config["default"]
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        save_file({PEFT_PREFIX + k: v.detach().cpu().contiguous() for k, v in state.items()}, tmp / "adapter_model.safetensors")
        config.save_pretrained(tmp)
    return Path(directory)
