"""Text-queried systems through the real loading path: official-layout checkpoints, `dcase9 infer`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

from tests.tiny_models import (SMALL_STFT, resunet_weights, system_config, tokenizer_folder,
                               write_lightning_checkpoint)
from toolkit import api
from toolkit.cli import app
from toolkit.engine import EngineOptions, separate_in_chunks
from toolkit.errors import CheckpointError

runner = CliRunner()


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("assets")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(system_config()))
    return {"checkpoint": write_lightning_checkpoint(root / "baseline.ckpt"),
            "tokenizer": tokenizer_folder(root / "tokenizer"), "config": config}


def infer_args(assets: dict[str, Path], data: Path, out: Path, *extra: str) -> list[str]:
    return ["infer", "--system", "baseline", "--data", str(data), "--out", str(out),
            "--checkpoint", str(assets["checkpoint"]), "--weight", f"roberta-base-tokenizer={assets['tokenizer']}",
            "--system-config", str(assets["config"]), "--offline", *extra]


def test_infer_baseline_end_to_end(assets: dict[str, Path], demo_root: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, infer_args(assets, demo_root / "validation", tmp_path / "est", "--limit", "3",
                                           "--batch-size", "2"))
    assert result.exit_code == 0, result.output
    outputs = sorted((tmp_path / "est").glob("*.wav"))
    assert len(outputs) == 3
    for path in outputs:
        audio, rate = sf.read(path, dtype="float32")
        assert rate == 16000 and audio.shape == (160000,) and np.abs(audio).max() > 0
    manifest = (tmp_path / "est" / "dcase9-run.json").read_text()
    assert '"system": "baseline"' in manifest and '"baseline-checkpoint"' in manifest


def test_batched_equals_one_at_a_time(assets: dict[str, Path], demo_root: Path, tmp_path: Path) -> None:
    for batch, folder in ((3, "b3"), (1, "b1")):
        result = runner.invoke(app, infer_args(assets, demo_root / "validation", tmp_path / folder, "--limit", "3",
                                               "--batch-size", str(batch)))
        assert result.exit_code == 0, result.output
    for path in sorted((tmp_path / "b3").glob("*.wav")):
        a, _ = sf.read(path, dtype="float32")
        b, _ = sf.read(tmp_path / "b1" / path.name, dtype="float32")
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * max(1.0, float(np.abs(b).max())))


def test_mis_keyed_checkpoint_is_refused_naming_keys(assets: dict[str, Path], demo_root: Path,
                                                     tmp_path: Path) -> None:
    weights = resunet_weights()
    weights["base.encoder_block1.conv_block1.conv1.weightt"] = weights.pop("base.encoder_block1.conv_block1.conv1.weight")
    del weights["film.decoder_block6->beta1.bias"]
    broken = write_lightning_checkpoint(tmp_path / "broken.ckpt", resunet=weights)
    args = infer_args(assets, demo_root / "validation", tmp_path / "est", "--limit", "1")
    args[args.index("--checkpoint") + 1] = str(broken)
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "refusing a partial load" in text
    assert "base.encoder_block1.conv_block1.conv1.weightt" in text and "film.decoder_block6->beta1.bias" in text
    assert not list((tmp_path / "est").glob("*.wav"))


def test_wrong_stft_size_is_refused(assets: dict[str, Path], demo_root: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="base.bn0"):
        api.separate("baseline", demo_root / "validation", tmp_path / "est",
                     options=EngineOptions(progress=False, limit=1), checkpoint=assets["checkpoint"],
                     weights={"roberta-base-tokenizer": assets["tokenizer"]}, offline=True,
                     system_options=system_config({"n_fft": 1024, "hop_length": 160}))


def test_missing_weights_offline_explain_what_to_do(demo_root: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCASE9_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["infer", "-s", "2", "-d", str(demo_root / "validation"), "-o", str(tmp_path / "o"),
                                 "--offline"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "audiosep-checkpoint" in text and "Offline mode is on" in text and "--checkpoint PATH" in text
    result = runner.invoke(app, ["infer", "-s", "1", "-d", str(demo_root / "validation"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "Nobody publishes it" in " ".join(result.output.split())


def test_system2_runs_at_32k_on_16k_data(assets: dict[str, Path], demo_root: Path, tmp_path: Path) -> None:
    """AudioSep-32K: 16 kHz in, 32 kHz model, 16 kHz out of the same length."""
    checkpoint = write_lightning_checkpoint(tmp_path / "audiosep.ckpt", resunet=resunet_weights(512, 128))
    result = api.separate("2", demo_root / "eval-real", tmp_path / "est", options=EngineOptions(progress=False, limit=1),
                          checkpoint=checkpoint, weights={"roberta-base-tokenizer": assets["tokenizer"]},
                          offline=True, system_options=system_config({"n_fft": 512, "hop_length": 128}))
    assert result.written == 1
    audio, rate = sf.read(next((tmp_path / "est").glob("*.wav")), dtype="float32")
    assert rate == 16000 and audio.shape == (160000,)


def test_chunked_inference_matches_whole_away_from_seams(assets: dict[str, Path]) -> None:
    """A long input in overlapping chunks: close to the whole-input result away from the seams,
    and never silent anywhere (a short input runs whole)."""
    from systems.text_queried import TextQueriedResUNet
    from toolkit.models.resunet import load_resunet30, ResUNet30Config

    model = load_resunet30(resunet_weights(), ResUNet30Config(16000, **SMALL_STFT))
    separator = TextQueriedResUNet(16000, model, clap=None)  # type: ignore[arg-type]
    torch.manual_seed(0)
    mixture = 0.1 * torch.randn(1, 6 * 16000)
    condition = torch.randn(1, 512)
    with torch.no_grad():
        whole = separator.separate(mixture, condition)
        segment = 2 * 16000
        chunked = separate_in_chunks(lambda s, e: separator.separate(mixture[:, s:e], condition),
                                     mixture.shape[-1], 1, segment, 0.25, mixture.device)
    from toolkit.engine import chunk_starts
    from toolkit.metrics import sdr

    far = torch.ones(mixture.shape[-1], dtype=torch.bool)
    for start in chunk_starts(mixture.shape[-1], segment, 0.25)[1:]:
        far[max(0, start - 8000):start + segment // 4 + 8000] = False  # the cross-fade plus 0.5 s
    assert far.sum() > 16000
    assert sdr(whole[0, far], chunked[0, far]).item() > 20
    assert chunked.abs().max() > 0 and (chunked[0].reshape(-1, 1600).abs().amax(dim=1) > 0).all()


@pytest.mark.slow
def test_compile_gives_the_eager_outputs(assets: dict[str, Path], demo_root: Path, tmp_path: Path) -> None:
    """`--compile` (torch.compile of the U-Net body) changes speed, not results beyond float round-off."""
    for folder, extra in (("eager", ()), ("compiled", ("--compile",))):
        result = runner.invoke(app, infer_args(assets, demo_root / "validation", tmp_path / folder, "--limit", "2",
                                               *extra))
        assert result.exit_code == 0, result.output
    for path in sorted((tmp_path / "eager").glob("*.wav")):
        a, _ = sf.read(path, dtype="float32")
        b, _ = sf.read(tmp_path / "compiled" / path.name, dtype="float32")
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-4 * max(1.0, float(np.abs(a).max())))
    manifest = (tmp_path / "compiled" / "dcase9-run.json").read_text()
    assert '"compile": true' in manifest


def test_compile_is_refused_for_systems_without_a_network(demo_root: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["infer", "--system", "mixture", "--data", str(demo_root / "validation"),
                                 "--out", str(tmp_path / "est"), "--compile"])
    assert result.exit_code == 2 and "no network to compile" in result.output
