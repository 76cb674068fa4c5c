"""`dcase9 export` and loading exports: a folder (or `hf://owner/name`) separates exactly as the checkpoint it
came from, for the baseline's official Lightning layout, System 3's mask net and the demo model; it loads
without unpickling and without the training extra; damage, missing or mis-shaped tensors are named; the
Hub side (`--push-to-hub`, `--dry-run`, `hf://...`) runs against an in-memory Hub (tests/hub_support.py)."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

from tests.hub_support import TOKEN, FakeHub
from tests.tiny_models import TINY_CLAP, tiny_clap_laion_weights, tokenizer_folder, trained_like_batch_norms
from dcase9 import api
from dcase9.cli import app
from dcase9.errors import CheckpointError
from dcase9.models.exported import read_export_config

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
SMALL_NET = {"n_fft": 128, "hop_length": 64, "channels": [4, 8], "pools": [[2, 2], [2, 2]]}
CLAP = "clap-music-speech-audioset"
TOKENIZER = "roberta-base-tokenizer"


def official_checkpoint(path: Path, clap: dict[str, torch.Tensor] | None = None) -> Path:
    """The baseline's official Lightning layout (`ss_model.*` with the fixed STFT tensors,
    `query_encoder.model.*` in laion naming, no `dcase9` entry), on a small net and the tiny CLAP."""
    from dcase9.models.resunet import ResUNet30

    torch.manual_seed(3)
    net = trained_like_batch_norms(ResUNet30(n_fft=SMALL_NET["n_fft"], hop_length=SMALL_NET["hop_length"],
                                             channels=SMALL_NET["channels"], pools=SMALL_NET["pools"]))
    bins, n_fft = SMALL_NET["n_fft"] // 2 + 1, SMALL_NET["n_fft"]
    state = {f"ss_model.{k}": v for k, v in net.state_dict().items()}
    state.update({"ss_model.base.stft.conv_real.weight": torch.randn(bins, 1, n_fft),
                  "ss_model.base.istft.ola_window": torch.hann_window(n_fft)})
    state.update({f"query_encoder.model.{k}": v for k, v in (clap or tiny_clap_laion_weights()).items()})
    torch.save({"epoch": 3, "global_step": 1234, "pytorch-lightning_version": "2.0.0", "state_dict": state,
                "optimizer_states": [{"state": {0: {"exp_avg": torch.ones(3)}}}], "loops": {}}, path)
    return path


def stock_clap_file(path: Path, clap: dict[str, torch.Tensor]) -> Path:
    """A laion CLAP file as laion publishes it ({'state_dict': {'module.' + key: ...}})."""
    torch.save({"epoch": 15, "state_dict": {f"module.{k}": v for k, v in clap.items()}}, path)
    return path


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export-parts")
    settings = root / "settings.yaml"
    settings.write_text(yaml.safe_dump({**SMALL_NET, "clap": dict(TINY_CLAP)}))
    return {"root": root, "checkpoint": official_checkpoint(root / "official.ckpt"), "settings": settings,
            "tokenizer": tokenizer_folder(root / "tokenizer")}


def export(source: Path, out: Path, *extra: str) -> Any:
    return runner.invoke(app, ["export", str(source), "--out", str(out), "--offline", *extra])


def mixture(seconds: float = 1.0) -> np.ndarray:
    return (0.1 * np.random.default_rng(7).standard_normal(int(16000 * seconds))).astype(np.float32)


def separated(checkpoint: Any, system: str = "baseline", **kwargs: Any) -> np.ndarray:
    separator = api.load_separator(system, checkpoint=checkpoint, device="cpu", offline=True, progress=False, **kwargs)
    return separator.separate(mixture(), "a dog barks", sample_rate=16000)


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def baseline_export(parts: dict[str, Path]) -> Path:
    out = parts["root"] / "export"
    result = export(parts["checkpoint"], out, "--system", "baseline", "--system-config", str(parts["settings"]),
                    "--weight", f"{TOKENIZER}={parts['tokenizer']}")
    assert result.exit_code == 0, result.output
    said = flat(result.output)
    assert "query encoder: in the folder" in said and "tokenizer: in the folder" in said
    assert "note:" not in said  # the tiny CLAP is not the registry's architecture: nothing to compare
    return out


def test_the_official_layout_exports_and_separates_sample_for_sample(parts: dict[str, Path],
                                                                      baseline_export: Path) -> None:
    from safetensors.torch import load_file

    out = baseline_export
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "README.md", "checksums.sha256", "config.json", "model.safetensors", "tokenizer/merges.txt",
        "tokenizer/tokenizer_config.json", "tokenizer/vocab.json"]
    # sha256sum's format, every file but itself.
    listed = dict(reversed(line.split("  ", 1)) for line in (out / "checksums.sha256").read_text().splitlines())
    assert set(listed) == {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"checksums.sha256"}
    for name, digest in listed.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
    # What inference needs: the weights, not the optimizer state nor the fixed STFT tensors; values as they were.
    original = torch.load(parts["checkpoint"], weights_only=True)["state_dict"]
    tensors = load_file(out / "model.safetensors")
    assert set(tensors) == {k for k in original if not k.startswith(("ss_model.base.stft.", "ss_model.base.istft."))}
    assert all(torch.equal(tensors[k], original[k]) and tensors[k].dtype == original[k].dtype for k in tensors)
    config = json.loads((out / "config.json").read_text())
    assert config["system"] == "baseline" and config["export_format"] == 1 and config["dcase9_version"]
    assert config["description"]["system_options"] == {**SMALL_NET, "clap": dict(TINY_CLAP)}
    assert config["query_encoder"] == {"weight": None, "sha256": None}
    assert config["tokenizer"]["weight"] is None and "vocab.json" in config["tokenizer"]["files"]
    assert config["source"]["global_step"] == 1234
    assert config["source"]["sha256"] == hashlib.sha256(parts["checkpoint"].read_bytes()).hexdigest()

    # The export alone separates as the checkpoint with its settings and tokenizer given by hand.
    options = yaml.safe_load(parts["settings"].read_text())
    expected = separated(parts["checkpoint"], system_options=options, weights={TOKENIZER: parts["tokenizer"]})
    np.testing.assert_array_equal(separated(out), expected)
    np.testing.assert_array_equal(separated(str(out)), expected)


def test_infer_takes_an_export_folder_and_writes_the_estimates_of_the_checkpoint(
        parts: dict[str, Path], baseline_export: Path, demo_root: Path, tmp_path: Path) -> None:
    common = ["--data", str(demo_root / "validation"), "--limit", "2", "--offline", "--system", "baseline"]
    by_hand = runner.invoke(app, ["infer", *common, "--out", str(tmp_path / "a"), "--checkpoint", str(parts["checkpoint"]),
                                  "--system-config", str(parts["settings"]), "--weight",
                                  f"{TOKENIZER}={parts['tokenizer']}"])
    assert by_hand.exit_code == 0, by_hand.output
    exported = runner.invoke(app, ["infer", *common, "--out", str(tmp_path / "b"), "--checkpoint", str(baseline_export)])
    assert exported.exit_code == 0, exported.output
    for path in sorted((tmp_path / "a").glob("*.wav")):
        np.testing.assert_array_equal(sf.read(path)[0], sf.read(tmp_path / "b" / path.name)[0])
    manifest = json.loads((tmp_path / "b" / "dcase9-run.json").read_text())
    # The folder is identified by its checksums (which name every file's sum), so a changed export is another run.
    digest = hashlib.sha256((baseline_export / "checksums.sha256").read_bytes()).hexdigest()
    assert manifest["identity"]["weights"]["baseline-checkpoint"] == digest


def test_loading_an_export_never_unpickles(baseline_export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an export was unpickled")

    expected = separated(baseline_export)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    np.testing.assert_array_equal(separated(baseline_export), expected)


def test_an_export_loads_in_a_process_without_the_training_extra(baseline_export: Path, tmp_path: Path) -> None:
    script = f"""
import sys
for name in ("lightning", "pytorch_lightning", "lightning_fabric"):
    sys.modules[name] = None  # importing them fails, as where dcase9[train] is not installed
import numpy as np
from dcase9 import api
separator = api.load_separator("baseline", checkpoint={str(baseline_export)!r}, device="cpu", offline=True,
                               progress=False)
mixture = (0.1 * np.random.default_rng(7).standard_normal(16000)).astype(np.float32)
np.save({str(tmp_path / "out.npy")!r}, separator.separate(mixture, "a dog barks", sample_rate=16000))
assert not any(name.startswith(("lightning", "pytorch_lightning")) and sys.modules[name] is not None
               for name in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), separated(baseline_export))


def copied(export: Path, target: Path) -> Path:
    return Path(shutil.copytree(export, target))


def rewrite_weights(folder: Path, change: Any) -> None:
    """Change the tensors of an export and list the new file's sum, as a tampering tool would."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors")
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    lines = [f"{digest}  model.safetensors" if line.endswith("  model.safetensors") else line
             for line in (folder / "checksums.sha256").read_text().splitlines()]
    (folder / "checksums.sha256").write_text("\n".join(lines) + "\n")


def test_damaged_or_unfitting_exports_are_refused_naming_what(baseline_export: Path, tmp_path: Path) -> None:
    changed = copied(baseline_export, tmp_path / "changed")
    data = bytearray((changed / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (changed / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model.safetensors: sha256 .* is not the .* that checksums.sha256 lists"):
        separated(changed)
    missing = copied(baseline_export, tmp_path / "missing")
    (missing / "tokenizer" / "vocab.json").unlink()
    with pytest.raises(CheckpointError, match=r"tokenizer/vocab.json: missing \(checksums.sha256 lists it\)"):
        separated(missing)
    escaping = copied(baseline_export, tmp_path / "escaping")
    with open(escaping / "checksums.sha256", "a") as fh:
        fh.write(f"{'0' * 64}  ../outside.txt\n")
    with pytest.raises(CheckpointError, match=r"checksums.sha256, row 7: expected '<sha256>  <file in this folder>'"):
        separated(escaping)

    # Tensors missing, unexpected or mis-shaped are named, as for checkpoint files.
    short = copied(baseline_export, tmp_path / "short")
    rewrite_weights(short, lambda t: t.pop("ss_model.base.bn0.weight"))
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\): base.bn0.weight"):
        separated(short)
    extra = copied(baseline_export, tmp_path / "extra")
    rewrite_weights(extra, lambda t: t.update({"ss_model.base.surprise": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\): base.surprise"):
        separated(extra)
    shapes = copied(baseline_export, tmp_path / "shapes")
    rewrite_weights(shapes, lambda t: t.update({"ss_model.base.bn0.weight": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"1 mis-shaped key\(s\): base.bn0.weight: checkpoint \(3,\)"):
        separated(shapes)

    newer = copied(baseline_export, tmp_path / "newer")
    config = json.loads((newer / "config.json").read_text())
    config["export_format"] = 99
    (newer / "config.json").write_text(json.dumps(config))
    rewrite_weights(newer, lambda t: None)  # the listing names the old config.json's sum: list the new one
    lines = [f"{hashlib.sha256((newer / 'config.json').read_bytes()).hexdigest()}  config.json"
             if line.endswith("  config.json") else line for line in (newer / "checksums.sha256").read_text().splitlines()]
    (newer / "checksums.sha256").write_text("\n".join(lines) + "\n")
    with pytest.raises(CheckpointError, match="written by a newer dcase9 \\(export format 99"):
        separated(newer)
    with pytest.raises(CheckpointError, match=r"tokenizer is a folder, not a checkpoint file; a folder of `dcase9 "
                                              r"export` holds .* \(this one lacks config.json, checksums.sha256, "
                                              r"model.safetensors\)"):
        separated(tmp_path / "short" / "tokenizer")


def test_a_query_encoder_equal_to_the_stock_clap_is_referred_to_not_copied(parts: dict[str, Path],
                                                                            tmp_path: Path) -> None:
    from safetensors.torch import load_file

    stock = stock_clap_file(tmp_path / "stock.pt", tiny_clap_laion_weights())
    out = tmp_path / "export"
    result = export(parts["checkpoint"], out, "--system", "baseline", "--system-config", str(parts["settings"]),
                    "--weight", f"{TOKENIZER}={parts['tokenizer']}", "--weight", f"{CLAP}={stock}")
    assert result.exit_code == 0, result.output
    assert f"query encoder: the registry's {CLAP}" in flat(result.output)
    assert not any(k.startswith("query_encoder.") for k in load_file(out / "model.safetensors"))
    config = read_export_config(out)
    assert config.query_encoder.weight == CLAP
    assert config.query_encoder.sha256 == hashlib.sha256(stock.read_bytes()).hexdigest()
    assert f"the query encoder is the registry's `{CLAP}`" in (out / "README.md").read_text()

    options = yaml.safe_load(parts["settings"].read_text())
    expected = separated(parts["checkpoint"], system_options=options, weights={TOKENIZER: parts["tokenizer"]})
    np.testing.assert_array_equal(separated(out, weights={CLAP: stock}), expected)
    # Another file under the registry's name is refused: its tensors are not the ones compared.
    other = stock_clap_file(tmp_path / "other.pt", tiny_clap_laion_weights(seed=1))
    with pytest.raises(CheckpointError, match=f"its query encoder is the registry's '{CLAP}' with sha256"):
        separated(out, weights={CLAP: other})
    # Exported again (a new card, say), it still refers to the same file.
    again = export(out, tmp_path / "again", "--license", "mit")
    assert again.exit_code == 0, again.output
    assert read_export_config(tmp_path / "again").query_encoder == config.query_encoder
    # ATS takes the export too: the registry's CLAP it refers to.
    scorer = api.load_ats_scorer(checkpoint=out, weights={CLAP: stock, TOKENIZER: parts["tokenizer"]},
                                 clap=dict(TINY_CLAP), offline=True, device="cpu", progress=False)
    direct = api.load_ats_scorer(checkpoint=stock, weights={TOKENIZER: parts["tokenizer"]}, clap=dict(TINY_CLAP),
                                 offline=True, device="cpu", progress=False)
    queries = ["a dog barks"]
    assert torch.equal(scorer.encoder.encode_text(queries), direct.encoder.encode_text(queries))


def test_without_the_stock_clap_at_hand_the_query_encoder_is_included_and_said(parts: dict[str, Path],
                                                                               tmp_path: Path) -> None:
    """Settings of the official CLAP architecture (none given), offline, nothing cached: the query encoder
    cannot be compared with the registry's, so it is included, and the note says how to compare it."""
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump(SMALL_NET))
    result = export(parts["checkpoint"], tmp_path / "export", "--system", "baseline", "--system-config", str(settings))
    assert result.exit_code == 0, result.output
    said = flat(result.output)
    assert "query encoder: in the folder" in said and "tokenizer: the registry's roberta-base-tokenizer" in said
    assert "note: the query encoder is included" in said and f"--weight {CLAP}=FILE, or export online" in said
    assert read_export_config(tmp_path / "export").tokenizer.weight == TOKENIZER


def test_system3_mask_net_round_trip(parts: dict[str, Path], tmp_path: Path) -> None:
    from tests.tiny_audioldm import TINY_MASK_NET, write_system3_checkpoint, write_tiny_vae, write_tiny_vocoder

    pytest.importorskip("diffusers")
    checkpoint = write_system3_checkpoint(tmp_path / "system3.ckpt")
    settings = tmp_path / "system3.yaml"
    settings.write_text(yaml.safe_dump({"mask_net": TINY_MASK_NET, "clap": dict(TINY_CLAP)}))
    codec = {"audioldm-vae": write_tiny_vae(tmp_path / "vae"), "audioldm-vocoder": write_tiny_vocoder(tmp_path / "voc")}
    result = export(checkpoint, tmp_path / "export", "--system", "3", "--system-config", str(settings),
                    "--weight", f"{TOKENIZER}={parts['tokenizer']}")
    assert result.exit_code == 0, result.output
    card = (tmp_path / "export" / "README.md").read_text()
    assert "the system also loads `audioldm-vae`, `audioldm-vocoder`" in flat(card)
    expected = separated(checkpoint, system="3", system_options=yaml.safe_load(settings.read_text()),
                         weights={**codec, TOKENIZER: parts["tokenizer"]})
    np.testing.assert_array_equal(separated(tmp_path / "export", system="3", weights=codec), expected)
    # An export loads only as the system it was made for (as a dcase9 checkpoint does).
    with pytest.raises(Exception, match="trained for system '3'"):
        separated(tmp_path / "export", system="baseline")


@pytest.fixture(scope="module")
def demo_run(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo model (small, 2 steps), its estimates of 2 validation mixtures and their score report."""
    from tests.test_train_demo import small_demo_model
    from dcase9.demo import train_demo_model

    root = tmp_path_factory.mktemp("demo-export")
    run = root / "model"
    train_demo_model(demo_root / "train" / "train.json", run, progress=False, overrides=[small_demo_model()])
    estimates, report = root / "estimates", root / "report"
    done = runner.invoke(app, ["infer", "--system", "baseline", "--checkpoint", str(run / "last.ckpt"), "--offline",
                               "--data", str(demo_root / "validation"), "--out", str(estimates), "--limit", "2"])
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["score", "--data", str(demo_root / "validation"), "--estimates", str(estimates),
                               "--out", str(report), "--device", "cpu"])
    assert done.exit_code == 1, done.output  # the other mixtures have no estimate: scored as given
    return {"run": run, "estimates": estimates, "report": report, "root": root}


def test_the_demo_model_exports_with_its_card_and_separates_as_its_checkpoint(demo_run: dict[str, Path],
                                                                              demo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    result = export(demo_run["run"], out, "--report", str(demo_run["report"]), "--license", "mit",
                    "--dataset", "me/demo-clips")
    assert result.exit_code == 0, result.output
    assert "note:" not in result.output  # the report's estimates are this checkpoint's; the run's summary is there
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "dcase9" and front["license"] == "mit" and front["datasets"] == ["me/demo-clips"]
    assert "source-separation" in front["tags"]
    text = flat(card)
    assert "Training data: `train.json`" in text and "Steps: 2 of 2 (finished)" in text and "Seed: 0" in text
    summary = json.loads((demo_run["report"] / "summary.json").read_text())
    assert f"| validation set (validation, {summary['dataset']['mixtures']} mixtures) | 2 |" in text
    assert f"{summary['mean']['sdri']:.3f}" in text and "SDRi (dB)" in text
    assert f"dcase9 infer --system baseline --checkpoint {out}" in text
    assert str(demo_root) not in card  # names of data files, not where they sit on the exporter's disk

    estimates = tmp_path / "estimates"
    done = runner.invoke(app, ["infer", "--system", "baseline", "--checkpoint", str(out), "--offline", "--data",
                               str(demo_root / "validation"), "--out", str(estimates), "--limit", "2"])
    assert done.exit_code == 0, done.output
    for path in sorted(demo_run["estimates"].glob("*.wav")):
        np.testing.assert_array_equal(sf.read(path)[0], sf.read(estimates / path.name)[0])

    # A run can start from an export (`train --init DIR`).
    from tests.test_train_run import TINY_RUN

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY_RUN, "validation": {"data": None}}))
    done = runner.invoke(app, ["train", "--preset", "demo", "--config", str(config), "--data",
                               str(demo_root / "train" / "train.json"), "--out", str(tmp_path / "again"),
                               "--init", str(out), "--steps", "1", "--offline"])
    assert done.exit_code == 0, done.output


def test_a_report_of_other_estimates_is_noted(demo_run: dict[str, Path], parts: dict[str, Path],
                                              tmp_path: Path) -> None:
    result = export(parts["checkpoint"], tmp_path / "export", "--system", "baseline", "--system-config",
                    str(parts["settings"]), "--weight", f"{TOKENIZER}={parts['tokenizer']}",
                    "--report", str(demo_run["report"]))
    assert result.exit_code == 0, result.output
    assert "its estimates were made with baseline-checkpoint" in flat(result.output)


def test_push_to_the_hub_and_load_it_back_by_name(baseline_export: Path, parts: dict[str, Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    hub = FakeHub(tmp_path / "hub", monkeypatch)
    out = tmp_path / "export"
    common = [str(parts["checkpoint"]), "--out", str(out), "--offline", "--system", "baseline", "--system-config",
              str(parts["settings"]), "--weight", f"{TOKENIZER}={parts['tokenizer']}", "--push-to-hub", "me/tiny"]
    dry = runner.invoke(app, ["export", *common, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would upload to https://huggingface.co/me/tiny (dry run: nothing uploaded)" in flat(dry.output)
    assert "model.safetensors" in dry.output and "checksums.sha256" in dry.output and hub.uploads == []
    pushed = runner.invoke(app, ["export", *common])
    assert pushed.exit_code == 0, pushed.output
    assert "uploaded 7 files to https://huggingface.co/me/tiny" in flat(pushed.output)
    assert "--checkpoint hf://me/tiny" in flat(pushed.output)
    upload = hub.uploads[-1]
    assert upload["repo"] == "me/tiny" and "model.safetensors" in upload["files"]
    assert "tokenizer/*" in upload["delete_patterns"]  # what an earlier export left, and nothing else of the repository
    assert "dcase9 infer --system baseline --checkpoint hf://me/tiny" in (out / "README.md").read_text()
    everything = pushed.output + dry.output + "".join(p.read_text(errors="ignore") for p in out.rglob("*") if p.is_file())
    assert TOKEN not in everything

    expected = separated(baseline_export)
    np.testing.assert_array_equal(separated_online("hf://me/tiny"), expected)
    np.testing.assert_array_equal(separated("hf://me/tiny"), expected)  # offline: from the Hugging Face cache
    commit = hub.main[("model", "me/tiny")]
    np.testing.assert_array_equal(separated(f"hf://me/tiny@{commit}"), expected)
    with pytest.raises(CheckpointError, match="hf://me/other is not in the Hugging Face cache"):
        separated("hf://me/other")


def separated_online(checkpoint: str) -> np.ndarray:
    separator = api.load_separator("baseline", checkpoint=checkpoint, device="cpu", progress=False)
    return separator.separate(mixture(), "a dog barks", sample_rate=16000)


def test_hub_exports_are_checked_against_the_hub(baseline_export: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    hub = FakeHub(tmp_path / "hub", monkeypatch)
    files = {p.relative_to(baseline_export).as_posix(): p.read_bytes() for p in baseline_export.rglob("*") if p.is_file()}
    hub.add("me/tiny", files)
    hub.damage("me/tiny", "model.safetensors", files["model.safetensors"][:-1] + b"!")
    with pytest.raises(CheckpointError, match="model.safetensors: its sha256 \\(LFS\\) .* the Hugging Face Hub reports"):
        separated_online("hf://me/tiny")
    hub.damaged.clear()
    shutil.rmtree(hub.cache)
    np.testing.assert_array_equal(separated_online("hf://me/tiny"), separated(baseline_export))
    with pytest.raises(Exception, match="'hf://me' is not a Hugging Face model: write hf://owner/name"):
        separated_online("hf://me")


def test_a_failed_upload_says_why_without_the_token(baseline_export: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    hub = FakeHub(tmp_path / "hub", monkeypatch)
    hub.upload_error = PermissionError(f"401 Unauthorized: token {TOKEN} cannot write to me/tiny")
    result = runner.invoke(app, ["export", str(baseline_export), "--out", str(tmp_path / "again"), "--offline",
                                 "--push-to-hub", "me/tiny"])
    assert result.exit_code == 2
    assert "could not upload" in flat(result.output) and "huggingface-cli login" in flat(result.output)
    assert TOKEN not in result.output and "***" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--dry-run"], "--dry-run lists what --push-to-hub would upload"),
    ([], "does not say which system loads it (it was made elsewhere than `dcase9 train`): name it with --system"),
    (["--system", "no-such-system"], "no-such-system"),
    (["--system", "baseline", "--push-to-hub", "not a repo"], "'not a repo' is not a Hugging Face model"),
])
def test_export_refusals(parts: dict[str, Path], tmp_path: Path, args: list[str], message: str) -> None:
    result = export(parts["checkpoint"], tmp_path / "out", *args)
    assert result.exit_code == 2 and message in flat(result.output), result.output
    assert not (tmp_path / "out").exists()


def test_an_export_of_a_dcase9_checkpoint_keeps_its_system(demo_run: dict[str, Path], tmp_path: Path) -> None:
    result = export(demo_run["run"] / "last.ckpt", tmp_path / "out", "--system", "3")
    assert result.exit_code == 2
    assert "was trained for system 'baseline' (its dcase9 entry), not '3'" in flat(result.output)
    result = export(demo_run["run"], demo_run["run"])
    assert result.exit_code == 2 and "writing there could replace or delete what this command reads" in flat(result.output)


def test_an_export_never_replaces_a_folder_of_other_files(baseline_export: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    result = export(baseline_export, out)
    assert result.exit_code == 2 and "holds files that are not part of a folder of `dcase9 export` (notes.txt)" in \
        flat(result.output)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    # An earlier export there is replaced as a whole.
    assert export(baseline_export, tmp_path / "again").exit_code == 0
    assert export(baseline_export, tmp_path / "again", "--license", "mit").exit_code == 0
    assert "license: mit" in (tmp_path / "again" / "README.md").read_text()
