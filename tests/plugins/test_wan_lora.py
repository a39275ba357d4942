"""``DiffusersVideoGenerator.load_lora`` on the tiny Wan: a PEFT adapter folder shaped like the official VIST3A Wan LoRA
(``vist3a_1.3b_lora_ema``: attn1/attn2 to_q/to_k/to_v/to_out.0), written here with PeftModel.save_pretrained."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from vist3a_wan import tiny_pipeline
from vist3a_wan.generator import WanGenerator

from vist3a.errors import CheckpointError
from vist3a.generators.options import DiffusersVideoConfig

TARGETS = [f"{attn}.{p}" for attn in ("attn1", "attn2") for p in ("to_q", "to_k", "to_v", "to_out.0")]


def make() -> WanGenerator:
    return WanGenerator(tiny_pipeline(), DiffusersVideoConfig(max_sequence_length=16))


def write_adapter(transformer: torch.nn.Module, folder: Path) -> None:
    """A PEFT folder as the official training script writes it, with non-zero lora_B."""
    peft = get_peft_model(copy.deepcopy(transformer), LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
    with torch.no_grad():
        for name, parameter in peft.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(len(name))) * 0.1)
    assert isinstance(peft, PeftModel)
    peft.save_pretrained(folder)


def denoise(transformer: torch.nn.Module) -> torch.Tensor:
    cfg = transformer.config
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(1, cfg.in_channels, 2, 8, 8, generator=gen)
    text = torch.randn(1, 16, cfg.text_dim, generator=gen)
    with torch.no_grad():
        return transformer(latents, torch.tensor([500]), text, return_dict=False)[0]


def merged_by_hand(transformer: torch.nn.Module, folder: Path) -> torch.nn.Module:
    """W + B @ A * alpha / r on a copy of every targeted Linear."""
    from safetensors.torch import load_file

    merged, state = copy.deepcopy(transformer), load_file(str(folder / "adapter_model.safetensors"))
    modules = dict(merged.named_modules())
    with torch.no_grad():
        for key, a in state.items():
            if ".lora_A." in key:
                name = key.removeprefix("base_model.model.").split(".lora_A.")[0]
                b = state[key.replace(".lora_A.", ".lora_B.")]
                modules[name].weight += b @ a * (8 / 4)
    return merged


def test_loaded_adapter_changes_the_denoiser_and_equals_the_merge(tmp_path):
    gen = make()
    before = denoise(gen.trainable())
    write_adapter(gen.trainable(), tmp_path / "lora")
    expected = denoise(merged_by_hand(gen.trainable(), tmp_path / "lora"))
    gen.load_lora(str(tmp_path / "lora"))
    after = denoise(gen.trainable())
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after, expected, rtol=1e-4, atol=1e-5)
    assert type(gen.pipe.transformer).__name__ == "WanTransformer3DModel"  # injected in place, not wrapped


def test_bad_sources_give_one_line_errors(tmp_path, monkeypatch):
    gen = make()
    (tmp_path / "empty").mkdir()
    other = LoraConfig(r=2, target_modules=["no_such_layer"])
    other.save_pretrained(str(tmp_path / "other"))
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other" / "adapter_model.safetensors"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    cases = {
        str(tmp_path / "missing"): "no such LoRA folder",
        str(tmp_path / "empty"): "not a PEFT LoRA adapter folder",
        str(tmp_path / "other"): "does not fit",
        "HJGO/VIST3A-not-cached:vist3a_1.3b_lora_ema": "not in the local Hugging Face cache",
    }
    for source, message in cases.items():
        with pytest.raises(CheckpointError, match=message) as err:
            gen.load_lora(source)
        assert "\n" not in str(err.value)
