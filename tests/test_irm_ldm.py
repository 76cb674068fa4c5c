"""System 3 (IRM-LDM) on tiny random AudioLDM parts loaded through the real loading path.

The VAE, vocoder, UNet, scheduler and text tower are saved with `save_pretrained` by
`tests/tiny_audioldm.py` and resolved as registry weights (`--weight audioldm-vae=DIR`, ...).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

from tests.tiny_audioldm import (TINY_MASK_NET, TINY_VAE_SCALING, write_system3_checkpoint, write_tiny_diffusion_prior,
                                 write_tiny_vae, write_tiny_vocoder)
from tests.tiny_models import TINY_CLAP, tokenizer_folder, write_lightning_checkpoint
from dcase9.cli import app
from dcase9.errors import CheckpointError
from dcase9.models.audioldm import AudioLdmCodec, MelSettings, load_audioldm_diffusion_prior, load_audioldm_vae, \
    load_audioldm_vocoder
from dcase9.models.irm_ldm import CHECKPOINT_PREFIX, IrmLdm, IrmLdmLoss, MaskNet, MaskNetConfig, waveform_mse

runner = CliRunner()


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("audioldm")
    config = root / "system3.yaml"
    config.write_text(yaml.safe_dump({"mask_net": TINY_MASK_NET, "clap": dict(TINY_CLAP)}))
    return {"vae": write_tiny_vae(root / "vae"), "vocoder": write_tiny_vocoder(root / "vocoder"),
            "diffusion": write_tiny_diffusion_prior(root / "pipeline"),
            "checkpoint": write_system3_checkpoint(root / "system3.ckpt"),
            "tokenizer": tokenizer_folder(root / "tokenizer"), "config": config}


@pytest.fixture(scope="module")
def codec(assets: dict[str, Path]) -> AudioLdmCodec:
    """AudioLDM's settings: segments of 1024 frames (10.24 s)."""
    from dcase9.weights import WeightResolver

    resolver = WeightResolver({"audioldm-vae": assets["vae"], "audioldm-vocoder": assets["vocoder"]}, offline=True)
    return AudioLdmCodec(load_audioldm_vae(resolver("audioldm-vae")),
                         load_audioldm_vocoder(resolver("audioldm-vocoder"))).eval()


@pytest.fixture(scope="module")
def short_codec(codec: AudioLdmCodec) -> AudioLdmCodec:
    """The same parts on segments of 64 frames (0.64 s), for speed; hop and rate unchanged."""
    return AudioLdmCodec(codec.vae, codec.vocoder, MelSettings(segment_frames=64)).eval()


def weight_args(assets: dict[str, Path], *names: str) -> list[str]:
    args = []
    for name in names:
        folder = {"audioldm-vae": "vae", "audioldm-vocoder": "vocoder", "roberta-base-tokenizer": "tokenizer"}[name]
        args += ["--weight", f"{name}={assets[folder]}"]
    return args


# --------------------------------------------------------------------------------------------
# Loading


def test_loaded_parts_keep_audioldm_layout(codec: AudioLdmCodec) -> None:
    assert codec.scaling_factor == TINY_VAE_SCALING  # read from the VAE's config
    assert codec.latent_channels == 8
    assert not any(p.requires_grad for p in codec.parameters())
    codec.train()
    assert not codec.vae.training and not codec.vocoder.training  # frozen parts stay in eval mode
    codec.eval()


def test_loading_errors_name_the_folder_and_the_problem(assets: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no config.json"):
        load_audioldm_vae(tmp_path)
    with pytest.raises(CheckpointError, match="not a folder"):
        load_audioldm_vocoder(tmp_path / "missing")
    config = json.loads((assets["vocoder"] / "config.json").read_text())
    bad = tmp_path / "vocoder"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({**config, "upsample_rates": [5, 4, 2, 2]}))
    with pytest.raises(CheckpointError, match=r"multiply to 80, not the hop 160"):
        load_audioldm_vocoder(bad)


def test_missing_audioldm_weights_offline_say_where_to_get_them(demo_root: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCASE9_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    result = runner.invoke(app, ["infer", "-s", "3-roundtrip", "-d", str(demo_root / "validation"),
                                 "-o", str(tmp_path / "o"), "--offline"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "audioldm-vae" in text and "offline mode is on (--offline)" in text and "cvssp/audioldm-s-full-v2" in text


# --------------------------------------------------------------------------------------------
# The latent path and the model


def test_ten_second_clip_maps_to_audioldm_latent_and_back(codec: AudioLdmCodec) -> None:
    torch.manual_seed(0)
    clip = 0.2 * torch.randn(1, 160_000)
    with torch.no_grad():
        analysis = codec.analyse(clip)
        assert analysis.latent.shape == (1, 8, 256, 16) and analysis.segments == 1
        out = codec.synthesise(analysis.latent, analysis)
    assert out.shape == clip.shape and torch.isfinite(out).all() and out.abs().max() > 1e-3


def test_output_returns_to_the_input_scale(short_codec: AudioLdmCodec) -> None:
    """AudioLDM prepares every segment to peak 0.5; the codec undoes that gain, so scaling the input
    scales the output by the same factor (and with output_scale 'normalized' it does not)."""
    torch.manual_seed(1)
    clip = 0.05 * torch.randn(1, 9_000)
    with torch.no_grad():
        quiet, loud = short_codec.roundtrip(clip), short_codec.roundtrip(8.0 * clip)
        quiet_raw = short_codec.roundtrip(clip, restore_gain=False)
        loud_raw = short_codec.roundtrip(8.0 * clip, restore_gain=False)
    atol = 1e-4 * float(quiet.abs().max())  # float32 round-off of the VAE and vocoder
    torch.testing.assert_close(loud, 8.0 * quiet, rtol=1e-3, atol=8 * atol)
    torch.testing.assert_close(loud_raw, quiet_raw, rtol=1e-3, atol=atol)
    gain = 0.5 / float((clip - clip.mean()).abs().max())
    torch.testing.assert_close(quiet_raw, quiet * gain, rtol=1e-3, atol=atol)


def test_long_inputs_are_cut_into_segments(short_codec: AudioLdmCodec) -> None:
    torch.manual_seed(2)
    segment = short_codec.settings.segment_samples
    signal = 0.1 * torch.randn(1, 2 * segment + 5_000)
    with torch.no_grad():
        analysis = short_codec.analyse(signal)
        out = short_codec.synthesise(analysis.latent, analysis)
        first = short_codec.roundtrip(signal[:, :segment])
    assert analysis.segments == 3 and out.shape == signal.shape
    # Segments are independent: the first one alone gives the same output.
    torch.testing.assert_close(out[:, :segment], first, rtol=1e-3, atol=1e-4 * float(first.abs().max()))


def test_mask_net_gives_a_query_dependent_ratio_mask() -> None:
    torch.manual_seed(3)
    net = MaskNet(8, MaskNetConfig(**TINY_MASK_NET)).eval()
    latent = torch.randn(2, 8, 256, 16)
    with torch.no_grad():
        mask = net(latent, torch.randn(2, 512))
        other = net(latent, torch.randn(2, 512))
    assert mask.shape == latent.shape and mask.min() > 0 and mask.max() < 1
    assert (mask - other).abs().max() > 1e-3
    default = MaskNet(8)  # five ResUNet levels with ResUNet30's first five widths
    assert default.unet.depth == 5 and default.unet.encoder_block5.conv_block1.out_channels == 384
    assert not any(re.match(r"unet\.decoder_block\d+\.bn2\.", k) for k in default.state_dict())  # no dead params


def test_unmasked_path_is_the_round_trip_and_the_mask_acts_on_the_latent(short_codec: AudioLdmCodec) -> None:
    torch.manual_seed(4)
    mixture = 0.1 * torch.randn(2, 15_000)
    net = MaskNet(8, MaskNetConfig(**TINY_MASK_NET)).eval()
    with torch.no_grad():
        unmasked = IrmLdm(short_codec, None, mask="ones")(mixture, None)
        torch.testing.assert_close(unmasked, short_codec.roundtrip(mixture))
        separation = IrmLdm(short_codec, net).separate(mixture, torch.randn(2, 512))
    assert separation.estimate.shape == mixture.shape
    assert separation.mask is not None
    torch.testing.assert_close(separation.latent, separation.mask * separation.analysis.latent)


def test_checkpoint_holds_the_mask_net_only_and_round_trips(short_codec: AudioLdmCodec, tmp_path: Path) -> None:
    torch.manual_seed(5)
    codec = short_codec
    model = IrmLdm(codec, MaskNet(8, MaskNetConfig(**TINY_MASK_NET)))
    state = model.checkpoint_state_dict()
    assert state and all(k.startswith(CHECKPOINT_PREFIX) for k in state)
    assert len(state) == len(model.mask_net.state_dict())  # type: ignore[union-attr]
    fresh = IrmLdm(codec, MaskNet(8, MaskNetConfig(**TINY_MASK_NET)))
    fresh.load_checkpoint_state_dict({**state, "query_encoder.model.x": torch.zeros(1)}, source="test")
    for key, value in fresh.checkpoint_state_dict().items():
        torch.testing.assert_close(value, state[key])
    baseline = torch.load(write_lightning_checkpoint(tmp_path / "baseline.ckpt"), weights_only=True)["state_dict"]
    with pytest.raises(CheckpointError, match="no IRM-LDM mask network.*ss_model"):
        fresh.load_checkpoint_state_dict(baseline, source="baseline.ckpt")
    wrong = {k: v for k, v in state.items() if "decoder_block5" not in k}
    with pytest.raises(CheckpointError, match="missing key.*decoder_block5"):
        fresh.load_checkpoint_state_dict(wrong, source="broken.ckpt")


# --------------------------------------------------------------------------------------------
# Training


def demo_training_batch(demo_root: Path, seconds: float) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Two mixtures of demo training clips (target + the next clip as interferer), cropped."""
    entries = json.loads((demo_root / "train" / "train.json").read_text())["data"]
    length = int(seconds * 16000)
    clips = []
    for entry in entries[::4][:3]:  # clips of different classes
        wav = Path(entry["wav"])
        audio, rate = sf.read(wav if wav.is_absolute() else demo_root / "train" / wav, dtype="float32")
        assert rate == 16000
        clips.append(torch.from_numpy(audio[16000:16000 + length]))
    targets = torch.stack(clips[:2])
    mixtures = targets + torch.stack([clips[1], clips[2]])
    return mixtures, targets, [entries[0]["caption"], entries[4]["caption"]]


def test_a_few_training_steps_reduce_the_waveform_loss(short_codec: AudioLdmCodec, demo_root: Path) -> None:
    """Only the mask net learns (Adam, as seed 003); VAE and vocoder stay frozen."""
    short = short_codec
    mixtures, targets, _ = demo_training_batch(demo_root, 0.64)
    torch.manual_seed(6)
    model = IrmLdm(short, MaskNet(8, MaskNetConfig(**TINY_MASK_NET))).train()
    conditions = torch.nn.functional.normalize(torch.randn(2, 512), dim=-1)
    frozen = {k: v.clone() for k, v in short.state_dict().items()}
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=3e-3)
    loss_fn = IrmLdmLoss()
    losses = []
    for _ in range(6):
        loss, parts = loss_fn(model.separate(mixtures, conditions), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(parts["mse"])
    assert losses[-1] < 0.8 * losses[0], losses
    for key, value in short.state_dict().items():
        torch.testing.assert_close(value, frozen[key])


def test_ldm_term_is_audioldm_noise_prediction_on_the_masked_latent(assets: dict[str, Path], short_codec: AudioLdmCodec,
                                                                      demo_root: Path) -> None:
    from dcase9.weights import WeightResolver

    prior = load_audioldm_diffusion_prior(WeightResolver({"audioldm-diffusion": assets["diffusion"]},
                                                         offline=True)("audioldm-diffusion"))
    short = short_codec
    mixtures, targets, captions = demo_training_batch(demo_root, 0.64)
    torch.manual_seed(7)
    model = IrmLdm(short, MaskNet(8, MaskNetConfig(**TINY_MASK_NET))).train()
    separation = model.separate(mixtures, torch.randn(2, 512))
    loss, parts = IrmLdmLoss(mse_weight=1.0, ldm_weight=1.0, prior=prior)(
        separation, targets, captions, generator=torch.Generator().manual_seed(0))
    assert set(parts) == {"mse", "ldm"}
    assert loss.item() == pytest.approx(parts["mse"] + parts["ldm"], rel=1e-5)
    again = prior.loss(separation.latent, captions, generator=torch.Generator().manual_seed(0))
    assert again.item() == pytest.approx(parts["ldm"], rel=1e-5)  # same noise and timesteps, same value
    # Independently: noise the latent as the scheduler does and ask the UNet for the noise.
    generator = torch.Generator().manual_seed(0)
    steps = torch.randint(0, 1000, (2,), generator=generator)
    noise = torch.randn(separation.latent.shape, generator=generator)
    abar = prior.scheduler.alphas_cumprod[steps].view(-1, 1, 1, 1)
    noisy = abar.sqrt() * separation.latent + (1 - abar).sqrt() * noise
    with torch.no_grad():
        text = prior.text_encoder(**prior.tokenizer(captions, padding=True, return_tensors="pt")).text_embeds
        predicted = prior.unet(noisy, steps, encoder_hidden_states=None,
                               class_labels=torch.nn.functional.normalize(text, dim=-1)).sample
    assert torch.mean((predicted - noise) ** 2).item() == pytest.approx(parts["ldm"], rel=1e-4)
    # The LDM term trains the mask net through the masked latent, and nothing else.
    prior.loss(separation.latent, captions).backward()
    assert all(p.grad is not None for p in model.trainable_parameters())
    assert all(p.grad is None for p in prior.parameters())
    with pytest.raises(ValueError, match="needs AudioLDM's UNet"):
        IrmLdmLoss(ldm_weight=1.0)


def test_waveform_mse_is_the_mean_squared_error() -> None:
    estimate, target = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])
    assert waveform_mse(estimate, target).item() == pytest.approx(2.5)
    with pytest.raises(ValueError, match="differ in shape"):
        waveform_mse(estimate, target[:, :1])


# --------------------------------------------------------------------------------------------
# dcase9 infer / score


def test_infer_system3_end_to_end(assets: dict[str, Path], demo_root: Path, tmp_path: Path) -> None:
    args = ["infer", "--system", "3", "--data", str(demo_root / "validation"), "--out", str(tmp_path / "est"),
            "--checkpoint", str(assets["checkpoint"]), "--system-config", str(assets["config"]), "--offline",
            "--limit", "2", "--batch-size", "2",
            *weight_args(assets, "audioldm-vae", "audioldm-vocoder", "roberta-base-tokenizer")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    outputs = sorted((tmp_path / "est").glob("*.wav"))
    assert len(outputs) == 2
    for path in outputs:
        audio, rate = sf.read(path, dtype="float32")
        assert rate == 16000 and audio.shape == (160_000,) and np.isfinite(audio).all() and np.abs(audio).max() > 0
    manifest = json.loads((tmp_path / "est" / "dcase9-run.json").read_text())
    assert manifest["identity"]["system"] == "3" and manifest["settings"]["segment_samples"] == 163_840
    assert {"system3-checkpoint", "audioldm-vae", "audioldm-vocoder"} <= set(manifest["identity"]["weights"])


def test_separate_a_recording_with_system3(assets: dict[str, Path], tmp_path: Path) -> None:
    """System 3 is text-queried: `dcase9 separate` runs it on a stereo 44.1 kHz file like any other system,
    each channel separated at AudioLDM's 16 kHz and returned at the file's rate and length."""
    rng = np.random.default_rng(3)
    recording = tmp_path / "in" / "park.flac"
    recording.parent.mkdir()
    sf.write(recording, (0.1 * rng.standard_normal((44100 * 2, 2))).astype(np.float32), 44100)
    args = ["separate", str(recording), "-q", "birds singing", "-s", "3", "-o", str(tmp_path / "out"),
            "--checkpoint", str(assets["checkpoint"]), "--system-config", str(assets["config"]), "--offline",
            *weight_args(assets, "audioldm-vae", "audioldm-vocoder", "roberta-base-tokenizer")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    audio, rate = sf.read(tmp_path / "out" / "park" / "birds_singing.wav", dtype="float32", always_2d=True)
    assert rate == 44100 and audio.shape == (88200, 2) and np.isfinite(audio).all()
    assert np.abs(audio[:, 0]).max() > 0 and not np.array_equal(audio[:, 0], audio[:, 1])


def test_infer_system3_refuses_a_baseline_checkpoint(assets: dict[str, Path], demo_root: Path, tmp_path: Path) -> None:
    baseline = write_lightning_checkpoint(tmp_path / "baseline.ckpt")
    result = runner.invoke(app, ["infer", "-s", "irm-ldm", "-d", str(demo_root / "validation"), "-o", str(tmp_path / "e"),
                                 "--checkpoint", str(baseline), "--system-config", str(assets["config"]), "--offline",
                                 *weight_args(assets, "audioldm-vae", "audioldm-vocoder", "roberta-base-tokenizer")])
    assert result.exit_code == 2
    assert "no IRM-LDM mask network" in " ".join(result.output.split())


def test_diagnostics_roundtrip_and_unmasked_path_score(assets: dict[str, Path], demo_root: Path,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`3-roundtrip` (reference through VAE + vocoder) and `mask: ones` (the mixture through it) need no
    System 3 checkpoint; `dcase9 score` scores them like any system."""
    monkeypatch.setenv("DCASE9_HOME", str(tmp_path / "home"))  # nothing cached: only the given weights exist
    data = str(demo_root / "validation")
    result = runner.invoke(app, ["infer", "-s", "3-roundtrip", "-d", data, "-o", str(tmp_path / "rt"), "--offline",
                                 "--limit", "1", *weight_args(assets, "audioldm-vae", "audioldm-vocoder")])
    assert result.exit_code == 0, result.output
    ones = tmp_path / "ones.yaml"
    ones.write_text("mask: ones\n")
    result = runner.invoke(app, ["infer", "-s", "3", "-d", data, "-o", str(tmp_path / "ones"), "--offline", "--limit", "1",
                                 "--system-config", str(ones), *weight_args(assets, "audioldm-vae", "audioldm-vocoder")])
    assert result.exit_code == 0, result.output
    for folder in ("rt", "ones"):
        for path in (tmp_path / folder).glob("*.wav"):
            audio, rate = sf.read(path, dtype="float32")
            assert rate == 16000 and audio.shape == (160_000,)
    rt = {p.name: sf.read(p, dtype="float32")[0] for p in (tmp_path / "rt").glob("*.wav")}
    mixed = {p.name: sf.read(p, dtype="float32")[0] for p in (tmp_path / "ones").glob("*.wav")}
    assert len(rt) == 1 and rt.keys() == mixed.keys()
    assert all(np.abs(rt[k] - mixed[k]).max() > 1e-4 for k in rt)  # reference in, not mixture
    result = runner.invoke(app, ["score", "-d", data, "-e", str(tmp_path / "rt"), "-o", str(tmp_path / "report")])
    assert result.exit_code == 1  # only 1 of the demo's mixtures was separated: the rest are reported missing
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["scored"] == 1 and np.isfinite(summary["mean"]["sdr"])


def test_roundtrip_needs_references(assets: dict[str, Path], demo_root: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["infer", "-s", "3-roundtrip", "-d", str(demo_root / "eval-real"),
                                 "-o", str(tmp_path / "o"), "--offline",
                                 *weight_args(assets, "audioldm-vae", "audioldm-vocoder")])
    assert result.exit_code == 2 and "needs references" in " ".join(result.output.split())


def test_systems_lists_system3_and_its_diagnostic() -> None:
    result = runner.invoke(app, ["systems"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "3-roundtrip" in text and "irm-ldm" in text
    result = runner.invoke(app, ["systems", "irm-ldm"])
    assert result.exit_code == 0 and "-4.757" in result.output
