"""The stitched decoder and its self-distillation: error goes down, exact resume, save/load round trip."""

import copy

import pytest
import torch

from tests.fakes import FakeDecoder, FakeGenerator
from vist3a.errors import CheckpointError, InputError
from vist3a.io.clips import open_clips
from vist3a.stitch.adapter import AdapterConfig
from vist3a.stitch.finetune import FinetuneConfig, distillation_losses, finetune, learning_rate, make_teacher
from vist3a.stitch.stitched import LoraSettings, StitchedConfig, StitchedDecoder

SIZE = (16, 16)


def _models(seed=0):
    torch.manual_seed(seed)
    generator, decoder = FakeGenerator().requires_grad_(False), FakeDecoder()
    teacher = make_teacher(decoder)
    config = StitchedConfig(
        decoder="fake-decoder", stitch_point="block_1",
        adapter=AdapterConfig(spec="conv3d_k3x3x3_o8_s1x1x1_p1x1x1", in_channels=4, temporal_factor=4),
        lora=LoraSettings(rank=2, alpha=4), decoder_resolution=SIZE,
    )  # fmt: skip
    return generator, teacher, StitchedDecoder(config, decoder)


@pytest.fixture
def clips():
    return open_clips("synthetic:4", frames=5, size=SIZE)


def _error(stitched, teacher, generator, clips):
    with torch.no_grad():
        return sum(float(sum(distillation_losses(stitched, teacher, generator, clips[i][None], SIZE).values())) for i in range(len(clips)))


def test_trainable_parts(clips):
    _, _, stitched = _models()
    names = {n for n, p in stitched.named_parameters() if p.requires_grad}
    assert names == {
        "adapter.conv.weight", "adapter.conv.bias", "decoder.depth_offset",
        *(f"decoder.{m}.lora_{ab}.default.weight" for m in ("blocks.1", "blocks.2", "head") for ab in "AB"),
    }  # fmt: skip


def test_finetune_lowers_the_student_teacher_error(clips):
    generator, teacher, stitched = _models()
    before = _error(stitched, teacher, generator, clips)
    state = finetune(stitched, teacher, generator, clips, FinetuneConfig(steps=40, lr=1e-2, warmup_steps=5), generator_size=SIZE)
    after = _error(stitched, teacher, generator, clips)
    assert after < 0.5 * before
    assert len(state.history) == 40 and state.skipped == 0


def test_interrupted_finetune_resumes_exactly(clips, tmp_path):
    config = FinetuneConfig(steps=6, lr=1e-2, warmup_steps=2, checkpoint_every=3, batch_size=2)
    generator, teacher, straight = _models()
    finetune(straight, teacher, generator, clips, config, generator_size=SIZE)

    def stop(step, record):
        if step == 4:
            raise KeyboardInterrupt

    generator, teacher, resumed = _models()
    state = tmp_path / "finetune.safetensors"
    with pytest.raises(KeyboardInterrupt):
        finetune(resumed, teacher, generator, clips, config, generator_size=SIZE, state_path=state, on_step=stop)
    generator, teacher, resumed = _models()  # a fresh process: only the state file carries over
    steps = []
    finetune(resumed, teacher, generator, clips, config, generator_size=SIZE, state_path=state, on_step=lambda s, r: steps.append(s))
    assert steps == [4, 5, 6]
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
        assert torch.equal(a, b), name


def test_state_mismatch_and_corruption(clips, tmp_path):
    state = tmp_path / "finetune.safetensors"
    generator, teacher, stitched = _models()
    finetune(stitched, teacher, generator, clips, FinetuneConfig(steps=2, warmup_steps=1), generator_size=SIZE, state_path=state)
    with pytest.raises(InputError, match="saved with other optimisation settings"):
        finetune(stitched, teacher, generator, clips, FinetuneConfig(steps=4, lr=1.0), generator_size=SIZE, state_path=state)
    state.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupted finetune state"):
        finetune(stitched, teacher, generator, clips, FinetuneConfig(steps=2, warmup_steps=1), generator_size=SIZE, state_path=state)


def test_learning_rate_schedule():
    config = FinetuneConfig(steps=10, lr=1.0, warmup_steps=4)
    rates = [learning_rate(s, config) for s in range(10)]
    assert rates[:4] == [0.25, 0.5, 0.75, 1.0]
    assert rates[4] == 1.0 and all(a > b for a, b in zip(rates[4:], rates[5:])) and rates[-1] > 0


def test_save_and_load_round_trip(clips, tmp_path):
    generator, teacher, stitched = _models()
    finetune(stitched, teacher, generator, clips, FinetuneConfig(steps=3, lr=1e-2, warmup_steps=1), generator_size=SIZE)
    path = stitched.save_pretrained(tmp_path / "stitched")
    assert sorted(p.name for p in path.rglob("*") if p.is_file()) == [
        "adapter_config.json", "adapter_model.safetensors", "config.json", "model.safetensors",
    ]  # fmt: skip
    loaded = StitchedDecoder.from_pretrained(path, copy.deepcopy(teacher))  # the base weights, as load_decoder gives
    latents = generator.encode(clips[0][None])
    with torch.no_grad():
        assert torch.equal(loaded(latents).points.depth, stitched.eval()(latents).points.depth)


def test_load_through_the_registry_and_bad_folders(clips, tmp_path, plugins):
    generator, _, stitched = _models()
    path = stitched.save_pretrained(tmp_path / "stitched")
    assert isinstance(StitchedDecoder.from_pretrained(path).decoder, FakeDecoder)
    (path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        StitchedDecoder.from_pretrained(path)
    with pytest.raises(CheckpointError, match="no such file"):
        StitchedDecoder.from_pretrained(tmp_path / "nowhere")


def test_position_embedding_needs_decoder_support():
    _, _, stitched = _models()
    config = stitched.config.model_copy(update={"add_position_embedding": True})
    with pytest.raises(InputError, match="fake-decoder has no input position embedding"):
        StitchedDecoder(config, FakeDecoder())
