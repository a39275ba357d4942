"""The official VIST3A stitched-AnySplat import, on synthetic files with the release's structure (loralib names and
shapes over the tiny AnySplat fixture); the real anysplat_stitched.pth was never available here."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import vist3a
from vist3a.cli import main
from vist3a.errors import CheckpointError
from vist3a.stitch.adapter import AdapterConfig, StitchAdapter
from vist3a.stitch.stitched import LoraSettings, StitchedDecoder

TINY = Path(__file__).parents[2].parent / "shared/reference/anysplat-tiny-a"
SPEC = "conv3d_k3x3x3_o64_s1x2x2_p1x1x1"
LORA = LoraSettings(rank=64, alpha=32.0)


@pytest.fixture
def release(entry_point_plugins):
    entry_point_plugins("vist3a_anysplat")
    from vist3a_anysplat import release

    return release


def official_file(release, point: str, seed: int = 0) -> dict:
    """An official-style dict: loralib ``lora_A``/``lora_B`` (+ bias) for every LoRA layer after ``point``."""
    decoder = vist3a.load_decoder("anysplat", str(TINY))
    cut, rank, gen = int(point.rpartition("_")[2]), LORA.rank, torch.Generator().manual_seed(seed)
    modules, lora = dict(decoder.named_modules()), {}
    for name in decoder.stitch_targets(point).lora_modules:
        module, theirs = modules[name], release.official_name(name, cut)
        k = module.kernel_size[0] if isinstance(module, nn.Conv2d) else 1
        out, inp = module.weight.shape[:2]
        lora[f"{theirs}.lora_A"] = torch.randn(rank * k, inp * k, generator=gen) * 0.02
        lora[f"{theirs}.lora_B"] = torch.randn(out * k, rank * k, generator=gen) * 0.02
        if module.bias is not None:
            lora[f"{theirs}.bias"] = module.bias.detach() + torch.randn(out, generator=gen) * 0.05
    dino = decoder.model.aggregator.patch_embed
    return {
        "lora": lora,
        "stitching_layer": {"weight": torch.randn(64, 4, 3, 3, 3, generator=gen) * 0.1, "bias": torch.randn(64, generator=gen) * 0.1},
        "mask_token": torch.randn(dino.mask_token.shape, generator=gen),
        "cls_token": torch.randn(dino.cls_token.shape, generator=gen),
        "register_tokens": torch.randn(dino.register_tokens.shape, generator=gen),
    }


def convert(release, state: dict, tmp_path: Path, point: str = "enc_blocks_1") -> Path:
    torch.save(state, tmp_path / "anysplat_stitched.pth")
    return release.convert_official_stitched(tmp_path / "anysplat_stitched.pth", str(TINY), tmp_path / "out", stitch_point=point,
                                             spec=SPEC, lora=LORA, decoder_resolution=(42, 56))  # fmt: skip


def reference(state: dict, point: str, latents: torch.Tensor, frames: torch.Tensor):
    """The official model by hand: loralib deltas merged into a copy of the base weights (W + B@A * alpha/r), the
    trained biases, tokens and stitch conv, DINO's patch position embedding added to the conv's tokens, then the
    plain (PEFT-free) forward from the stitch point."""
    decoder = vist3a.load_decoder("anysplat", str(TINY))
    cut, scaling, lora = int(point.rpartition("_")[2]), LORA.alpha / LORA.rank, state["lora"]
    modules = dict(decoder.named_modules())
    from vist3a_anysplat.release import official_name

    with torch.no_grad():
        for name in decoder.stitch_targets(point).lora_modules:
            module, theirs = modules[name], official_name(name, cut)
            module.weight += (lora[f"{theirs}.lora_B"] @ lora[f"{theirs}.lora_A"]).view(module.weight.shape) * scaling
            if module.bias is not None:
                module.bias.copy_(lora[f"{theirs}.bias"])
        dino = decoder.model.aggregator.patch_embed
        dino.cls_token.copy_(state["cls_token"])
        dino.register_tokens.copy_(state["register_tokens"])
        adapter = StitchAdapter(AdapterConfig(spec=SPEC, in_channels=4, temporal_factor=4))
        adapter.conv.weight.copy_(state["stitching_layer"]["weight"])
        adapter.conv.bias.copy_(state["stitching_layer"]["bias"])
        tokens = adapter(latents)
        tokens = tokens + dino.patch_pos_embed(*tokens.shape[-2:])[0].T.reshape(-1, 1, *tokens.shape[-2:])  # official
        return decoder.eval().forward_from(point, tokens, {"frames": decoder.preprocess(frames)})


@pytest.mark.parametrize("point", ["enc_blocks_1", "enc_blocks_2"])
def test_converted_decoder_equals_the_official_model_by_hand(release, tmp_path, point):
    state = official_file(release, point)
    out = convert(release, state, tmp_path, point)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "lora", "model.safetensors"]  # no base copy
    stitched = StitchedDecoder.from_pretrained(out)
    latents = torch.randn(1, 4, 2, 6, 8, generator=torch.Generator().manual_seed(1))
    frames = torch.rand(1, 3, 5, 42, 56, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        ours, expected = stitched(latents, frames).heads, reference(state, point, latents, frames).heads
    assert set(ours) == set(expected)
    errors = {k: (ours[k] - expected[k]).abs().max().item() / (1 + expected[k].abs().max().item()) for k in expected}
    assert max(errors.values()) < 1e-4, {k: e for k, e in errors.items() if e >= 1e-4}
    merged = stitched.config.trained_parameters  # biases and k x k convs, stored in full instead of a base copy
    assert merged and any(name.endswith(".bias") for name in merged) and any(name.endswith(".weight") for name in merged)
    stored = {k.removeprefix("decoder.").replace(".base_layer", ""): v for k, v in load_file(out / "model.safetensors").items()}
    base = dict(vist3a.load_decoder("anysplat", str(TINY)).named_parameters())
    assert set(merged) <= set(stored) and any(not torch.equal(base[n], stored[n]) for n in merged)


def test_linear_and_pointwise_lora_stay_peft_and_exact(release, tmp_path):
    state = official_file(release, "enc_blocks_1")
    stitched = StitchedDecoder.from_pretrained(convert(release, state, tmp_path))
    named = dict(stitched.decoder.named_parameters())
    qkv = "model.aggregator.patch_embed.blocks.1.attn.qkv"  # official DINO block 0 after deleting one block
    assert torch.equal(named[f"{qkv}.lora_A.default.weight"], state["lora"]["encoder.aggregator.patch_embed.blocks.0.attn.qkv.lora_A"])
    assert stitched.decoder.peft_config["default"].lora_alpha / stitched.decoder.peft_config["default"].r == 0.5
    convs = [n for n, m in stitched.decoder.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and ".base_layer" in n]
    assert convs and all(named[n.replace("base_layer", "lora_B.default.weight")].abs().max() == 0 for n in convs)


def test_bad_files_give_one_line_errors(release, tmp_path):
    state = official_file(release, "enc_blocks_1")
    cases = {
        "weights_only": {**state, "args": argparse.Namespace(lr=1)},
        "expected keys": {k: v for k, v in state.items() if k != "mask_token"},
        "1 unknown": {**state, "lora": {**state["lora"], "encoder.extra.lora_A": torch.zeros(1)}},
        "1 missing": {**state, "lora": {k: v for i, (k, v) in enumerate(state["lora"].items()) if i}},
        "cls_token should have shape": {**state, "cls_token": torch.zeros(3)},
        "stitching_layer.weight should have shape": {**state, "stitching_layer": {"weight": torch.zeros(64, 4, 5, 3, 3), "bias": torch.zeros(64)}},
    }
    for i, (message, bad) in enumerate(cases.items()):
        torch.save(bad, tmp_path / f"bad{i}.pth")
        with pytest.raises(CheckpointError, match=message) as err:
            release.convert_official_stitched(tmp_path / f"bad{i}.pth", str(TINY), tmp_path / f"out{i}", stitch_point="enc_blocks_1",
                                                spec=SPEC, lora=LORA)
        assert "\n" not in str(err.value) and not (tmp_path / f"out{i}").exists()


def test_cli_imports_the_release(release, tmp_path, capsys):
    torch.save(official_file(release, "enc_blocks_2"), tmp_path / "a.pth")
    assert main(["anysplat-import-release", str(tmp_path / "a.pth"), "--anysplat", str(TINY), "--out", str(tmp_path / "o")]) == 2
    assert "stitching_layer.weight should have shape" in capsys.readouterr().err  # the release's 1024-channel spec
    assert main(["anysplat-import-release", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
