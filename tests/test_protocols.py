"""LatentSpec arithmetic, the protocols, the 3D output types and the load_* API."""

import pytest
import torch

import vist3a
from vist3a.config import ComponentConfig
from vist3a.errors import ConfigError, PluginError, ShapeError
from vist3a.hookspecs import hookimpl
from vist3a.protocols import Decoder3D, Generator, LatentSpec, Reward, StitchPoint
from vist3a.scene import Cameras, Decoded3D, Gaussians, PointMaps
from vist3a.specs import RewardSpec

WAN_LIKE = LatentSpec(channels=3, spatial_factor=8, temporal_factor=4, shift=(0.1, -0.2, 0.3), scale=(2.0, 0.5, 4.0))


def test_frame_rule():
    assert WAN_LIKE.frame_rule == "4k+1"
    assert [WAN_LIKE.is_valid_frames(t) for t in (1, 4, 5, 13)] == [True, False, True, True]
    assert [WAN_LIKE.valid_frames(t) for t in (1, 2, 5, 6, 12)] == [1, 5, 5, 9, 13]
    assert WAN_LIKE.latent_frames(13) == 4 and WAN_LIKE.pixel_frames(4) == 13
    assert WAN_LIKE.latent_shape(13, 512, 256) == (3, 4, 64, 32)
    with pytest.raises(ValueError, match="12 frames do not follow the frame rule 4k\\+1"):
        WAN_LIKE.latent_frames(12)
    with pytest.raises(ValueError, match="not divisible by the spatial factor 8"):
        WAN_LIKE.latent_shape(13, 500, 256)


def test_latent_frame_step():
    cog = LatentSpec(channels=16, spatial_factor=8, temporal_factor=4, latent_frame_step=2)
    assert cog.frame_rule == "8k+1" and cog.frame_step == 8
    assert [cog.is_valid_frames(t) for t in (9, 13, 17)] == [True, False, True]
    assert cog.valid_frames(13) == 17 and cog.latent_frames(17) == 5
    assert [cog.is_valid_latent_frames(n) for n in (1, 2, 3)] == [True, False, True]


def test_normalisation_round_trip_and_values():
    raw = torch.randn(2, 3, 4, 5, 6, dtype=torch.float64)
    model = WAN_LIKE.to_model(raw)
    assert torch.allclose(model[:, 1], (raw[:, 1] + 0.2) * 0.5)
    assert torch.allclose(WAN_LIKE.to_raw(model), raw)
    scalar = LatentSpec(channels=3, spatial_factor=8, temporal_factor=4, scale=0.7)
    assert torch.allclose(scalar.to_model(raw), raw * 0.7)
    with pytest.raises(ValueError, match=r"expected latents \[B,3,T',h,w\]"):
        WAN_LIKE.to_model(torch.zeros(1, 4, 1, 1, 1))
    with pytest.raises(ValueError, match="shift has 2 values for 3 channels"):
        LatentSpec(channels=3, spatial_factor=8, temporal_factor=4, shift=(0.0, 1.0))


def test_load_through_the_registry_and_protocols(plugins):
    generator = vist3a.load_generator("fake-generator")
    decoder = vist3a.load_decoder("fake-decoder", width=6)
    reward = vist3a.load_reward("fake-reward")
    assert isinstance(generator, Generator) and isinstance(decoder, Decoder3D) and isinstance(reward, Reward)
    frames = torch.rand(2, 3, 9, 16, 16) * 2 - 1
    latents = generator.encode(frames)
    assert latents.shape == (2, *generator.latent.latent_shape(9, 16, 16))
    assert generator.decode(latents).shape == frames.shape
    assert decoder.stitch_points((8, 12))[0] == StitchPoint("block_1", (2, 3), 6, 0, 1)


def test_forward_from_a_stitch_point_equals_forward(plugins):
    decoder = vist3a.load_decoder("fake-decoder")
    x = decoder.preprocess(torch.rand(2, 3, 5, 16, 16) * 2 - 1)
    full = decoder.forward(x)
    features = decoder.forward_features(x, [p.name for p in decoder.stitch_points((16, 16))])
    for point, tokens in features.items():
        assert tokens.shape == (2, 8, 5, 4, 4)
        assert torch.allclose(decoder.forward_from(point, tokens).points.depth, full.points.depth, atol=1e-6)


def test_bad_options_are_config_errors(plugins):
    with pytest.raises(ConfigError, match="decoder 'fake-decoder': image_sise: unknown field"):
        vist3a.load_decoder("fake-decoder", image_sise=8)
    with pytest.raises(ConfigError, match="decoder 'fake-decoder': dtype: Input should be"):
        vist3a.load_decoder("fake-decoder", dtype="float8")


def test_factory_must_build_the_protocol(plugins):
    class Wrong:
        @hookimpl
        def register_rewards(self, register):
            register(RewardSpec("not-a-reward", "d", lambda config: object()))

    plugins.add(Wrong(), "wrong")
    with pytest.raises(PluginError, match="built a object, which does not implement the Reward protocol"):
        vist3a.load_reward("not-a-reward")


def _cameras(b=1, v=2):
    extrinsics = torch.eye(4).repeat(b, v, 1, 1)
    extrinsics[..., :3, 3] = torch.tensor([1.0, 2.0, 3.0])
    intrinsics = torch.tensor([[100.0, 0, 32], [0, 50.0, 16], [0, 0, 1]]).repeat(b, v, 1, 1)
    return Cameras(extrinsics, intrinsics, (32, 64))


def test_cameras():
    cameras = _cameras()
    assert torch.allclose(cameras.centers, torch.tensor([-1.0, -2.0, -3.0]).expand(1, 2, 3))
    resized = cameras.resized((64, 32))
    assert torch.allclose(resized.intrinsics[0, 0], torch.tensor([[50.0, 0, 16], [0, 100.0, 32], [0, 0, 1]]))
    with pytest.raises(ShapeError, match=r"Cameras.intrinsics: expected shape \[1,2,3,3\], got \[1, 3, 3, 3\]"):
        Cameras(cameras.extrinsics, torch.zeros(1, 3, 3, 3), (32, 64))


def test_gaussians_and_point_maps_validate_shapes():
    g = Gaussians(torch.zeros(1, 5, 3), torch.ones(1, 5, 3), torch.zeros(1, 5, 4), torch.ones(1, 5), torch.zeros(1, 5, 16, 3))
    assert g.sh_degree == 3
    with pytest.raises(ShapeError, match="6 coefficients is not"):
        Gaussians(g.means, g.scales, g.quats, g.opacities, torch.zeros(1, 5, 6, 3))
    with pytest.raises(ShapeError, match=r"PointMaps.depth: expected shape \[1,2,4,4\]"):
        PointMaps(torch.zeros(1, 2, 4, 4, 3), depth=torch.zeros(1, 2, 4, 5))


def test_decoded3d_maps_over_every_tensor():
    decoded = Decoded3D(cameras=_cameras(), points=PointMaps(torch.zeros(1, 2, 4, 4, 3)), heads={"conf": torch.ones(2)})
    names = [name for name, _ in decoded.tensors()]
    assert names == ["cameras.extrinsics", "cameras.intrinsics", "points.points", "heads.conf"]
    doubled = decoded.to(dtype=torch.float64)
    assert all(t.dtype == torch.float64 for _, t in doubled.tensors())
    assert doubled.cameras.image_size == (32, 64)


def test_meta_device_builds_without_weights(plugins):
    decoder = vist3a.load_decoder("fake-decoder", device="meta")
    assert all(p.is_meta for p in decoder.parameters()) and len(decoder.stitch_points((16, 16))) == 3


def test_component_config_defaults():
    assert ComponentConfig().model_dump() == {"checkpoint": None, "device": "cpu", "dtype": "float32"}
