"""synth-wan: the VAE and DiT losses, the training commands (tiny, resumed), the shipped generator and its VAE PSNR."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from vist3a_synth.classifier import AttributeClassifier, ClassifierConfig
from vist3a_synth.generator import DIT_NAME, VAE_NAME, WEIGHTS
from vist3a_synth.train_dit import DitArchitecture, caption_loss
from vist3a_synth.train_vae import (
    OBJECT_WEIGHT,
    VaeArchitecture,
    object_weights,
    psnr,
    reconstruction_psnr,
    set_latent_stats,
    to_clips,
    vae_loss,
)
from vist3a_synth.training import STATE_FILE, read_architecture, rendered

import vist3a
from vist3a.cli import main
from vist3a.errors import InputError
from vist3a.io.checkpoint import read_state

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "synth"
REPORTED_PSNR_8 = 23.69  # docs/synth.md: the shipped VAE's test PSNR on the first 8 test clips (dB)


@pytest.fixture(scope="module")
def test_clips(tmp_path_factory):
    data, _ = rendered(tmp_path_factory.mktemp("data"), "test", 8)
    return data["frames"]


def test_psnr_and_the_vae_loss_on_a_hand_made_case():
    x = torch.zeros(2, 3, 5, 8, 8)
    assert torch.allclose(psnr(x + 0.2, x), torch.full((2,), 20.0))  # error 0.1 on [0,1] pixels
    latent = torch.cat([torch.zeros(2, 4, 2, 1, 1), torch.zeros(2, 4, 2, 1, 1)], dim=1)  # mean 0, log-variance 0
    fake = SimpleNamespace(encode=lambda clips: SimpleNamespace(latent_dist=DiagonalGaussianDistribution(latent)),
                           decode=lambda z: SimpleNamespace(sample=torch.full_like(x, 0.5)))  # fmt: skip
    losses = vae_loss(fake, x)
    assert torch.isclose(losses["mse"], torch.tensor(0.25)) and float(losses["kl"]) == 0.0
    assert torch.isclose(losses["loss"], torch.tensor(0.25))


def test_object_pixels_and_their_outline_weigh_more_in_the_vae_loss():
    ids = torch.zeros(1, 2, 6, 6, dtype=torch.uint8)
    ids[0, 0, 2, 3] = 1  # one object pixel in frame 0
    weights = object_weights(ids)
    heavy = weights[0, 0, 0] > 1
    assert weights.shape == (1, 1, 2, 6, 6) and heavy.sum() == 9 and heavy[1:4, 2:5].all()  # the pixel and its 8 neighbours
    assert (weights[0, 0, 1] == 1).all() and weights.max() == 1 + OBJECT_WEIGHT
    x = torch.zeros(1, 3, 2, 6, 6)
    recon = torch.zeros_like(x)
    recon[..., 0, 2, 3] = 0.5  # wrong on the object pixel only
    latent = torch.zeros(1, 8, 1, 1, 1)
    fake = SimpleNamespace(encode=lambda clips: SimpleNamespace(latent_dist=DiagonalGaussianDistribution(latent)),
                           decode=lambda z: SimpleNamespace(sample=recon))  # fmt: skip
    losses = vae_loss(fake, x, weights)
    plain = 0.25 / 72  # squared error 0.25 on 1 of 72 pixels
    assert torch.isclose(losses["mse"], torch.tensor(plain))
    mean_weight = (63 + 9 * (1 + OBJECT_WEIGHT)) / 72  # 9 heavy pixels of 72
    assert torch.isclose(losses["loss"], torch.tensor(plain * (1 + OBJECT_WEIGHT) / mean_weight))


@pytest.mark.parametrize("config, factors", [(None, (4, 8)), ("vae-s4.yaml", (4, 4)),
                                             ({"dim_mult": [1, 2], "temperal_downsample": [False]}, (1, 2))])  # fmt: skip
def test_the_vae_config_states_the_compression_its_layers_do(config, factors):
    """Pipelines size latents by the config's ``scale_factor_*``, which diffusers takes as given."""
    from diffusers import AutoencoderKLWan

    if isinstance(config, dict):
        architecture = VaeArchitecture(**config)
    else:
        architecture = read_architecture(config and EXAMPLES / config, VaeArchitecture)
    vae = AutoencoderKLWan(**architecture.diffusers_config()).eval()
    with torch.no_grad():
        latents = vae.encode(torch.zeros(1, 3, 9, 16, 16)).latent_dist.mode()
    temporal, spatial = factors
    assert (vae.config.scale_factor_temporal, vae.config.scale_factor_spatial) == factors
    assert latents.shape[2:] == (1 + 8 // temporal, 16 // spatial, 16 // spatial)


def test_the_default_architectures_are_the_shipped_models():
    for folder, config in ((VAE_NAME, VaeArchitecture().diffusers_config()), (DIT_NAME, DitArchitecture().diffusers_config(16))):
        shipped = json.loads((WEIGHTS / folder / "config.json").read_text())
        assert {key: shipped[key] for key in config} == json.loads(json.dumps(config))


@pytest.mark.parametrize("text, problem", [
    ("dim_mult: [1, 2]\n", "one flag per stage"),
    ("dim_mult: [1, 2, 2, 2, 2]\ntemperal_downsample: [true, true, true, true]\n", "temporal factor of 16"),
    ("dim_mult: [1, 2, 2, 2]\ntemperal_downsample: [true, true, true]\nz_dim: 0\n", "z_dim"),
    ("base_dim: 16\nbase_dims: 8\n", "base_dims: unknown field"),
    ("- 1\n", "valid dictionary"),
])  # fmt: skip
def test_bad_architecture_files_name_the_problem(tmp_path, text, problem):
    path = tmp_path / "vae.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=problem):
        read_architecture(path, VaeArchitecture)


def test_latent_stats_give_unit_variance_model_latents(test_clips):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan(**VaeArchitecture().diffusers_config()).eval()
    set_latent_stats(vae, test_clips[:4])
    with torch.no_grad():
        raw = vae.encode(to_clips(test_clips[:4])).latent_dist.mode()
    mean, std = torch.tensor(vae.config.latents_mean), torch.tensor(vae.config.latents_std)
    model = (raw - mean[:, None, None, None]) / std[:, None, None, None]
    assert model.transpose(0, 1).flatten(1).std(1).allclose(torch.ones(16), atol=1e-4)


def test_caption_dropout_and_batches():
    prompts, densities = [], set()

    def training_loss(latents, batch, generator, levels):
        prompts.extend(batch)
        densities.add(levels)
        return latents.mean()

    fake = SimpleNamespace(training_loss=training_loss, device=torch.device("cpu"))
    captions = [f"caption {i}" for i in range(10)]
    loss_fn = caption_loss(fake, torch.arange(10.0)[:, None], captions, 50, levels="logit_normal")
    assert float(loss_fn(0, torch.Generator().manual_seed(0))["loss"]) >= 0
    loss_fn(1, torch.Generator().manual_seed(1))
    assert set(prompts) <= {"", *captions} and 0.03 < prompts.count("") / len(prompts) < 0.2
    assert densities == {"logit_normal"}


def test_the_commands_train_resume_and_make_a_checkpoint(entry_point_plugins, tmp_path, offline):
    entry_point_plugins("vist3a_synth")
    common = ["--cache", str(tmp_path / "cache"), "--scenes", "2", "--test-scenes", "1", "--batch-size", "1"]
    vae = ["synth", "train", "vae", "--out", str(tmp_path / "vae"), "--crop", "16", *common]
    assert main([*vae, "--steps", "1"]) == 0
    assert main([*vae, "--steps", "2"]) == 0  # resumes at step 1
    assert len((tmp_path / "vae" / "history.jsonl").read_text().splitlines()) == 2
    assert "test_psnr_db" in json.loads((tmp_path / "vae" / "metrics.json").read_text())
    out = tmp_path / "dit"
    assert main(["synth", "train", "dit", "--vae", str(tmp_path / "vae"), "--out", str(out), "--steps", "2", "--ema", "0.5",
                 "--levels", "logit_normal", *common]) == 0  # fmt: skip
    assert (out / VAE_NAME / "config.json").is_file() and (out / DIT_NAME / "config.json").is_file()
    tensors, meta = read_state(out / STATE_FILE, "state")
    assert tensors["ema.step"] == 2 and json.loads(meta["options"])["loss"] == {"levels": "logit_normal"}
    assert (out / "samples.png").read_bytes().startswith(b"\x89PNG")
    generator = vist3a.load_generator("synth-wan", str(out))
    assert generator.sample(["a red cube"], steps=1).shape == (1, 16, 3, 8, 8)


def test_architecture_files_shape_the_trained_models(entry_point_plugins, tmp_path, offline, capsys):
    entry_point_plugins("vist3a_synth")
    common = ["--cache", str(tmp_path / "cache"), "--scenes", "2", "--test-scenes", "1", "--batch-size", "1", "--steps", "1"]
    vae = ["synth", "train", "vae", "--out", str(tmp_path / "vae"), "--crop", "16", *common]
    assert main([*vae, "--config", str(EXAMPLES / "vae-s4.yaml")]) == 0
    assert json.loads((tmp_path / "vae" / VAE_NAME / "config.json").read_text())["scale_factor_spatial"] == 4
    assert main(vae) == 2  # the same run folder under the shipped architecture
    odd_patches = tmp_path / "dit.yaml"
    odd_patches.write_text("patch_size: [1, 3, 3]\n")
    dit = ["synth", "train", "dit", "--vae", str(tmp_path / "vae"), *common]
    assert main([*dit, "--out", str(tmp_path / "odd"), "--config", str(odd_patches)]) == 2
    assert not (tmp_path / "odd").exists()  # refused before any encoding
    assert main([*dit, "--out", str(tmp_path / "dit"), "--config", str(EXAMPLES / "dit-s4.yaml")]) == 0
    generator = vist3a.load_generator("synth-wan", str(tmp_path / "dit"))
    assert list(generator.trainable().config.patch_size) == [1, 4, 4]
    assert generator.sample(["a red cube"], steps=1).shape == (1, 16, 3, 16, 16)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 2 and "saved with other settings" in errors[0]
    assert "patch_size [1, 3, 3] does not divide the VAE's latents [3, 16, 16]" in errors[1]


def test_bad_input_is_one_line_and_exit_2(entry_point_plugins, tmp_path, capsys):
    entry_point_plugins("vist3a_synth")
    assert main(["synth", "train", "vae", "--out", str(tmp_path), "--crop", "20"]) == 2
    assert main(["synth", "train", "dit", "--vae", str(tmp_path / "missing"), "--out", str(tmp_path / "dit")]) == 2
    assert main(["synth", "train", "dit", "--vae", str(tmp_path), "--out", str(tmp_path / "dit"), "--ema", "1"]) == 2
    assert main(["synth", "train", "dit", "--vae", str(tmp_path), "--out", str(tmp_path / "dit"), "--levels", "beta"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and "--crop" in lines[0] and "synth-wan-vae" in lines[1] and "--ema" in lines[2]
    assert "--levels" in lines[3]
    assert not (tmp_path / "dit").exists()


def test_the_shipped_generator_loads_offline_and_samples(entry_point_plugins, offline):
    entry_point_plugins("vist3a_synth")
    generator = vist3a.load_generator("synth-wan")
    latents = generator.sample(["a red sphere to the left of a blue cube"], steps=4, generator=torch.Generator().manual_seed(0))
    assert latents.shape == (1, 16, 3, 8, 8)
    with torch.no_grad():
        frames = generator.decode(latents)
    assert frames.shape == (1, 3, 9, 64, 64) and frames.abs().max() <= 1


def test_the_shipped_vae_reconstructs_test_clips_at_the_reported_psnr(entry_point_plugins, test_clips, offline):
    entry_point_plugins("vist3a_synth")
    generator = vist3a.load_generator("synth-wan")
    vae = generator.pipe.vae
    with torch.no_grad():
        clips = test_clips.permute(0, 2, 1, 3, 4).float() / 127.5 - 1  # written here, not train_vae.to_clips
        rebuilt = vae.decode(vae.encode(clips).latent_dist.mode()).sample.clamp(-1, 1)
        mse = ((rebuilt - clips) / 2).square().flatten(1).mean(1)  # on [0,1] pixels
        x = to_clips(test_clips[:2])
        through_generator = psnr(generator.decode(generator.encode(x)), x).mean()
    assert abs(float((10 * torch.log10(1 / mse)).mean()) - REPORTED_PSNR_8) < 0.5
    assert abs(float(through_generator) - float(reconstruction_psnr(generator.pipe.vae, test_clips[:2]).mean())) < 1e-3


def test_vae_crops_stay_in_the_frame_near_its_centre():
    from vist3a_synth.train_vae import central_crop

    g = torch.Generator().manual_seed(0)
    for crop, (low, high) in {32: (8, 24), 56: (0, 8), 64: (0, 0)}.items():
        corners = [central_crop(64, crop, g) for _ in range(200)]
        values = {v for corner in corners for v in corner}
        assert min(values) == low and max(values) == high, crop


def test_eval_generator_scores_samples_beside_the_ground_truth(entry_point_plugins, offline, capsys, tmp_path):
    entry_point_plugins("vist3a_synth")
    assert main(["synth", "eval-generator", "--prompts", "2", "--steps", "2"]) == 0
    line, colours, shapes, unrequested = capsys.readouterr().out.strip().splitlines()[-4:]
    assert line.startswith("attribute accuracy over 2 held-out captions: samples ")
    assert "VAE reconstructions" in line and "ground-truth renders" in line
    assert colours.startswith("  colours: samples ") and shapes.startswith("  shapes: samples ")
    assert unrequested.startswith("unrequested attributes detected: samples ")
    truth = float(line.rsplit("ground-truth renders ", 1)[1].rstrip("%"))
    assert 50 <= truth <= 100  # the classifier sees most of what the ground-truth clips hold
    assert float(unrequested.rsplit("ground-truth renders ", 1)[1].rstrip("%")) <= 20

    blind = AttributeClassifier(ClassifierConfig(width=4, colour_width=4))  # a judge that never sees anything
    for name, parameter in blind.named_parameters():
        parameter.data.fill_(-100.0 if name in {"colour.1.bias", "shape.1.bias"} else 0.0)
    blind.save_pretrained(tmp_path / "blind")
    assert main(["synth", "eval-generator", "--prompts", "2", "--steps", "2", "--classifier", str(tmp_path / "blind")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-4].endswith("samples 0.0%, VAE reconstructions 0.0%, "
                                                                    "ground-truth renders 0.0%")
    assert main(["synth", "eval-generator", "--prompts", "2", "--classifier", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["synth", "eval-generator", "--prompts", "2", "--split", "train"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_eval_generator_scores_val_captions_for_choosing_settings(entry_point_plugins, offline, capsys, monkeypatch):
    import vist3a_synth.data

    splits = []
    clips = vist3a_synth.data.SynthClips
    monkeypatch.setattr(vist3a_synth.data, "SynthClips", lambda *args: splits.append(args[-1]) or clips(*args))
    entry_point_plugins("vist3a_synth")
    assert main(["synth", "eval-generator", "--prompts", "2", "--steps", "1", "--split", "val"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-4].startswith("attribute accuracy over 2 val captions: ")
    assert splits == ["val"]
