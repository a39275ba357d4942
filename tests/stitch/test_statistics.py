"""The streaming sweep statistics: exact fits, planted layers, held-out scores, resumable state."""

import pytest
import torch

from vist3a.stitch.statistics import SweepStatistics, choose


def _data(n=600, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, 5, generator=g, dtype=torch.float64)
    layers = {
        "exact": x @ w + 0.5,  # planted: an exact linear function of the inputs
        "noisy": x @ w + torch.randn(n, 5, generator=g, dtype=torch.float64),
        "nonlinear": torch.tanh(3 * x[:, :3]) ** 2,
    }
    return x, w, layers


def _streamed(x, layers, heldout_from=None, chunk=50):
    stats = SweepStatistics(x.shape[1], {k: v.shape[1] for k, v in layers.items()})
    for start in range(0, x.shape[0], chunk):
        split = "heldout" if heldout_from is not None and start >= heldout_from else "fit"
        stats.update(split, x[start : start + chunk], {k: v[start : start + chunk] for k, v in layers.items()})
    return stats


def test_streaming_fit_equals_a_direct_least_squares_fit():
    x, _, layers = _data()
    stats = _streamed(x, layers)
    xa = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    for name, y in layers.items():
        direct = torch.linalg.lstsq(xa, y).solution
        fit = stats.solve(name, ridge=0.0)
        solution = torch.cat([fit.weight, fit.bias[None]])
        assert (solution - direct).norm() / direct.norm() <= 1e-6, name
        residual = y - xa @ direct
        assert fit.fit_mse == pytest.approx(float(residual.pow(2).mean()), rel=1e-6)
        assert fit.fit_relative_mse == pytest.approx(float(residual.pow(2).sum() / (y - y.mean(0)).pow(2).sum()), rel=1e-6)


def test_planted_layer_is_chosen_and_its_weights_recovered():
    x, w, layers = _data()
    stats = _streamed(x, layers, heldout_from=400)
    fits = {name: stats.solve(name) for name in layers}
    assert choose(fits) == "exact" and choose(fits, "mse") == "exact"
    assert torch.allclose(fits["exact"].weight, w, atol=1e-6) and torch.allclose(fits["exact"].bias, torch.full((5,), 0.5, dtype=torch.float64), atol=1e-6)
    assert fits["exact"].relative_mse < 1e-10 and fits["exact"].cka > fits["nonlinear"].cka


def test_heldout_scores_differ_from_in_sample_as_they_should():
    x, _, layers = _data(n=300, d=40)  # few rows per parameter: the fit overfits the noise
    stats = _streamed(x, layers, heldout_from=150)
    noisy = stats.solve("noisy", ridge=0.0)
    assert noisy.mse > noisy.fit_mse * 1.5
    xa = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    heldout = layers["noisy"][150:] - xa[150:] @ torch.cat([noisy.weight, noisy.bias[None]])
    assert noisy.mse == pytest.approx(float(heldout.pow(2).mean()), rel=1e-6)


def test_state_round_trip_resumes_identically():
    x, _, layers = _data()
    whole = _streamed(x, layers, heldout_from=400)
    first = _streamed(x[:300], {k: v[:300] for k, v in layers.items()})
    resumed = SweepStatistics(x.shape[1], {k: v.shape[1] for k, v in layers.items()})
    resumed.load_state_dict(first.state_dict())
    for start in range(300, 600, 50):
        split = "heldout" if start >= 400 else "fit"
        resumed.update(split, x[start : start + 50], {k: v[start : start + 50] for k, v in layers.items()})
    for key, value in whole.state_dict().items():
        assert torch.allclose(resumed.state_dict()[key], value, rtol=1e-12), key
    with pytest.raises(ValueError, match="do not match"):
        SweepStatistics(3, {"exact": 5}).load_state_dict(whole.state_dict())


def test_choose_criteria():
    x, _, layers = _data()
    fits = {name: _streamed(x, layers, heldout_from=400).solve(name) for name in layers}
    assert choose(fits, "cka") == max(fits, key=lambda k: fits[k].cka)
    with pytest.raises(ValueError, match="unknown criterion"):
        choose(fits, "accuracy")
