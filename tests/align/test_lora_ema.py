"""LoRA on the denoiser, its EMA, and the PEFT folder that load_lora reads back."""

import pytest
import torch
from vist3a_wan import tiny_pipeline
from vist3a_wan.generator import WanGenerator

from vist3a.align.ema import EMA
from vist3a.align.lora import LoraOptions, attach_lora, lora_state, save_lora
from vist3a.generators.options import DiffusersVideoConfig


def denoise(transformer):
    cfg = transformer.config
    g = torch.Generator().manual_seed(0)
    latents, text = torch.randn(1, cfg.in_channels, 2, 8, 8, generator=g), torch.randn(1, 16, cfg.text_dim, generator=g)
    with torch.no_grad():
        return transformer(latents, torch.tensor([500]), text, return_dict=False)[0]


def test_lora_targets_the_attention_projections_and_starts_as_identity():
    transformer = tiny_pipeline(seed=0).transformer
    before = denoise(transformer)
    params = attach_lora(transformer, LoraOptions(rank=2, alpha=4))
    assert params and all("lora_" in n and any(f".{t}." in n for t in ("to_q", "to_k", "to_v", "to_out.0")) for n in params)
    assert sum(p.requires_grad for p in transformer.parameters()) == len(params)
    assert torch.equal(denoise(transformer), before)  # lora_B starts at zero


def test_ema_schedule_and_state():
    weight = torch.nn.Parameter(torch.zeros(3))
    ema = EMA({"w": weight}, max_decay=0.99)
    assert ema.decay() == 0.1  # (1 + 0) / (10 + 0): early steps follow the weights closely
    values = []
    for step in range(3):
        weight.data.fill_(float(step + 1))
        expected_decay = min((1 + step) / (10 + step), 0.99)
        previous = ema.shadow["w"].clone()
        ema.update({"w": weight})
        assert torch.allclose(ema.shadow["w"], expected_decay * previous + (1 - expected_decay) * weight.detach())
        values.append(ema.shadow["w"][0].item())
    restored = EMA({"w": weight})
    restored.load_state_dict(ema.state_dict())
    assert restored.step == 3 and torch.equal(restored.shadow["w"], ema.shadow["w"])
    with pytest.raises(ValueError, match="other parameters"):
        EMA({"v": weight}).load_state_dict(ema.state_dict())
    ema.copy_to({"w": weight})
    assert weight[0].item() == values[-1]


def test_saved_lora_and_ema_load_back_through_the_generator(tmp_path):
    transformer = tiny_pipeline(seed=0).transformer
    params = attach_lora(transformer, LoraOptions(rank=2, alpha=4))
    ema = EMA(params)
    with torch.no_grad():
        for i, p in enumerate(params.values()):
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(i)) * 0.1)
    ema.update(params)
    save_lora(transformer, tmp_path / "lora")
    save_lora(transformer, tmp_path / "lora_ema", lora_state(transformer, ema))
    tuned = denoise(transformer)
    ema.copy_to(params)
    averaged = denoise(transformer)
    assert not torch.allclose(tuned, averaged)
    for folder, expected in (("lora", tuned), ("lora_ema", averaged)):
        generator = WanGenerator(tiny_pipeline(seed=0), DiffusersVideoConfig(max_sequence_length=16))
        generator.load_lora(str(tmp_path / folder))
        assert torch.allclose(denoise(generator.trainable()), expected, atol=1e-6), folder
    with pytest.raises(Exception, match="already exists"):
        save_lora(transformer, tmp_path / "lora")
