"""The command line end to end on the demo data: demo-data -> validate -> mix -> infer -> score."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from dcase9.cli import app
from dcase9.data.demo import SOUND_CLASSES, make_validation

runner = CliRunner()


def test_pipeline_end_to_end(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo-data", str(tmp_path / "demo"), "--clips-per-class", "1",
                                 "--train-clips-per-class", "1"])
    assert result.exit_code == 0, result.output
    data = tmp_path / "demo" / "validation"
    assert runner.invoke(app, ["validate", str(data)]).exit_code == 0

    result = runner.invoke(app, ["mix", str(data), "--out", str(tmp_path / "mixed")])
    assert result.exit_code == 0, result.output
    index = (tmp_path / "mixed" / "mixtures.csv").read_text().splitlines()
    assert index[0] == "id,mixture,reference,source,noise,snr,caption" and len(index) == 1 + 24

    for system in ("mixture", "oracle"):
        result = runner.invoke(app, ["infer", "--system", system, "--data", str(data), "--out",
                                     str(tmp_path / system), "--batch-size", "4"])
        assert result.exit_code == 0, result.output
        assert "wrote 24 estimate(s)" in result.output
        result = runner.invoke(app, ["score", "-d", str(data), "-e", str(tmp_path / system), "-o",
                                     str(tmp_path / f"report-{system}")])
        assert result.exit_code == 0, result.output
        assert "SDRi" in result.output
    mixture = json.loads((tmp_path / "report-mixture" / "summary.json").read_text())
    oracle = json.loads((tmp_path / "report-oracle" / "summary.json").read_text())
    assert mixture["mean"]["sdri"] == 0.0 and oracle["mean"]["sdri"] > 10

    # The mixtures written by `mix` are the ones `infer --system mixture` returns.
    some_id = index[1].split(",")[0]
    a, _ = sf.read(tmp_path / "mixed" / "mixtures" / f"{some_id}.wav", dtype="float32")
    b, _ = sf.read(tmp_path / "mixture" / f"{some_id}.wav", dtype="float32")
    np.testing.assert_array_equal(a, b)

    # A re-run resumes: nothing left to do.
    result = runner.invoke(app, ["infer", "-s", "mixture", "-d", str(data), "-o", str(tmp_path / "mixture")])
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "wrote 0 estimate(s)" in text and "24 already there" in text


def test_errors_are_short_messages_with_exit_code_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["infer", "-s", "nope", "-d", str(tmp_path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "unknown system 'nope'" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["score", "-d", str(tmp_path / "missing"), "-e", str(tmp_path)])
    assert result.exit_code == 2 and "no such file or folder" in result.output
    make_validation(tmp_path / "data", clips_per_class=1)
    result = runner.invoke(app, ["infer", "-s", "mixture", "-d", str(tmp_path / "data"), "-o", str(tmp_path / "o"),
                                 "--resampler", "sinc"])
    assert result.exit_code == 2 and "unknown resampler 'sinc' (use soxr or julius)" in result.output
    assert not (tmp_path / "o").exists()  # refused before anything was loaded or written


def test_systems_lists_the_registry() -> None:
    result = runner.invoke(app, ["systems"])
    assert result.exit_code == 0
    assert "mixture" in result.output and "oracle" in result.output


def test_demo_data_is_deterministic(tmp_path: Path) -> None:
    def digest(folder: Path) -> str:
        h = hashlib.sha256()
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                h.update(path.name.encode() + path.read_bytes())
        return h.hexdigest()

    make_validation(tmp_path / "a", clips_per_class=1, seed=3)
    make_validation(tmp_path / "b", clips_per_class=1, seed=3)
    make_validation(tmp_path / "c", clips_per_class=1, seed=4)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")
    clips = sorted((tmp_path / "a" / "lass_validation").glob("*.wav"))
    assert len(clips) == len(SOUND_CLASSES)
    for clip in clips:
        info = sf.info(clip)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 160000, "PCM_16")
    header = (tmp_path / "a" / "lass_synthetic_validation.csv").read_text().splitlines()[0]
    assert header == "source, noise, snr, caption"  # the official header, spaces included


def test_version_and_env_come_from_the_installed_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    installed = metadata.version("dcase9")
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"dcase9 {installed}"
    (tmp_path / "weights" / "baseline").mkdir(parents=True)
    (tmp_path / "weights" / "baseline" / "x.ckpt").write_bytes(b"0" * 1500)
    monkeypatch.setenv("DCASE9_HOME", str(tmp_path))
    result = runner.invoke(app, ["env", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["dcase9"] == installed and report["packages"]["torch"] == metadata.version("torch")
    assert report["caches"][0]["entries"] == {"baseline": 1500} and report["variables"]["DCASE9_HOME"] == str(tmp_path)
    assert report["devices"]["cuda"] in (True, False) and "mps" in report["devices"]
    monkeypatch.setenv("DCASE9_HOME", "/etc/passwd")  # reported, not a crash of the report itself
    result = runner.invoke(app, ["env"])
    assert result.exit_code == 0 and "is a file, not a folder" in " ".join(result.output.split())


def test_progress_is_plain_lines_when_the_output_is_not_a_terminal() -> None:
    """A bar redirected to a file was thousands of redraws; there it is a line per tenth of the way."""
    import io

    from rich.console import Console

    from dcase9.progress import PlainProgress, progress_bar

    stream = io.StringIO()
    bar = progress_bar("clips", console=Console(file=stream))
    assert isinstance(bar, PlainProgress)
    with bar:
        task = bar.add_task("separating", total=1000)
        for _ in range(1000):
            bar.update(task, advance=1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("separating: 1000/1000, ") and "\r" not in stream.getvalue()


def test_one_auto_device_rule_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA, then MPS, then the CPU: for separation, caption augmentation and BERTScore alike."""
    import torch

    from dcase9.augment.backends import _pick_device
    from dcase9.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto").type == "mps" and _pick_device("auto") == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu" and _pick_device("auto") == "cpu"
    with pytest.raises(Exception, match="MPS is not available"):
        resolve_device("mps")
