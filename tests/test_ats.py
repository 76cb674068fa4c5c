"""ATS on a tiny random CLAP loaded from laion-format weights, through `dcase9 score --ats`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from tests.tiny_models import TINY_CLAP, tiny_clap_laion_weights, tokenizer_folder, write_lightning_checkpoint
from dcase9 import api
from dcase9.ats import AtsScorer
from dcase9.audio import resample, sinc_resample
from dcase9.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def clap_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clap")
    laion = root / "music_speech_tiny.pt"  # laion's own layout: 'state_dict' with a DDP 'module.' prefix
    torch.save({"epoch": 15, "state_dict": {f"module.{k}": v for k, v in tiny_clap_laion_weights(3).items()}}, laion)
    config = root / "clap.yaml"
    config.write_text(yaml.safe_dump(TINY_CLAP))
    return {"laion": laion, "config": config, "tokenizer": tokenizer_folder(root / "tokenizer"),
            "lightning": write_lightning_checkpoint(root / "baseline.ckpt", clap=tiny_clap_laion_weights(3))}


def scorer(clap_files: dict[str, Path], mode: str = "resample", checkpoint: str = "laion") -> AtsScorer:
    return api.load_ats_scorer(checkpoint=clap_files[checkpoint], mode=mode, clap=TINY_CLAP, offline=True,
                               weights={"roberta-base-tokenizer": clap_files["tokenizer"]}, device="cpu")


@pytest.fixture(scope="module")
def estimates(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("est")
    for system in ("mixture", "oracle"):
        api.infer(system, demo_root / "validation", root / system, progress=False)
    api.infer("mixture", demo_root / "eval-real", root / "real", progress=False)
    return {"mixture": root / "mixture", "oracle": root / "oracle", "real": root / "real"}


def test_ats_is_the_cosine_of_the_two_embeddings(clap_files: dict[str, Path]) -> None:
    ats = scorer(clap_files)
    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal(16000)).astype(np.float32) for _ in range(3)]
    queries = ["a dog barking", "rain falls", "a dog barking"]
    values = ats.similarity(queries, waves)
    text = ats.encoder.encode_text(queries)
    audio = ats.encoder.encode_audio(torch.from_numpy(np.stack(waves)))
    expected = torch.nn.functional.cosine_similarity(audio, text, dim=-1)
    np.testing.assert_allclose(values, expected.numpy(), atol=1e-6)
    assert all(-1 <= v <= 1 for v in values)


def test_the_same_weights_from_a_lightning_checkpoint_give_the_same_ats(clap_files: dict[str, Path]) -> None:
    wave = [np.sin(np.arange(16000) / 9).astype(np.float32)]
    a = scorer(clap_files, checkpoint="laion").similarity(["a bell rings"], wave)
    b = scorer(clap_files, checkpoint="lightning").similarity(["a bell rings"], wave)
    assert a == pytest.approx(b, abs=1e-7)


def test_clapscore_mode_treats_the_input_as_32_khz(clap_files: dict[str, Path]) -> None:
    ats = scorer(clap_files, mode="clapscore")
    wave = np.sin(np.arange(16000) / 5).astype(np.float32)
    value = ats.similarity(["a dog barking"], [wave])[0]
    # By hand: resample as if 32 kHz to CLAP's rate (16 kHz for the tiny model) with CLAPScore's
    # resampling algorithm (torchaudio's Hann-windowed sinc), then embed.
    audio = ats.encoder.encode_audio(sinc_resample(torch.from_numpy(wave)[None], 32000, 16000))
    text = ats.encoder.encode_text(["a dog barking"])
    assert value == pytest.approx(float((audio * text).sum()), abs=1e-6)
    assert value != pytest.approx(scorer(clap_files).similarity(["a dog barking"], [wave])[0], abs=1e-6)
    assert ats.settings()["resampled_as"] == 32000
    julius = ats.encoder.encode_audio(resample(torch.from_numpy(wave)[None], 32000, 16000))
    assert value != pytest.approx(float((julius * text).sum()), abs=1e-9)  # the resampler is not julius


def test_score_with_ats_on_validation_reports_oracle_and_mixture(clap_files: dict[str, Path], demo_root: Path,
                                                                 estimates: dict[str, Path], tmp_path: Path) -> None:
    means = {}
    for system in ("mixture", "oracle"):
        args = ["score", "-d", str(demo_root / "validation"), "-e", str(estimates[system]), "-o",
                str(tmp_path / system), "--ats", "--ats-checkpoint", str(clap_files["laion"]),
                "--clap-config", str(clap_files["config"]), "--weight",
                f"roberta-base-tokenizer={clap_files['tokenizer']}", "--offline"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "ATS" in result.output
        summary = json.loads((tmp_path / system / "summary.json").read_text())
        assert summary["metrics"] == ["sdr", "sdri", "sisdr", "input_sdr", "ats"]
        assert summary["metric_settings"]["ats"]["mode"] == "resample"
        means[system] = summary["mean"]["ats"]
        header = (tmp_path / system / "per_clip.csv").read_text().splitlines()[0]
        assert header.endswith(",input_sdr,ats")
    assert means["mixture"] != means["oracle"]  # both reported; a random CLAP orders them arbitrarily
    assert all(-1 <= v <= 1 for v in means.values())


def test_evaluation_sets_are_scored_by_ats_alone(clap_files: dict[str, Path], demo_root: Path,
                                                 estimates: dict[str, Path], tmp_path: Path) -> None:
    report = api.score(demo_root / "eval-real", estimates["real"], tmp_path, progress=False,
                       ats=scorer(clap_files))
    assert report.metrics == ("ats",) and report.complete
    assert len(report.rows) == len(report.dataset.mixtures)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["mean"]) == {"ats"} and "by_input_snr" not in summary
    assert (tmp_path / "per_clip.csv").read_text().splitlines()[0] == "id,file,caption,ats"
    assert not (tmp_path / "sdri_vs_snr.png").exists()


def test_ats_on_a_benchmark_hears_its_32khz_estimates(clap_files: dict[str, Path], demo_root: Path,
                                                      tmp_path: Path) -> None:
    """AudioSep's benchmarks are 32 kHz: `score --ats` resamples 32 -> 48 kHz for CLAP, not 16 -> 48 kHz."""
    data = demo_root / "evaluation" / "data" / "esc50"
    api.infer("mixture", data, tmp_path / "est", progress=False)
    ats = scorer(clap_files)
    report = api.score(data, tmp_path / "est", progress=False, ats=ats)
    assert report.metric_settings["ats"]["input_rate"] == 32000 and ats.input_rate == 16000  # the caller's is kept
    assert "ats" in report.metrics and "sisdri" in report.metrics
    heard = ats.at_rate(32000)
    import soundfile as sf

    for row in report.rows:
        estimate, rate = sf.read(tmp_path / "est" / f"{row['id']}.wav", dtype="float32")
        assert rate == 32000
        assert row["ats"] == pytest.approx(heard.similarity([row["caption"]], [estimate])[0], abs=1e-6)
        assert row["ats"] != pytest.approx(ats.similarity([row["caption"]], [estimate])[0], abs=1e-4)


def test_a_clap_of_another_architecture_without_its_config_is_told_to_describe_it(clap_files: dict[str, Path]) -> None:
    """A laion file records no architecture: when its shapes are not the registry's CLAP, the refusal names the
    way to describe it (--clap-config), besides the keys that do not fit."""
    from dcase9.errors import CheckpointError

    with pytest.raises(CheckpointError, match=r"(?s)do not fit the model.*describe it: `dcase9 score --clap-config YAML`"):
        api.load_ats_scorer(checkpoint=clap_files["laion"], offline=True, device="cpu",
                            weights={"roberta-base-tokenizer": clap_files["tokenizer"]})
