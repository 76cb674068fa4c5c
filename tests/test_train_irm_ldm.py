"""`dcase9 train` for System 3 (model kind `irm-ldm`): only the mask net is trained and saved, the
checkpoint loads with `dcase9 infer --system 3`, and the kind's own settings are checked."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

from tests.tiny_audioldm import TINY_MASK_NET, write_tiny_diffusion_prior, write_tiny_vae, write_tiny_vocoder
from tests.tiny_models import tiny_clap_options, tokenizer_folder
from dcase9.cli import app
from dcase9.models.checkpoints import read_checkpoint
from dcase9.models.irm_ldm import CHECKPOINT_PREFIX, MaskNetConfig
from dcase9.training.irm_ldm import IrmLdmLossWeights, IrmLdmTrainable
from dcase9.models.tiny import TINY_CLAP
from dcase9.training.config import assemble_config
from dcase9.training.models import model_kind

runner = CliRunner()

# 0.64 s segments = 64 AudioLDM frames, the smallest the tiny codec and the five-level mask net divide.
TINY_SYSTEM3: dict[str, Any] = {
    "data": {"segment_seconds": 0.64, "batch_size": 2, "num_workers": 0},
    "model": {"kind": "irm-ldm", "mask_net": TINY_MASK_NET, "segment_frames": 64},
    "query_encoder": {"source": "random", "tokenizer": "tiny", "architecture": dict(TINY_CLAP)},
    "trainer": {"log_every_n_steps": 1, "progress_bar": False},
    "validation": {"every_steps": 2, "limit": 1, "batch_size": 1, "sanity_steps": 0},
    "checkpoint": {"every_steps": 2, "last_every_steps": 1},
}


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("system3-train")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_SYSTEM3))
    return {"config": config, "vae": write_tiny_vae(root / "vae"), "vocoder": write_tiny_vocoder(root / "vocoder"),
            "diffusion": write_tiny_diffusion_prior(root / "pipeline"), "tokenizer": tokenizer_folder(root / "tok")}


def train_args(parts: dict[str, Path], demo_root: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--preset", "system3", "--config", str(parts["config"]),
            "--data", str(demo_root / "train" / "train.json"), "--validation", str(demo_root / "validation"),
            "--weight", f"audioldm-vae={parts['vae']}", "--weight", f"audioldm-vocoder={parts['vocoder']}",
            "--offline", "--out", str(out), *extra]


def test_train_system3_saves_the_mask_net_and_infer_loads_it(parts: dict[str, Path], demo_root: Path,
                                                            tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = runner.invoke(app, train_args(parts, demo_root, run, "--steps", "2"))
    assert result.exit_code == 0, result.output
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checkpoint = read_checkpoint(run / "last.ckpt")
    state = checkpoint["state_dict"]
    # The official layout: the trained mask net and the CLAP query net, nothing of the frozen codec.
    assert {key.split(".")[0] for key in state} == {"ss_model", "query_encoder"}
    assert all(key.startswith((CHECKPOINT_PREFIX, "query_encoder.model.")) for key in state)
    assert any(key.startswith(CHECKPOINT_PREFIX) for key in state)
    assert not any("vae" in key or "vocoder" in key or "codec" in key for key in state)
    mask_net = MaskNetConfig(**TINY_MASK_NET).model_dump(mode="json")
    assert checkpoint["dcase9"]["system_options"] == {"mask_net": mask_net, "output_scale": "input",
                                                      "clap": tiny_clap_options()}
    metrics = (run / "logs" / "version_0" / "metrics.csv").read_text()
    assert "train/loss" in metrics and "val/sdri" in metrics

    # The run says how to infer with it, and that command works as printed (with our data folders).
    said = " ".join(result.output.split())
    assert "dcase9 infer --system 3" in said and f"--weight audioldm-vae={parts['vae']}" in said
    assert "--system-config" not in said and "roberta-base-tokenizer" not in said  # the checkpoint carries both
    estimates = tmp_path / "estimates"
    result = runner.invoke(app, [
        "infer", "--system", "3", "--checkpoint", str(run / "last.ckpt"), "--offline",
        "--weight", f"audioldm-vae={parts['vae']}", "--weight", f"audioldm-vocoder={parts['vocoder']}",
        "--data", str(demo_root / "validation"), "--out", str(estimates), "--limit", "1"])
    assert result.exit_code == 0, result.output
    (output,) = estimates.glob("*.wav")
    audio, rate = sf.read(output, dtype="float32")
    assert rate == 16000 and audio.shape == (160_000,) and abs(audio).max() > 0


def test_the_frozen_codec_stays_frozen_while_the_mask_net_learns(parts: dict[str, Path], demo_root: Path,
                                                                 tmp_path: Path) -> None:
    from dcase9.weights import WeightResolver
    from dcase9.training.models import ModelContext

    config = assemble_config(preset="system3", overrides=[TINY_SYSTEM3])
    resolver = WeightResolver({"audioldm-vae": parts["vae"], "audioldm-vocoder": parts["vocoder"]}, offline=True)
    kind = model_kind("irm-ldm")
    trainable = kind.build(config.model_options(), ModelContext(sample_rate=16000, weight=resolver))
    assert isinstance(trainable, IrmLdmTrainable)
    assert trainable.frozen is not None
    trainable.frozen.requires_grad_(False).eval()  # as the training module does
    trainable.net.train()
    frozen_before = {k: v.clone() for k, v in trainable.frozen.state_dict().items()}
    net_before = {k: v.clone() for k, v in trainable.net.state_dict().items()}

    torch.manual_seed(0)
    mixture = 0.1 * torch.randn(2, 10_240)
    target = 0.5 * mixture
    condition = torch.randn(2, 512)
    optimizer = torch.optim.Adam(trainable.net.parameters(), lr=1e-2)
    for _ in range(2):
        loss, parts_logged = trainable.training_loss(mixture, condition, target, ["a", "b"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert set(parts_logged) >= {"mse"}
    for key, value in trainable.frozen.state_dict().items():
        torch.testing.assert_close(value, frozen_before[key], rtol=0, atol=0, msg=key)
    assert any(not torch.equal(value, net_before[key]) for key, value in trainable.net.state_dict().items())


def test_system3_preset_and_its_errors(parts: dict[str, Path], demo_root: Path, tmp_path: Path) -> None:
    preset = assemble_config(preset="system3")
    assert preset.system == "3" and preset.loss is None and preset.data.sample_rate == 16000
    assert (preset.optimizer.name, preset.optimizer.lr, preset.schedule.warm_up_steps) == ("adamw", 1e-3, 10000)
    options = preset.model_options()
    assert options.segment_frames == 1024 and options.loss.mse_weight == 1.0 and options.loss.ldm_weight == 0.0

    with pytest.raises(ValueError, match="both 0"):
        IrmLdmLossWeights(mse_weight=0, ldm_weight=0)
    # A waveform loss other than seed 003's MSE is refused, not silently ignored.
    result = runner.invoke(app, train_args(parts, demo_root, tmp_path / "l1", "--steps", "1", "--set", "loss=l1_wav"))
    assert result.exit_code != 0 and "irm-ldm" in result.output
    # IRM-LDM runs at AudioLDM's 16 kHz.
    result = runner.invoke(app, train_args(parts, demo_root, tmp_path / "sr", "--steps", "1",
                                           "--set", "data.sample_rate=32000"))
    assert result.exit_code != 0 and "16000" in result.output
    # The LDM term needs AudioLDM's diffusion parts; offline without them, the error says which weight.
    result = runner.invoke(app, train_args(parts, demo_root, tmp_path / "ldm", "--steps", "1",
                                           "--set", "model.loss.ldm_weight=1.0"))
    assert result.exit_code != 0 and "audioldm-diffusion" in result.output


def test_train_system3_with_the_ldm_term(parts: dict[str, Path], demo_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "ldm"
    result = runner.invoke(app, train_args(parts, demo_root, run, "--steps", "1", "--set", "model.loss.ldm_weight=1.0",
                                           "--weight", f"audioldm-diffusion={parts['diffusion']}"))
    assert result.exit_code == 0, result.output
    metrics = (run / "logs" / "version_0" / "metrics.csv").read_text()
    assert "train/ldm" in metrics and "train/mse" in metrics
    # AudioLDM's UNet and text tower (frozen, from their own files) are not saved with the mask net.
    state = read_checkpoint(run / "last.ckpt")["state_dict"]
    assert all(key.startswith((CHECKPOINT_PREFIX, "query_encoder.model.")) for key in state)
