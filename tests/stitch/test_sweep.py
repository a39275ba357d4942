"""The sweep runner: one pass over clips, planted layers recovered, interruption and resume."""

import pytest
import torch
from torch import nn

from tests.fakes import FakeDecoder, FakeGenerator
from vist3a.errors import InputError
from vist3a.io.clips import open_clips
from vist3a.protocols import StitchPoint
from vist3a.stitch.adapter import AdapterConfig, StitchAdapter
from vist3a.stitch.spec import derive_spec
from vist3a.stitch.statistics import choose
from vist3a.stitch.sweep import SweepSetup, is_heldout, run_sweep

SIZE = (16, 16)
SPEC = "conv3d_k3x3x3_o8_s1x1x1_p1x1x1"


class PlantedDecoder(nn.Module):
    """Its 'linear' point is exactly a stitch adapter applied to the generator's latents; 'squared' is not."""

    name, needs_rgb = "planted", False

    def __init__(self, generator: FakeGenerator) -> None:
        super().__init__()
        self.generator = generator
        self.truth = StitchAdapter(AdapterConfig(spec=SPEC, in_channels=4, temporal_factor=4)).double()

    def stitch_points(self, image_size):
        return [StitchPoint("linear", (4, 4), 8, 0, 1), StitchPoint("squared", (4, 4), 8, 0, 2)]

    def preprocess(self, frames):
        return frames

    def forward_features(self, x, points):
        tokens = self.truth(self.generator.encode(x).double())
        return {"linear": tokens, "squared": tokens**2}


class RichGenerator(FakeGenerator):
    """Latent channels that are not affine in RGB, so the design matrix has full column rank."""

    def encode(self, frames):
        latents = super().encode(frames)
        return torch.cat([latents[:, :2], torch.tanh(3 * latents[:, 2:])], dim=1)


@pytest.fixture
def generator():
    torch.manual_seed(0)
    return RichGenerator()


def _setup(decoder, heldout=0.25):
    points = decoder.stitch_points(SIZE)
    return SweepSetup(points, {p.name: SPEC for p in points}, SIZE, SIZE, heldout, data="synthetic:8")


def test_planted_layer_is_chosen_and_its_adapter_recovered(generator):
    decoder = PlantedDecoder(generator)
    clips = open_clips("synthetic:8", frames=9, size=SIZE)
    fits = run_sweep(generator, decoder, clips, _setup(decoder)).fits(ridge=0.0)
    assert choose(fits) == "linear" and fits["linear"].relative_mse < 1e-12
    weight = decoder.truth.conv.weight.reshape(8, -1).T
    assert torch.allclose(fits["linear"].weight, weight, atol=1e-6)
    assert torch.allclose(fits["linear"].bias, decoder.truth.conv.bias, atol=1e-6)
    assert fits["squared"].relative_mse > 1e-3


def test_sweep_over_a_real_decoder_shape(generator):
    decoder = FakeDecoder()
    points = decoder.stitch_points(SIZE)
    specs = {p.name: str(derive_spec(generator.latent, p, SIZE, temporal_kernel=3)) for p in points}
    sweep = run_sweep(generator, decoder, open_clips("synthetic:5", frames=5, size=SIZE), SweepSetup(points, specs, SIZE, SIZE))
    assert list(sweep.fits()) == ["block_1", "block_2", "block_3"] and sweep.clips_done == 5


def test_interrupted_sweep_resumes_to_identical_statistics(generator, tmp_path):
    decoder = PlantedDecoder(generator)
    clips = open_clips("synthetic:8", frames=9, size=SIZE)
    whole = run_sweep(generator, decoder, clips, _setup(decoder))

    def interrupt(done, total):
        if done == 5:
            raise KeyboardInterrupt

    state = tmp_path / "sweep_state.safetensors"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(generator, decoder, clips, _setup(decoder), state_path=state, checkpoint_every=2, on_clip=interrupt)
    seen = []
    resumed = run_sweep(generator, decoder, clips, _setup(decoder), state_path=state, checkpoint_every=2, on_clip=lambda done, total: seen.append((done, total)))
    assert seen == [(5, 8), (6, 8), (7, 8), (8, 8)]  # clips 0-3 came from the saved state
    for spec, stats in whole.stats.items():
        for key, value in stats.state_dict().items():
            assert torch.allclose(resumed.stats[spec].state_dict()[key], value, rtol=1e-12, atol=0), key


def test_state_from_other_settings_or_corrupted(generator, tmp_path):
    decoder = PlantedDecoder(generator)
    clips = open_clips("synthetic:4", frames=9, size=SIZE)
    state = tmp_path / "state.safetensors"
    run_sweep(generator, decoder, clips, _setup(decoder), state_path=state)
    with pytest.raises(InputError, match="saved by a sweep with other settings"):
        run_sweep(generator, decoder, clips, _setup(decoder, heldout=0.5), state_path=state)
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(InputError, match="corrupted sweep state"):
        run_sweep(generator, decoder, clips, _setup(decoder), state_path=state)


def test_heldout_clips_are_spread_evenly():
    assert [i for i in range(10) if is_heldout(i, 0.2)] == [0, 5]
    assert [i for i in range(3) if is_heldout(i, 0.1)] == [0]
    assert not any(is_heldout(i, 0.0) for i in range(10))
    with pytest.raises(InputError, match="held-out fraction"):
        SweepSetup([], {}, SIZE, SIZE, heldout=1.0)
