"""Text-queried systems through the real loading path: official-layout checkpoints, `dcase9 infer`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

from tests.tiny_models import (SMALL_STFT, resunet_weights, system_config, tokenizer_folder,
                               write_lightning_checkpoint)
from dcase9 import api
from dcase9.cli import app
from dcase9.engine import separate_in_chunks
from dcase9.errors import CheckpointError

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
        api.infer("baseline", demo_root / "validation", tmp_path / "est",
                     progress=False, limit=1, checkpoint=assets["checkpoint"],
                     weights={"roberta-base-tokenizer": assets["tokenizer"]}, offline=True,
                     system_options=system_config({"n_fft": 1024, "hop_length": 160}))


def test_missing_weights_offline_explain_what_to_do(demo_root: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCASE9_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["infer", "-s", "2", "-d", str(demo_root / "validation"), "-o", str(tmp_path / "o"),
                                 "--offline"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "audiosep-checkpoint" in text and "offline mode is on (--offline)" in text
    assert "give it with --checkpoint FILE or --weight audiosep-checkpoint=FILE" in text
    result = runner.invoke(app, ["infer", "-s", "1", "-d", str(demo_root / "validation"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "nobody publishes it" in " ".join(result.output.split())


def test_system2_runs_at_32k_on_16k_data(assets: dict[str, Path], demo_root: Path, tmp_path: Path) -> None:
    """AudioSep-32K: 16 kHz in, 32 kHz model, 16 kHz out of the same length."""
    checkpoint = write_lightning_checkpoint(tmp_path / "audiosep.ckpt", resunet=resunet_weights(512, 128))
    result = api.infer("2", demo_root / "eval-real", tmp_path / "est", progress=False, limit=1,
                          checkpoint=checkpoint, weights={"roberta-base-tokenizer": assets["tokenizer"]},
                          offline=True, system_options=system_config({"n_fft": 512, "hop_length": 128}))
    assert result.written == 1
    audio, rate = sf.read(next((tmp_path / "est").glob("*.wav")), dtype="float32")
    assert rate == 16000 and audio.shape == (160000,)


def test_the_cpu_build_runs_the_inference_form_with_the_same_outputs(assets: dict[str, Path]) -> None:
    """On the CPU the baseline's ResUNet30 runs in its inference form (batch norms folded), a private copy:
    same outputs as the checkpoint's net built as is, to float32 round-off. What the API hands out stays an
    ordinary module: trainable, its state dict whole and loadable, and a change of its weights reaches
    the copy inference runs."""
    from dcase9.models.resunet import ConvBlockRes, InferenceDecoderBlockRes, ResUNet30Config, load_resunet30

    separator = api.load_separator("baseline", checkpoint=assets["checkpoint"], device="cpu",
                                   weights={"roberta-base-tokenizer": assets["tokenizer"]},
                                   system_options=system_config(), offline=True, progress=False)
    model = separator.model
    assert isinstance(model, torch.nn.Module) and isinstance(model.resunet.base.encoder_block1.conv_block1,
                                                              ConvBlockRes)
    plain = load_resunet30(resunet_weights(), ResUNet30Config(16000, **SMALL_STFT))
    state = model.resunet.state_dict()
    assert state.keys() == plain.state_dict().keys()
    folded = model._inference_net()
    assert isinstance(folded.base.decoder_block1, InferenceDecoderBlockRes) and folded is not model.resunet
    torch.manual_seed(0)
    mixture, condition = 0.1 * torch.randn(2, 1, 16000), torch.randn(2, 512)
    with torch.no_grad():
        expected, got = plain(mixture, condition), model.separate(mixture[:, 0], condition)[:, None]
    snr = 10 * torch.log10(expected.square().sum(-1) / (got - expected).square().sum(-1))
    assert snr.min().item() > 100, snr
    # New weights (load_state_dict copies in place): the next separation folds them, not the old ones.
    with torch.no_grad():
        state["base.bn0.running_mean"] += 0.5
        model.resunet.load_state_dict(state)
        plain.load_state_dict(state)
        assert model._inference_net() is not folded
        moved = plain(mixture, condition)
        assert torch.allclose(model.separate(mixture[:, 0], condition)[:, None], moved, atol=1e-5)
    model.train()  # trainable: the original modules, no folded copy in the way
    assert model.resunet.training and model._inference_net() is model.resunet


def test_text_queried_systems_start_without_transformers(assets: dict[str, Path]) -> None:
    """Building the baseline and separating with a text query imports neither transformers nor
    torch._dynamo: their imports were most of dcase9 infer's start-up (BENCHMARKS.md)."""
    code = ("import sys, numpy as np, yaml\n"
            "from dcase9 import api\n"
            "ckpt, tok, config = sys.argv[1:]\n"
            "sep = api.load_separator('baseline', checkpoint=ckpt, weights={'roberta-base-tokenizer': tok},\n"
            "                         system_options=yaml.safe_load(open(config)), device='cpu', offline=True, progress=False)\n"
            "sep.separate(np.full(16000, 0.01, dtype=np.float32), 'a dog barks', sample_rate=16000)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('transformers', 'torch._dynamo'))))\n")
    result = subprocess.run([sys.executable, "-c", code, str(assets["checkpoint"]), str(assets["tokenizer"]),
                             str(assets["config"])], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.stdout.strip() == "[]", result.stdout


def test_chunked_inference_matches_whole_away_from_seams(assets: dict[str, Path]) -> None:
    """A long input in overlapping chunks: close to the whole-input result away from the seams,
    and never silent anywhere (a short input runs whole)."""
    from dcase9.systems.text_queried import TextQueriedResUNet
    from dcase9.models.resunet import load_resunet30, ResUNet30Config

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
    from dcase9.engine import chunk_starts
    from dcase9.metrics import sdr

    far = torch.ones(mixture.shape[-1], dtype=torch.bool)
    for start in chunk_starts(mixture.shape[-1], segment, 0.25)[1:]:
        far[max(0, start - 8000):start + segment // 4 + 8000] = False  # the cross-fade plus 0.5 s
    assert far.sum() > 16000
    assert sdr(whole[0, far], chunked[0, far]).item() > 20
    assert chunked.abs().max() > 0 and (chunked[0].reshape(-1, 1600).abs().amax(dim=1) > 0).all()


# --- published numbers, read back from the seed papers -----------------------------------------------

SEED_TABLES = Path(__file__).parent / "fixtures" / "seed_tables.txt"
SEED_FILES = {"003": "003_b6a6eff0ef5bf969.txt", "000": "000_95014ead7998752c.txt"}


def seed_table_lines() -> dict[str, list[str]]:
    """The fixture's lines per table, keyed '003' (Table 2) and '000' (Table 5)."""
    tables: dict[str, list[str]] = {}
    current = None
    for line in SEED_TABLES.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line:
            continue
        if line.startswith("["):
            current = line[1:4]
            tables[current] = []
        else:
            tables[current].append(line)  # type: ignore[index]
    return tables


def seed003_table2(lines: list[str]) -> dict[tuple[str, ...], tuple[float, ...]]:
    """Method -> (SDR, SDRi, SI-SDR, ATS). The text prints Systems 1-3 in one row, each cell holding one value
    per system, and drops the decimal point of two negative values ("-4 757")."""
    assert lines[0].split("\t") == ["Method", "SDR", "SDRi", "SI-SDR", "ATS"]
    rows: dict[tuple[str, ...], tuple[float, ...]] = {}
    for line in lines[1:]:
        cells = line.split("\t")
        names = re.findall(r"System \d|baseline", cells[0])
        columns = [[float(v.replace(" ", ".")) for v in re.findall(r"-?\d+[ .]\d{3}", cell)] for cell in cells[1:]]
        assert len(columns) == 4 and all(len(c) == len(names) for c in columns), line
        for i, name in enumerate(names):
            rows[(name,)] = tuple(c[i] for c in columns)
    return rows


def seed000_table5(lines: list[str]) -> dict[tuple[str, ...], tuple[float, ...]]:
    """(model, training data, approach, augmentation) -> (SDR, SDRi, SI-SDR); empty cells repeat the one above."""
    assert lines[0].split("\t")[:4] == ["Model", "Training Dataset", "Training Approach", "Caption Augmentation"]
    rows: dict[tuple[str, ...], tuple[float, ...]] = {}
    above = ["", ""]
    for line in lines[1:]:
        cells = line.split("\t")
        assert len(cells) == 7, line
        model = cells[0].removesuffix(" -") or above[0]  # "Baseline -": the model cell spans its rows
        dataset = cells[1] or above[1]
        above = [model, dataset]
        rows[(model, dataset, cells[2], cells[3])] = tuple(float(v) for v in cells[4:])
    return rows


def test_published_numbers_are_the_seeds_own() -> None:
    """Every number `dcase9 systems` shows is read back from the seed papers' tables; every row of seed 000's
    Table 5 (all of them are systems dcase9 runs: baseline, System 2, System 4 and its AudioSep variant,
    with DDP, DIP or no augmentation) and of seed 003's Table 2 is shown."""
    from dcase9.systems import list_systems

    tables = seed_table_lines()
    parsed = {"003": seed003_table2(tables["003"]), "000": seed000_table5(tables["000"])}
    assert len(parsed["003"]) == 4 and len(parsed["000"]) == 10
    shown: set[tuple[str, tuple[str, ...]]] = set()
    for spec in list_systems():
        for p in spec.published:
            assert p.seed in parsed and p.row in parsed[p.seed], (spec.name, p)
            expected = parsed[p.seed][p.row]
            numbers = (p.sdr, p.sdri, p.sisdr, p.ats)[: len(expected)]
            assert numbers == expected, (spec.name, p.source, numbers, expected)
            if p.seed == "000":
                assert p.ats is None  # seed 000 reports no ATS
            shown.add((p.seed, p.row))
    assert shown == {(seed, row) for seed, rows in parsed.items() for row in rows}


def test_published_numbers_appear_in_dcase9_systems() -> None:
    """`dcase9 systems NAME` shows each published row: its source, then SDR, SDRi, SI-SDR, ATS."""
    from dcase9.systems import list_systems

    for spec in list_systems():
        output = runner.invoke(app, ["systems", spec.name], env={"COLUMNS": "250"}).output
        cells = " ".join(output.replace("│", " ").split())
        for p in spec.published:
            values = " ".join("-" if v is None else f"{v:.3f}" for v in (p.sdr, p.sdri, p.sisdr, p.ats))
            assert f"{p.source} {values}" in cells, (spec.name, values)
        if spec.published:
            assert "source ┃ SDR ┃ SDRi ┃ SI-SDR ┃ ATS" in " ".join(output.split())


# sha256 of each table's lines as they appear in the seed texts (checked against the texts below, where
# they are at hand): an edit of the fixture, by hand or by a tool, no longer passes anywhere.
SEED_TABLE_SHA256 = {"003": "fae70c909f8f27818c8acc61b80fb2a655de2766dfe4f8604e269de5b6eaf524",
                     "000": "2327591e959e15043ac769959b8711669d0a2880bcfbf8372cf567abaeca9b78"}


def test_seed_table_fixture_is_the_seeds_text() -> None:
    """The fixture's tables are the seeds' lines, unedited: their digests are those of the text (every run)."""
    import hashlib

    tables = seed_table_lines()
    assert set(tables) == set(SEED_TABLE_SHA256)
    for seed, lines in tables.items():
        assert hashlib.sha256("\n".join(lines).encode()).hexdigest() == SEED_TABLE_SHA256[seed], seed


def test_seed_table_fixture_is_verbatim_from_the_seeds() -> None:
    """... and where the seed texts are at hand (DCASE9_SEEDS, or shared/seeds beside the repository), the
    fixture's lines appear in them, in order."""
    folder = Path(os.environ.get("DCASE9_SEEDS") or Path(__file__).resolve().parents[2] / "shared" / "seeds")
    if not folder.is_dir():
        pytest.skip(f"the seed texts are not here ({folder}; set DCASE9_SEEDS); their digests are checked above")
    for seed, lines in seed_table_lines().items():
        text = (folder / SEED_FILES[seed]).read_text(encoding="utf-8")
        assert "\n".join(lines) in text, seed


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
