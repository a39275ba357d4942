"""Stitch spec grammar and derivation; the adapter and its design matrix."""

import pytest
import torch
import torch.nn.functional as F

from vist3a.errors import InputError
from vist3a.protocols import LatentSpec, StitchPoint
from vist3a.stitch.adapter import AdapterConfig, StitchAdapter, tokens_to_rows
from vist3a.stitch.spec import StitchSpec, derive_spec

WAN = LatentSpec(channels=16, spatial_factor=8, temporal_factor=4)


def test_grammar_round_trip():
    spec = StitchSpec.parse("conv3d_k5x3x3_o1024_s1x2x2_p2x1x1")
    assert (spec.kernel, spec.out_channels, spec.stride, spec.padding) == ((5, 3, 3), 1024, (1, 2, 2), (2, 1, 1))
    assert str(spec) == "conv3d_k5x3x3_o1024_s1x2x2_p2x1x1"
    assert spec.output_size((13, 64, 64)) == (13, 32, 32)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("conv3d_k5x3_o1024_s1x2x2_p2x1x1", "invalid stitch spec"),
        ("conv2d_k5x3x3_o1024_s1x2x2_p2x1x1", "invalid stitch spec"),
        ("conv3d_k5x3x3_o0_s1x2x2_p2x1x1", "channels must be >= 1"),
        ("conv3d_k5x3x3_o8_s1x2x2_p5x1x1", "padding must be smaller than the kernel"),
    ],
)
def test_invalid_specs(text, message):
    with pytest.raises(InputError, match=message):
        StitchSpec.parse(text)


@pytest.mark.parametrize(
    ("size", "grid", "expected"),
    [
        ((512, 512), (32, 32), "conv3d_k5x3x3_o1024_s1x2x2_p2x1x1"),  # the paper's Wan -> VGGT / AnySplat at 448
        ((384, 384), (14, 14), "conv3d_k5x7x7_o1024_s1x3x3_p2x0x0"),  # the paper's Wan -> MV-DUSt3R at 224
        ((256, 512), (16, 32), "conv3d_k5x3x3_o1024_s1x2x2_p2x1x1"),
        ((128, 128), (16, 16), "conv3d_k5x3x3_o1024_s1x1x1_p2x1x1"),
    ],
)
def test_derivation_reproduces_the_paper(size, grid, expected):
    spec = derive_spec(WAN, StitchPoint("enc_blocks_2", grid, 1024, 5, 2), size)
    assert str(spec) == expected
    assert spec.output_size((13, size[0] // 8, size[1] // 8)) == (13, *grid)


@pytest.mark.parametrize(
    ("size", "grid", "message"),
    [
        ((256, 256), (64, 64), "needs a 64-token grid but the latents have only 32 cells"),
        ((500, 512), (32, 32), "500 is not divisible by the VAE's spatial factor 8"),
        ((512, 512), (37, 37), "no Conv3d maps 64 latent cells onto the 37-token grid"),
    ],
)
def test_incompatible_geometry(size, grid, message):
    with pytest.raises(InputError, match=message):
        derive_spec(WAN, StitchPoint("p", grid, 8), size)


@pytest.fixture
def adapter():
    torch.manual_seed(0)
    config = AdapterConfig(spec="conv3d_k5x3x3_o6_s1x2x2_p2x1x1", in_channels=4, temporal_factor=4)
    return StitchAdapter(config).double()


def test_adapter_interpolates_time_then_convolves(adapter):
    latents = torch.randn(2, 4, 3, 8, 8, dtype=torch.float64)
    interpolated = adapter.interpolate(latents)
    assert interpolated.shape == (2, 4, 9, 8, 8)
    assert torch.allclose(interpolated[:, :, ::4], latents)  # latent frames land on frames 0, 4, 8
    assert torch.allclose(interpolated[:, :, 2], (latents[:, :, 0] + latents[:, :, 1]) / 2)
    assert adapter(latents).shape == (2, 6, 9, 4, 4)


def test_design_matrix_reproduces_the_conv_with_replicate_padding(adapter):
    latents = torch.randn(2, 4, 3, 8, 8, dtype=torch.float64)
    x = adapter.design_matrix(latents)
    weight = adapter.conv.weight.reshape(6, -1).T
    assert torch.allclose(x @ weight + adapter.conv.bias, tokens_to_rows(adapter(latents)), atol=1e-12)
    zero_padded = F.conv3d(adapter.interpolate(latents), adapter.conv.weight, adapter.conv.bias, (1, 2, 2), (2, 1, 1))
    assert not torch.allclose(zero_padded, adapter(latents))  # the padding mode matters, and the fit uses the module's


def test_set_linear_and_round_trip(adapter, tmp_path):
    weight, bias = torch.randn(4 * 5 * 3 * 3, 6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    adapter.set_linear(weight, bias)
    latents = torch.randn(1, 4, 2, 8, 8, dtype=torch.float64)
    assert torch.allclose(tokens_to_rows(adapter(latents)), adapter.design_matrix(latents) @ weight + bias)
    loaded = StitchAdapter.from_pretrained(adapter.save_pretrained(tmp_path / "adapter"), dtype=torch.float64)
    assert loaded.config == adapter.config and torch.equal(loaded(latents), adapter(latents))
