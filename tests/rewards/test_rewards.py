"""The vist3a_rewards plugin through its entry point, at tiny random configs, offline."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

import vist3a
from vist3a.errors import InputError, ShapeError
from vist3a.registry import Registry
from vist3a.scene import Cameras, Decoded3D, Gaussians

PROMPTS = ["a red cat", "the blue car in a room"]
MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


@pytest.fixture(autouse=True)
def rewards_plugin(entry_point_plugins):
    return entry_point_plugins("vist3a_rewards")


def clips(b: int = 2, v: int = 5, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return (torch.rand(b, 3, v, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1).requires_grad_()


def cosine_by_hand(model, tokenizer, frames: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """CLIP cosine from get_image_features/get_text_features; frames are already 32x32 (no resize, no crop)."""
    b, _, v = frames.shape[:3]
    pixels = ((frames.permute(0, 2, 1, 3, 4).reshape(b * v, 3, 32, 32) + 1) / 2 - MEAN) / STD
    image = F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1).view(b, v, -1)
    tokens = tokenizer(prompts, padding=True, return_tensors="pt")
    text = F.normalize(model.get_text_features(**tokens).pooler_output, dim=-1)
    return torch.einsum("bvd,bd->bv", image, text).mean(1)


def scene(b: int = 2, v: int = 3, n: int = 40) -> Decoded3D:
    """Random Gaussians in front of ``v`` cameras on a line along x, all looking down +z (24x32 pixels)."""
    g = torch.Generator().manual_seed(1)
    gaussians = Gaussians(
        means=torch.randn(b, n, 3, generator=g) * 0.5 + torch.tensor([0.0, 0.0, 4.0]),
        scales=torch.rand(b, n, 3, generator=g) * 0.2 + 0.05,
        quats=torch.randn(b, n, 4, generator=g),
        opacities=torch.rand(b, n, generator=g) * 0.8 + 0.1,
        sh=torch.randn(b, n, 1, 3, generator=g),
    )
    extrinsics = torch.eye(4).repeat(b, v, 1, 1)
    extrinsics[..., 0, 3] = torch.linspace(-0.3, 0.3, v)
    intrinsics = torch.tensor([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]]).repeat(b, v, 1, 1)
    return Decoded3D(cameras=Cameras(extrinsics, intrinsics, (24, 32)), gaussians=gaussians)


def test_clip_equals_the_cosine_computed_by_hand():
    reward = vist3a.load_reward("clip", tiny=True)
    frames = clips()
    score = reward(prompts=PROMPTS, frames=frames)
    assert score.shape == (2,)
    torch.testing.assert_close(score, cosine_by_hand(reward.model, reward.tokenizer, frames, PROMPTS))
    score.sum().backward()
    assert frames.grad is not None and frames.grad.abs().sum() > 0


def test_views_are_evenly_spaced_and_deterministic():
    frames = clips()
    two = vist3a.load_reward("clip", tiny=True, views=2)
    full = vist3a.load_reward("clip", tiny=True)
    expected = full(prompts=PROMPTS, frames=frames[:, :, [0, 4]])
    torch.testing.assert_close(two(prompts=PROMPTS, frames=frames), expected)
    torch.testing.assert_close(two(prompts=PROMPTS, frames=frames), expected)


def test_images_are_resized_and_centre_cropped_in_torch():
    reward = vist3a.load_reward("clip", tiny=True)
    square = clips(v=2)
    wide = F.interpolate(square.detach().flatten(1, 2), size=(32, 32)).view(2, 3, 2, 32, 32)
    wide = torch.cat([-torch.ones(2, 3, 2, 32, 8), wide, -torch.ones(2, 3, 2, 32, 8)], dim=-1).requires_grad_()
    torch.testing.assert_close(reward(prompts=PROMPTS, frames=wide), reward(prompts=PROMPTS, frames=square))
    big = clips(v=2, h=64, w=96)
    reward(prompts=PROMPTS, frames=big).sum().backward()
    assert big.grad.abs().sum() > 0


def test_pickscore_is_the_logit_scale_times_the_cosine():
    clip = vist3a.load_reward("clip", tiny=True)
    pick = vist3a.load_reward("pickscore", tiny=True)
    frames = clips()
    torch.testing.assert_close(
        pick(prompts=PROMPTS, frames=frames), pick.model.logit_scale.exp() * clip(prompts=PROMPTS, frames=frames)
    )


def test_quality_is_the_weighted_sum_of_its_members_on_the_chosen_views():
    members = [{"reward": "clip", "config": {"tiny": True}}, {"reward": "pickscore", "weight": 0.01, "config": {"tiny": True}}]
    quality = vist3a.load_reward("quality", members=members)
    clip = vist3a.load_reward("clip", tiny=True)
    pick = vist3a.load_reward("pickscore", tiny=True)
    frames = clips()
    chosen = frames[:, :, [0, 4]]
    expected = clip(prompts=PROMPTS, frames=chosen) + 0.01 * pick(prompts=PROMPTS, frames=chosen) - 2
    score = quality(prompts=PROMPTS, frames=frames)
    torch.testing.assert_close(score, expected)
    score.sum().backward()
    assert frames.grad.abs().sum() > 0


def test_quality_on_renders_given_or_rendered_from_the_decoded_scene():
    members = [{"reward": "clip", "config": {"tiny": True}}]
    quality = vist3a.load_reward("quality", members=members, source="renders", views=None)
    renders = clips(v=3, seed=3)
    clip = vist3a.load_reward("clip", tiny=True)
    torch.testing.assert_close(quality(prompts=PROMPTS, renders=renders), clip(prompts=PROMPTS, frames=renders) - 2)
    decoded = scene()
    decoded.gaussians.sh.requires_grad_()
    quality(prompts=PROMPTS, decoded=decoded).sum().backward()
    assert decoded.gaussians.sh.grad.abs().sum() > 0


def test_consistency_is_zero_for_identical_inputs_and_falls_with_noise():
    reward = vist3a.load_reward("consistency", lpips_weight=0)
    frames = clips(v=4)
    torch.testing.assert_close(reward(prompts=PROMPTS, frames=frames, renders=frames), torch.zeros(2))
    noise = torch.randn(frames.shape, generator=torch.Generator().manual_seed(2))
    scores = [reward(prompts=PROMPTS, frames=frames, renders=frames + s * noise) for s in (0.05, 0.2, 0.5)]
    assert all((a > b).all() for a, b in zip(scores, scores[1:]))
    chosen = frames[:, :, [0, 3]]
    expected = -(chosen - (chosen + 0.2 * noise[:, :, [0, 3]])).abs().mean(dim=(1, 3, 4)).mean(1) / 2
    torch.testing.assert_close(scores[1], expected)


def test_a_planted_scene_is_consistent_with_its_own_renders():
    from vist3a.render import render

    decoded = scene()
    frames = render(decoded.gaussians, decoded.cameras, mode="RGB").frames().detach().requires_grad_()
    reward = vist3a.load_reward("consistency", lpips_weight=0, views=None)
    score = reward(prompts=PROMPTS, frames=frames, decoded=decoded)
    assert score.shape == (2,) and score.abs().max() < 1e-6
    decoded.gaussians.means.requires_grad_()
    shifted = reward(prompts=PROMPTS, frames=frames.roll(4, dims=-1), decoded=decoded)
    assert (shifted < -1e-3).all()
    shifted.sum().backward()
    assert frames.grad.abs().sum() > 0 and decoded.gaussians.means.grad.abs().sum() > 0
    big = F.interpolate(frames.detach().flatten(1, 2), size=(48, 64), mode="bilinear").view(2, 3, 3, 48, 64)
    assert reward(prompts=PROMPTS, frames=big, decoded=decoded).abs().max() < 0.05


def test_meta_device_builds_without_weights():
    reward = vist3a.load_reward("clip", tiny=True, device="meta")
    assert next(reward.model.parameters()).device.type == "meta"


def test_registry_entries_are_provided_by_the_plugin(rewards_plugin):
    registry = Registry.load()
    for ident, entry in registry.entries["rewards"].items():
        if entry.plugin == "vist3a_rewards":  # others (synth-clip) belong to their own plugins
            assert registry.status("rewards", ident, rewards_plugin).installed, ident


@pytest.mark.parametrize(
    ("ident", "options", "inputs", "error", "pattern"),
    [
        ("clip", {"tiny": True}, {}, InputError, r"^clip: needs frames \[B,3,V,H,W\]$"),
        ("clip", {"tiny": True}, {"frames": torch.zeros(2, 3, 8, 8)}, ShapeError, r"expected \[2,3,V,H,W\].*\[2, 3, 8, 8\]"),
        ("clip", {"tiny": True}, {"frames": torch.zeros(3, 3, 2, 8, 8)}, ShapeError, r"for 2 prompts"),
        ("clip", {"tiny": True, "source": "renders"}, {"frames": torch.zeros(2, 3, 2, 8, 8)}, InputError, r"needs renders"),
        ("consistency", {"lpips_weight": 0}, {"frames": torch.zeros(2, 3, 2, 8, 8)}, InputError, r"needs renders, or decoded"),
        ("consistency", {"lpips_weight": 0}, {"frames": torch.zeros(2, 3, 2, 8, 8), "renders": torch.zeros(2, 3, 3, 8, 8)},
         ShapeError, r"frames have 2 views, renders 3"),
        ("consistency", {"lpips_weight": 0}, {"frames": torch.zeros(2, 3, 2, 8, 8), "decoded": scene()}, ShapeError,
         r"cameras \[B,V\] = \[2, 3\]"),
    ],
)  # fmt: skip
def test_bad_inputs_are_one_line_errors(ident, options, inputs, error, pattern):
    reward = vist3a.load_reward(ident, **options)
    with pytest.raises(error, match=pattern) as info:
        reward(prompts=PROMPTS, **inputs)
    assert "\n" not in str(info.value)


def test_bad_configs_are_one_line_errors():
    with pytest.raises(InputError, match=r"^clip: set checkpoint .* or tiny=True$"):
        vist3a.load_reward("clip")
    with pytest.raises(InputError, match=r"views"):
        vist3a.load_reward("clip", tiny=True, views=0)


@pytest.mark.skipif(importlib.util.find_spec("lpips") is not None, reason="lpips is installed")
def test_lpips_weight_without_lpips_names_the_pip_line():
    with pytest.raises(InputError, match=r"^consistency: lpips_weight=0.25 needs LPIPS; install it with: pip install lpips"):
        vist3a.load_reward("consistency")


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is not None, reason="open_clip is installed")
@pytest.mark.parametrize("ident", ["hpsv2", "open-clip", "hpsv2.1", "dfn-clip"])
def test_open_clip_rewards_without_open_clip_name_the_pip_line(ident):
    with pytest.raises(InputError, match=r"needs open_clip; install it with: pip install open-clip-torch$"):
        vist3a.load_reward(ident, tiny=True)


def test_hpsv2_equals_the_open_clip_cosine_computed_by_hand():
    pytest.importorskip("open_clip", reason="open_clip is optional (pip install open-clip-torch)")
    reward = vist3a.load_reward("hpsv2", tiny=True)
    frames = clips()
    b, v = 2, 5
    pixels = ((frames.permute(0, 2, 1, 3, 4).reshape(b * v, 3, 32, 32) + 1) / 2 - MEAN) / STD
    image = F.normalize(reward.model.encode_image(pixels), dim=-1).view(b, v, -1)
    text = F.normalize(reward.model.encode_text(reward.tokenizer(PROMPTS)), dim=-1)
    score = reward(prompts=PROMPTS, frames=frames)
    torch.testing.assert_close(score, torch.einsum("bvd,bd->bv", image, text).mean(1))
    score.sum().backward()
    assert frames.grad.abs().sum() > 0
