"""Checkpoints of `dcase9 train` describe themselves: `dcase9 infer --checkpoint` and
`api.load_separator(checkpoint=...)` take their system options and tokenizer as defaults under what
the user passes; damaged entries are refused, older and foreign checkpoints load as before."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

from tests.test_train_run import TINY_RUN, train_args
from dcase9 import api
from dcase9.cli import app
from dcase9.data.demo import caption_pool
from dcase9.files import sha256_text
from dcase9.models.checkpoints import read_checkpoint
from dcase9.models.description import describe_checkpoint
from dcase9.models.tiny import write_tiny_roberta_tokenizer
from dcase9.outputs import MANIFEST_NAME

runner = CliRunner()
LIMIT = 2


@pytest.fixture(scope="module")
def trained(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny run of one step (non-official net and CLAP, the tiny tokenizer), its checkpoint's
    entry, and the estimates of `dcase9 infer` with nothing but `--system` and `--checkpoint`."""
    root = tmp_path_factory.mktemp("described")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_RUN))
    run = root / "run"
    result = runner.invoke(app, train_args(config, demo_root, run, "--steps", "1"))
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"dcase9 infer --system baseline --checkpoint {run / 'last.ckpt'} --data" in said
    assert "--system-config" not in said and "roberta-base-tokenizer" not in said
    assert not (run / "system-config.yaml").exists()
    estimates = root / "estimates"
    result = infer(run / "last.ckpt", demo_root, estimates)
    assert result.exit_code == 0, result.output
    return {"run": run, "checkpoint": run / "last.ckpt", "estimates": estimates, "root": root,
            "entry": read_checkpoint(run / "last.ckpt")["dcase9"]}


def infer(checkpoint: Path, demo_root: Path, out: Path, *extra: str, system: str = "baseline") -> Any:
    return runner.invoke(app, ["infer", "--system", system, "--checkpoint", str(checkpoint), "--offline",
                               "--data", str(demo_root / "validation"), "--out", str(out), "--limit", str(LIMIT),
                               *extra])


def audio(folder: Path) -> dict[str, np.ndarray]:
    found = {path.name: sf.read(path, dtype="float32")[0] for path in sorted(folder.glob("*.wav"))}
    assert len(found) == LIMIT
    return found


def assert_same(a: Path, b: Path) -> None:
    first, second = audio(a), audio(b)
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def rewritten(source: Path, target: Path, change: Any) -> Path:
    """A copy of the checkpoint at `source` with its `dcase9` entry changed by `change(entry)`."""
    checkpoint = dict(torch.load(source, map_location="cpu", weights_only=True))
    change(checkpoint)
    torch.save(checkpoint, target)
    return target


def settings_file(trained: dict[str, Any], name: str = "settings.yaml") -> Path:
    """What `--system-config` carried before checkpoints described themselves."""
    path = trained["root"] / name
    path.write_text(yaml.safe_dump(trained["entry"]["system_options"]))
    return path


def test_the_checkpoint_alone_gives_the_estimates_of_the_settings_given_separately(
        trained: dict[str, Any], demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = trained["entry"]
    assert entry["format"] == 2 and entry["system"] == "baseline"
    assert entry["system_options"]["channels"] == [4, 8] and "clap" in entry["system_options"]
    assert entry["tokenizer_files"]["vocab.json"] == (trained["run"] / "tokenizer" / "vocab.json").read_text()

    # The same net and tokenizer given the old way, with a settings file and the tokenizer's folder.
    separately = tmp_path / "separately"
    result = infer(trained["checkpoint"], demo_root, separately, "--system-config", str(settings_file(trained)),
                   "--weight", f"roberta-base-tokenizer={trained['run'] / 'tokenizer'}")
    assert result.exit_code == 0, result.output
    assert_same(trained["estimates"], separately)

    # The embedded tokenizer's identity is its files' sha256, so a second run resumes; its temporary
    # folder is gone once the model is loaded.
    manifest = json.loads((trained["estimates"] / MANIFEST_NAME).read_text())
    digest = sha256_text(json.dumps(entry["tokenizer_files"], sort_keys=True))
    assert manifest["identity"]["weights"]["roberta-base-tokenizer"] == digest
    origin = f"{trained['checkpoint']} (dcase9.tokenizer_files)"
    assert manifest["settings"]["weights"]["roberta-base-tokenizer"] == origin
    assert manifest["identity"]["options"]["channels"] == [4, 8]
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    result = infer(trained["checkpoint"], demo_root, trained["estimates"])
    assert result.exit_code == 0, result.output
    assert f"wrote 0 estimate(s) to {trained['estimates']} ({LIMIT} already there)" in " ".join(result.output.split())
    assert list(temporary.iterdir()) == []

    # The Python API reads the same entry: equal estimates in memory.
    separator = api.load_separator("baseline", checkpoint=trained["checkpoint"], device="cpu", offline=True,
                                   progress=False)
    assert separator.identity["options"] == manifest["identity"]["options"] and list(temporary.iterdir()) == []
    mixture = 0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    estimate = separator.separate(mixture, "a dog barks", sample_rate=16000)
    again = api.load_separator("baseline", checkpoint=trained["checkpoint"], device="cpu", offline=True,
                               progress=False, system_options=trained["entry"]["system_options"],
                               weights={"roberta-base-tokenizer": trained["run"] / "tokenizer"})
    np.testing.assert_array_equal(estimate, again.separate(mixture, "a dog barks", sample_rate=16000))


def test_what_the_user_passes_beats_what_the_checkpoint_says(trained: dict[str, Any], demo_root: Path,
                                                            tmp_path: Path) -> None:
    # Options key by key: hop_length from the user, everything else (n_fft, channels, clap) from the checkpoint.
    separator = api.load_separator("baseline", checkpoint=trained["checkpoint"], system_options={"hop_length": 32},
                                   device="cpu", offline=True, progress=False)
    options = separator.identity["options"]
    assert options["hop_length"] == 32 and options["n_fft"] == 128 and options["channels"] == [4, 8]
    assert options["clap"] == trained["entry"]["system_options"]["clap"]
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"hop_length": 32}))
    result = infer(trained["checkpoint"], demo_root, tmp_path / "hop", "--system-config", str(override))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "hop" / MANIFEST_NAME).read_text())["identity"]["options"] == options
    assert any(not np.array_equal(a, b) for a, b in zip(audio(trained["estimates"]).values(),
                                                         audio(tmp_path / "hop").values(), strict=True))

    # A tokenizer given with --weight replaces the one the checkpoint carries: one too large for its
    # text tower is refused, naming the checkpoint; another of the same size is used.
    large = write_tiny_roberta_tokenizer(tmp_path / "words", words_of=caption_pool())
    result = infer(trained["checkpoint"], demo_root, tmp_path / "large", "--weight", f"roberta-base-tokenizer={large}")
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and f"{trained['checkpoint']} (query_encoder.model.*): its CLAP text tower" in output
    other = tmp_path / "other"
    shutil.copytree(trained["run"] / "tokenizer", other)
    vocabulary = json.loads((other / "vocab.json").read_text())
    a, b = sorted(token for token in vocabulary if token.isalpha())[:2]  # two letters swap their ids
    vocabulary[a], vocabulary[b] = vocabulary[b], vocabulary[a]
    (other / "vocab.json").write_text(json.dumps(vocabulary))
    result = infer(trained["checkpoint"], demo_root, tmp_path / "tok", "--weight", f"roberta-base-tokenizer={other}")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "tok" / MANIFEST_NAME).read_text())
    assert manifest["identity"]["weights"]["roberta-base-tokenizer"] == str(other)
    assert any(not np.array_equal(a, b) for a, b in zip(audio(trained["estimates"]).values(),
                                                         audio(tmp_path / "tok").values(), strict=True))


def test_the_system_it_was_trained_for(trained: dict[str, Any], demo_root: Path, tmp_path: Path) -> None:
    # System 1 builds the baseline's model at its rate: the checkpoint loads as it.
    result = infer(trained["checkpoint"], demo_root, tmp_path / "one", system="1")
    assert result.exit_code == 0, result.output
    assert_same(trained["estimates"], tmp_path / "one")
    # System 2 runs at 32 kHz and System 3 is another model: refused, naming both.
    for system in ("2", "3"):
        result = infer(trained["checkpoint"], demo_root, tmp_path / system, system=system)
        said = " ".join(result.output.split())
        assert result.exit_code == 2 and "Traceback" not in said, said
        assert str(trained["checkpoint"]) in said and "trained for system 'baseline'" in said, said
        assert "--system baseline" in said
        assert not list((tmp_path / system).glob("*.wav"))


@pytest.mark.parametrize(("change", "said"), [
    (lambda c: c.update(dcase9="baseline"), "not a mapping"),
    (lambda c: c["dcase9"].update(system_options=["n_fft", 128]), "system_options is not a mapping"),
    (lambda c: c["dcase9"].update(tokenizer_files={"../../.bashrc": "x"}), "tokenizer_files holds ../../.bashrc"),
    (lambda c: c["dcase9"]["tokenizer_files"].pop("merges.txt"), "tokenizer_files lacks merges.txt"),
    (lambda c: c["dcase9"].update(system=3), "system is not a name"),
    (lambda c: c["dcase9"].update(format=99), "written by a newer dcase9"),
])
def test_a_damaged_entry_is_refused_naming_the_file(trained: dict[str, Any], demo_root: Path, tmp_path: Path,
                                                   change: Any, said: str) -> None:
    damaged = rewritten(trained["checkpoint"], tmp_path / "damaged.ckpt", change)
    result = infer(damaged, demo_root, tmp_path / "out")
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in output, output
    assert str(damaged) in output and said in output, output


def test_a_format_1_checkpoint_loads_with_its_tokenizer_given(trained: dict[str, Any], demo_root: Path,
                                                             tmp_path: Path) -> None:
    """Format 1 stored the net's options and the run's configuration, not the CLAP settings or the tokenizer."""
    def as_format_1(checkpoint: dict[str, Any]) -> None:
        entry = checkpoint["dcase9"]
        entry["format"] = 1
        del entry["tokenizer_files"], entry["system_options"]["clap"]

    old = rewritten(trained["checkpoint"], tmp_path / "format1.ckpt", as_format_1)
    described = describe_checkpoint(read_checkpoint(old), str(old))
    assert described is not None and described.options == trained["entry"]["system_options"]
    tokenizer = trained["run"] / "tokenizer"
    result = infer(old, demo_root, tmp_path / "est", "--weight", f"roberta-base-tokenizer={tokenizer}")
    assert result.exit_code == 0, result.output
    assert_same(trained["estimates"], tmp_path / "est")


def test_a_checkpoint_made_elsewhere_loads_as_before(trained: dict[str, Any], demo_root: Path, tmp_path: Path) -> None:
    foreign = rewritten(trained["checkpoint"], tmp_path / "foreign.ckpt", lambda c: c.pop("dcase9"))
    assert describe_checkpoint(read_checkpoint(foreign), str(foreign)) is None
    result = infer(foreign, demo_root, tmp_path / "est", "--system-config", str(settings_file(trained)),
                   "--weight", f"roberta-base-tokenizer={trained['run'] / 'tokenizer'}")
    assert result.exit_code == 0, result.output
    assert_same(trained["estimates"], tmp_path / "est")
    # Without the settings it is the official net: the weights do not fit, and the error says so.
    result = infer(foreign, demo_root, tmp_path / "none", "--weight",
                   f"roberta-base-tokenizer={trained['run'] / 'tokenizer'}")
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and f"{foreign}: state dict (ss_model.*): the weights do not fit the model" in output, output
