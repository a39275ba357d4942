"""The Gaussian renderer: analytic cases, gradients, resolution and batching invariances, modes, errors, gsplat parity."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vist3a.errors import InputError, ShapeError
from vist3a.render import eval_sh, gsplat_backend, rasterize, render, sh_basis, torch_backend
from vist3a.scene import Cameras, Gaussians

C0 = 0.28209479177387814
C1 = 0.4886025119029199


def intrinsics(f: float, cx: float, cy: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor([[f, 0, cx], [0, f, cy], [0, 0, 1]], dtype=dtype)


def look_at(eye: list[float], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """World-to-camera (OpenCV) for a camera at ``eye`` looking at the origin, y down."""
    eye_t = torch.tensor(eye, dtype=dtype)
    forward = F.normalize(-eye_t, dim=0)
    right = F.normalize(torch.linalg.cross(forward, torch.tensor([0.0, -1.0, 0.0], dtype=dtype)), dim=0)
    down = torch.linalg.cross(forward, right)
    rot = torch.stack([right, down, forward])
    view = torch.eye(4, dtype=dtype)
    view[:3, :3], view[:3, 3] = rot, -rot @ eye_t
    return view


def random_scene(n: int, cameras: int = 2, seed: int = 0, dtype: torch.dtype = torch.float32, degree: int = 0):
    """``n`` Gaussians near the origin and ``cameras`` views from about 3 units away, 32x24 pixels."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * 0.4
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.15 + 0.05
    opacities = torch.rand(n, generator=g, dtype=dtype) * 0.8 + 0.1
    sh = torch.randn(n, (degree + 1) ** 2, 3, generator=g, dtype=dtype) * 0.5
    eyes = [[3 * math.sin(a), -0.5, -3 * math.cos(a)] for a in torch.linspace(0, 1.5, cameras).tolist()]
    views = torch.stack([look_at(e, dtype) for e in eyes])
    ks = intrinsics(30.0, 16.0, 12.0, dtype).expand(cameras, 3, 3)
    return means, quats, scales, opacities, sh, views, ks


def single(z: float = 4.0, scale: float = 0.1, opacity: float = 0.7, dc: list[float] = (0.3, -0.2, 0.5)):
    """One isotropic Gaussian on the optical axis of an identity camera (f=50, 33x25 pixels)."""
    means = torch.tensor([[0.0, 0.0, z]])
    return (means, torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), scale), torch.tensor([opacity]),
            torch.tensor([[dc]]), torch.eye(4)[None], intrinsics(50.0, 16.5, 12.5)[None])  # fmt: skip


def test_single_gaussian_matches_the_analytic_footprint_and_colour():
    z, scale, opacity, dc = 4.0, 0.1, 0.7, [0.3, -0.2, 0.5]
    colors, alphas, meta = rasterize(*single(z, scale, opacity, dc), 33, 25, sh_degree=0, backend="torch")
    assert colors.shape == (1, 25, 33, 3) and alphas.shape == (1, 25, 33, 1)
    sigma2 = (50.0 * scale / z) ** 2 + 0.3  # pixels^2, eps2d included
    ys, xs = torch.meshgrid(torch.arange(25) + 0.5, torch.arange(33) + 0.5, indexing="ij")
    expected = opacity * torch.exp(-((xs - 16.5) ** 2 + (ys - 12.5) ** 2) / (2 * sigma2))
    expected = torch.where(expected >= 1 / 255, expected, 0)
    torch.testing.assert_close(alphas[0, ..., 0], expected, atol=1e-6, rtol=1e-5)
    assert alphas[0, 12, 16, 0].item() == pytest.approx(opacity)  # the mean projects onto pixel (12, 16)
    rgb = torch.tensor(dc) * C0 + 0.5
    torch.testing.assert_close(colors[0], alphas[0] * rgb, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(meta["means2d"][0, 0], torch.tensor([16.5, 12.5]))
    assert meta["radii"][0, 0].tolist() == [math.ceil(3.33 * math.sqrt(sigma2))] * 2


def test_two_gaussians_composite_front_to_back_whatever_the_input_order():
    means = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 4.0]])
    colors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    args = dict(quats=torch.tensor([[1.0, 0, 0, 0]] * 2), scales=torch.full((2, 3), 0.2),
                opacities=torch.tensor([0.6, 0.9]), viewmats=torch.eye(4)[None], Ks=intrinsics(40.0, 8.5, 8.5)[None],
                width=17, height=17, backend="torch")  # fmt: skip
    out, alpha, _ = rasterize(means=means, colors=colors, **args)
    flipped = {**args, "opacities": args["opacities"].flip(0)}
    out2, _, _ = rasterize(means=means.flip(0), colors=colors.flip(0), **flipped)
    centre = out[0, 8, 8]
    torch.testing.assert_close(centre, torch.tensor([0.6, 0.0, 0.4 * 0.9]))
    assert alpha[0, 8, 8, 0].item() == pytest.approx(1 - 0.4 * 0.1)
    torch.testing.assert_close(out, out2)


def test_transmittance_stops_and_alpha_clamps_like_gsplat():
    means = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 3.0], [0.0, 0.0, 4.0]])
    out, alpha, _ = rasterize(means, torch.tensor([[1.0, 0, 0, 0]] * 3), torch.full((3, 3), 0.5), torch.ones(3),
                              torch.eye(3), torch.eye(4)[None], intrinsics(20.0, 2.5, 2.5)[None], 5, 5,
                              backend="torch")  # fmt: skip
    # alpha 0.999 each: after two, T would be 1e-6 <= 1e-4, so the second and third are dropped.
    torch.testing.assert_close(out[0, 2, 2], torch.tensor([0.999, 0.0, 0.0]))
    assert alpha[0, 2, 2, 0].item() == pytest.approx(0.999)


def test_gradients_match_finite_differences():
    means, quats, scales, opacities, sh, views, ks = random_scene(4, cameras=2, seed=3, dtype=torch.float64)
    colors = torch.sigmoid(sh[:, 0])
    ks = ks * torch.tensor([[0.4], [0.4], [1.0]], dtype=torch.float64)  # 13x10 pixels keeps this fast
    inputs = tuple(t.clone().requires_grad_() for t in (means, scales, opacities, colors))

    def fn(m, s, o, c):
        out, alpha, _ = rasterize(m, quats, s, o, c, views, ks, 13, 10, render_mode="RGB+D", backend="torch")
        return out, alpha

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


def test_doubling_the_resolution_gives_the_same_image_downsampled():
    means, quats, scales, opacities, sh, views, ks = random_scene(40, cameras=1, seed=1)
    common = dict(sh_degree=0, backend="torch")
    small, small_a, _ = rasterize(means, quats, scales, opacities, sh, views, ks, 32, 24, **common)
    big, big_a, _ = rasterize(means, quats, scales, opacities, sh, views, ks * torch.tensor([[2.0], [2.0], [1.0]]),
                              64, 48, eps2d=1.2, **common)  # fmt: skip
    pooled = F.avg_pool2d(big.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    pooled_a = F.avg_pool2d(big_a.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    assert (pooled - small).abs().mean() < 5e-3 and (pooled - small).abs().max() < 0.05
    assert (pooled_a - small_a).abs().mean() < 5e-3


def test_batched_cameras_equal_one_by_one():
    scenes = [random_scene(30, cameras=3, seed=s, degree=1) for s in (0, 1)]
    stacked = [torch.stack(ts) for ts in zip(*scenes)]
    out, alpha, meta = rasterize(*stacked, 32, 24, sh_degree=1, render_mode="RGB+ED", backend="torch")
    assert out.shape == (2, 3, 24, 32, 4) and meta["radii"].shape == (2, 3, 30, 2)
    for b, scene in enumerate(scenes):
        for c in range(3):
            *gauss, views, ks = scene
            one, one_a, _ = rasterize(*gauss, views[c : c + 1], ks[c : c + 1], 32, 24, sh_degree=1,
                                      render_mode="RGB+ED", backend="torch")  # fmt: skip
            torch.testing.assert_close(out[b, c], one[0])
            torch.testing.assert_close(alpha[b, c], one_a[0])


@pytest.mark.parametrize("n", [1, 40, 400])
def test_per_pixel_and_tiled_compositing_agree_in_images_and_gradients(n: int, monkeypatch: pytest.MonkeyPatch):
    """`composite_pixels` (small renders, with or without autograd) against the checkpointed tiles."""
    scene = [torch.stack(ts) for ts in zip(random_scene(n, cameras=2, seed=n, degree=1), random_scene(n, seed=n + 1, degree=1))]
    weights = torch.rand(2, 2, 24, 32, 4, generator=torch.Generator().manual_seed(n))

    def run(max_pairs: int) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        monkeypatch.setattr(torch_backend, "PIXEL_PAIRS_MAX", max_pairs)
        inputs = [t.clone().requires_grad_(True) for t in scene[:5]]
        out, alpha, _ = rasterize(*inputs, *scene[5:], 32, 24, sh_degree=1, render_mode="RGB+ED", backend="torch")
        ((out * weights).sum() + alpha.sum()).backward()
        return out.detach(), alpha.detach(), [t.grad for t in inputs]

    pixels, tiles = run(1 << 30), run(-1)
    with torch.no_grad():
        no_grad, no_grad_alpha, _ = rasterize(*scene, 32, 24, sh_degree=1, render_mode="RGB+ED", backend="torch")
    assert pixels[1].max() > 0.5  # the views see the scene
    for got, want in zip([*pixels[:2], no_grad, no_grad_alpha, *pixels[2]], [*tiles[:2], *tiles[:2], *tiles[2]]):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_depth_modes_and_backgrounds():
    means, quats, scales, opacities, sh, views, ks = random_scene(30, seed=2)
    gauss = (means, quats, scales, opacities, sh, views, ks, 32, 24)
    bg = torch.tensor([[0.2, 0.4, 0.6], [1.0, 0.0, 0.5]])
    rgb, alpha, meta = rasterize(*gauss, sh_degree=0, backend="torch")
    rgb_bg, alpha_bg, _ = rasterize(*gauss, sh_degree=0, backgrounds=bg, backend="torch")
    d, _, _ = rasterize(*gauss, sh_degree=0, render_mode="D", backend="torch")
    ed, _, _ = rasterize(*gauss, sh_degree=0, render_mode="ED", backend="torch")
    rgbd, _, _ = rasterize(*gauss, sh_degree=0, render_mode="RGB+D", backgrounds=bg, backend="torch")
    torch.testing.assert_close(rgb_bg, rgb + (1 - alpha) * bg[:, None, None])
    torch.testing.assert_close(alpha_bg, alpha)
    torch.testing.assert_close(rgbd, torch.cat([rgb_bg, d], dim=-1))
    torch.testing.assert_close(ed * alpha, d, atol=1e-5, rtol=1e-5)
    covered = alpha[..., 0] > 0.5
    z = meta["depths"]
    assert (ed[..., 0][covered] >= z.min() - 1e-4).all() and (ed[..., 0][covered] <= z.max() + 1e-4).all()
    assert d.shape == ed.shape == (2, 24, 32, 1)


def test_gaussians_outside_near_far_are_culled():
    args = single(z=4.0)
    empty, alpha, meta = rasterize(*args, 33, 25, sh_degree=0, near_plane=5.0, backend="torch")
    assert alpha.abs().max() == 0 and meta["radii"].abs().max() == 0
    _, alpha, _ = rasterize(*args, 33, 25, sh_degree=0, far_plane=3.0, backend="torch")
    assert alpha.abs().max() == 0
    behind = (torch.tensor([[0.0, 0.0, -4.0]]),) + args[1:]
    _, alpha, _ = rasterize(*behind, 33, 25, sh_degree=0, backend="torch")
    assert alpha.abs().max() == 0


@pytest.mark.parametrize("degree", range(5))
def test_sh_degrees_shapes_and_view_dependence(degree: int):
    means, quats, scales, opacities, sh, views, ks = random_scene(20, seed=4, degree=4)
    out, alpha, _ = rasterize(means, quats, scales, opacities, sh, views, ks, 32, 24, sh_degree=degree,
                              backend="torch")  # fmt: skip
    assert out.shape == (2, 24, 32, 3) and alpha.shape == (2, 24, 32, 1)
    assert torch.isfinite(out).all() and (out >= 0).all()


def test_sh_basis_constants_and_orthonormality():
    dirs = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    basis = sh_basis(1, dirs)
    expected = torch.tensor([[C0, 0, C1, 0], [C0, 0, 0, -C1], [C0, -C1, 0, 0]], dtype=torch.float64)
    torch.testing.assert_close(basis, expected)
    # Fibonacci sphere quadrature: the 25 basis functions are orthonormal over the sphere.
    k = torch.arange(20000, dtype=torch.float64) + 0.5
    z = 1 - 2 * k / 20000
    phi = math.pi * (1 + 5**0.5) * k
    r = (1 - z * z).sqrt()
    y = sh_basis(4, torch.stack([r * phi.cos(), r * phi.sin(), z], dim=-1))
    gram = y.T @ y * (4 * math.pi / 20000)
    torch.testing.assert_close(gram, torch.eye(25, dtype=torch.float64), atol=1e-3, rtol=0)
    coeffs = torch.zeros(25, 3, dtype=torch.float64)
    coeffs[0] = 1.0
    torch.testing.assert_close(eval_sh(4, dirs * 3, coeffs), torch.full((3, 3), C0, dtype=torch.float64))


def test_render_gaussians_into_cameras():
    means, quats, scales, opacities, sh, views, ks = random_scene(30, seed=5, degree=2)
    gaussians = Gaussians(means[None], scales[None], quats[None], opacities[None], sh[None])
    cameras = Cameras(views[None], ks[None], (24, 32))
    out = render(gaussians, cameras, background=torch.tensor([1.0, 1.0, 1.0]), backend="torch")
    assert out.rgb.shape == (1, 2, 24, 32, 3) and out.depth.shape == out.alpha.shape == (1, 2, 24, 32, 1)
    frames = out.frames()
    assert frames.shape == (1, 3, 2, 24, 32) and frames.min() >= -1 and frames.max() <= 1
    big = render(gaussians, cameras, image_size=(48, 64), mode="D", backend="torch")
    assert big.rgb is None and big.depth.shape == (1, 2, 48, 64, 1)
    with pytest.raises(InputError, match="needs RGB"):
        big.frames()


@pytest.mark.parametrize(
    ("index", "shape", "pattern"),
    [
        (0, (5, 2), r"means: expected \[\.\.\., N, 3\], got \[5, 2\]"),
        (1, (5, 3), r"quats: expected \[5, 4\], got \[5, 3\]"),
        (3, (5, 1), r"opacities: expected \[5\], got \[5, 1\]"),
        (4, (5, 2, 3), r"colors: expected SH .*got \[5, 2, 3\]"),
        (6, (2, 3, 4), r"Ks: expected \[2, 3, 3\], got \[2, 3, 4\]"),
    ],
)
def test_bad_shapes_raise_one_line_shape_errors(index: int, shape: tuple[int, ...], pattern: str):
    args = list(random_scene(5, degree=1))
    args[index] = torch.zeros(shape)
    with pytest.raises(ShapeError, match=pattern) as err:
        rasterize(*args, 32, 24, sh_degree=1, backend="torch")
    assert "\n" not in str(err.value)


def test_bad_options_raise_input_errors():
    args = random_scene(5)
    with pytest.raises(InputError, match="render_mode"):
        rasterize(*args, 32, 24, sh_degree=0, render_mode="RGBD")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="sh_degree must be in 0..4"):
        rasterize(*args, 32, 24, sh_degree=5)
    with pytest.raises(ShapeError, match="backgrounds"):
        rasterize(*args, 32, 24, sh_degree=0, backgrounds=torch.zeros(2, 4))


def test_missing_gsplat_is_a_one_line_install_hint(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(gsplat_backend, "_module", lambda: None)
    with pytest.raises(InputError, match=r'pip install "vist3a\[gsplat\]"') as err:
        rasterize(*random_scene(5), 32, 24, sh_degree=0, backend="gsplat")
    assert "\n" not in str(err.value)
    out, _, meta = rasterize(*random_scene(5), 32, 24, sh_degree=0)  # "auto" falls back to torch
    assert meta["backend"] == "torch" and out.shape == (2, 24, 32, 3)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10(F.mse_loss(a, b).clamp(min=1e-20)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the gsplat comparison needs a CUDA device")
@pytest.mark.skipif(not gsplat_backend.available(), reason='gsplat is not installed (pip install "vist3a[gsplat]")')
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gsplat_matches_the_torch_reference(seed: int):
    scene = [t.cuda() for t in random_scene(300, cameras=3, seed=seed, degree=3)]
    options = dict(sh_degree=3, render_mode="RGB+ED", backgrounds=torch.rand(3, 3, device="cuda"))
    ours, ours_a, _ = rasterize(*scene, 32, 24, backend="torch", **options)
    theirs, theirs_a, meta = rasterize(*scene, 32, 24, backend="gsplat", **options)
    assert meta["backend"] == "gsplat"
    assert psnr(ours[..., :3], theirs[..., :3]) >= 40
    assert psnr(ours_a, theirs_a) >= 40
    covered = ours_a[..., 0] > 0.5
    torch.testing.assert_close(ours[..., 3][covered], theirs[..., 3][covered], atol=1e-2, rtol=1e-3)
