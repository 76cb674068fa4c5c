"""AudioSep's six LASS benchmarks: read in its published layout, validated like the Task 9 sets, separated and
scored as its evaluators score them (`dcase9.data.benchmarks` restates what its code does)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import yaml
from typer.testing import CliRunner

from dcase9 import api
from dcase9.cli import app
from dcase9.data.benchmarks import BENCHMARK_NAMES, MUSIC_CLASSES, get_benchmark
from dcase9.data.formats import SetKind, open_dataset, parse_dataset
from dcase9.data.validate import validate_dataset
from dcase9.errors import ConfigError, DataError
from tests.audiosep_support import audiosep_numbers
from tests.tiny_models import resunet_weights, system_config, tokenizer_folder, write_lightning_checkpoint

FIXTURES = Path(__file__).parent / "fixtures" / "audiosep"
runner = CliRunner()


@pytest.fixture()
def evaluation(demo_root: Path, tmp_path: Path) -> Path:
    """A private copy of the demo's benchmarks (AudioSep's layout) that a test may damage."""
    target = tmp_path / "evaluation"
    shutil.copytree(demo_root / "evaluation", target)
    return target


def published_layout(root: Path) -> Path:
    """AudioSep's published metadata with empty audio folders."""
    (root / "metadata").mkdir(parents=True)
    for csv in FIXTURES.glob("*.csv"):
        shutil.copy(csv, root / "metadata" / csv.name)
    for name in BENCHMARK_NAMES:
        (root / "data" / name).mkdir(parents=True)
    return root


def codes(issues: list[Any]) -> list[str]:
    return [issue.code for issue in issues]


# -- reading the published metadata ---------------------------------------------------------------


def test_the_published_metadata_reads_as_audiosep_reads_it(tmp_path: Path) -> None:
    root = published_layout(tmp_path / "evaluation")
    counts = {}
    for name in BENCHMARK_NAMES:
        dataset, issues = parse_dataset(root / "data" / name)
        assert issues == [], name
        assert dataset.kind is SetKind(name) and dataset.sample_rate == 32000
        assert dataset.csv_path == root / "metadata" / f"{name}_eval.csv"
        counts[name] = len(dataset.mixtures)
        assert counts[name] == get_benchmark(name).published_clips
    assert counts == {"vggsound": 1000, "music": 5004, "esc50": 2000, "audioset": 5270, "audiocaps": 4820,
                      "clotho": 5225}

    vgg = open_dataset(root / "data" / "vggsound").mixtures[0]  # s0 is the target, its label the query
    assert (vgg.id, vgg.file, vgg.reference, vgg.query) == (
        "-JUBdOr8Hes_000030+++37Vxf0Wz-3o_000001", "data/mix_wav/-JUBdOr8Hes_000030+++37Vxf0Wz-3o_000001.wav",
        "data/s0_wav/-JUBdOr8Hes_000030+++37Vxf0Wz-3o_000001.wav", "playing accordion")
    audioset = open_dataset(root / "data" / "audioset")
    first, last = audioset.mixtures[0], audioset.mixtures[-1]
    assert (first.id, first.file, first.reference, first.query, first.group) == (
        "class_id=0,index=000", "class_id=0/class_id=0,index=000,mixture.wav",
        "class_id=0/class_id=0,index=000,source.wav", "Speech", "0")
    assert (last.id, last.group, last.query) == ("class_id=526,index=009", "526", "Field recording")
    assert audioset.files_of(first) == [root / "data" / "audioset" / "class_id=0" / "class_id=0,index=000,mixture.wav",
                                        root / "data" / "audioset" / "class_id=0" / "class_id=0,index=000,source.wav"]
    clotho = open_dataset(root / "data" / "clotho").mixtures
    assert (clotho[0].id, clotho[0].file, clotho[0].reference) == ("mixture-0", "mixture-0.wav", "segment-0.wav")
    assert sum(spec.query != spec.query.strip() for spec in clotho) == 4  # embedded as written, spaces and all
    music = open_dataset(root / "data" / "music").mixtures
    assert {spec.group for spec in music} == set(MUSIC_CLASSES)
    captions = open_dataset(root / "data" / "audiocaps")
    labels = open_dataset(root / "data" / "audiocaps", query_column="labels")
    assert captions.mixtures[1].query == "A rocket flies by followed by a loud explosion and fire crackling as a " \
                                         "truck engine runs idle"
    assert labels.mixtures[1].query == "Explosion Burst, pop" and labels.query_column == "labels"


def test_audioset_queries_are_the_labels_by_position(tmp_path: Path) -> None:
    root = published_layout(tmp_path / "evaluation")
    labels = root / "metadata" / "class_labels_indices.csv"
    lines = labels.read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]  # rows 0 and 1 swapped: AudioSep takes the labels by position
    labels.write_text("\n".join(lines) + "\n")
    dataset, issues = parse_dataset(root / "data" / "audioset")
    assert dataset.mixtures[0].query == "Male speech, man speaking"
    assert {"labels-index", "caption-not-label"} <= set(codes(issues))
    labels.unlink()
    _, issues = parse_dataset(root / "data" / "audioset")
    assert "labels-missing" in codes(issues)


def test_the_layout_is_found_from_the_data_folder(tmp_path: Path) -> None:
    root = published_layout(tmp_path / "evaluation")
    (root / "metadata" / "esc50_eval.csv").unlink()
    with pytest.raises(DataError, match=r"esc50_eval.csv: .*AudioSep's layout: EVALUATION_DIR/metadata/esc50_eval.csv"):
        parse_dataset(root / "data" / "esc50")
    with pytest.raises(DataError, match=r"looks like AudioSep's evaluation folder.*dcase9 suite"):
        parse_dataset(root)
    # Another folder name: --kind says which benchmark, --csv where its metadata is.
    elsewhere = tmp_path / "my-music"
    elsewhere.mkdir()
    dataset, _ = parse_dataset(elsewhere, "music", root / "metadata" / "music_eval.csv")
    assert dataset.kind is SetKind.MUSIC and dataset.audio_dir == elsewhere and len(dataset.mixtures) == 5004
    with pytest.raises(ConfigError, match="--query-column 'labels': the Clotho benchmark's queries come from caption"):
        parse_dataset(root / "data" / "clotho", query_column="labels")
    with pytest.raises(ConfigError, match="--query-column chooses a benchmark's query column"):
        parse_dataset(FIXTURES.parent / "official", "eval-real", query_column="labels")


@pytest.mark.parametrize(("name", "line", "code", "field"), [
    ("music", "9,banjo,a.wav,b.wav", "unknown-class", "caption"),
    ("esc50", "3,dog,a.wav", "row-width", None),
    ("esc50", "../x,dog,a.wav,b.wav", "unsafe-name", "idx"),
    ("esc50", "7,,a.wav,b.wav", "caption-empty", "caption"),
    ("vggsound", "x,../mix.wav,data/s0_wav/x.wav,dog,data/s1_wav/x.wav,cat", "unsafe-name", "mix_wav"),
    ("audioset", '2,Woman,"evaluation/data/audioset/class_id=3/class_id=3,index=000,source.wav",'
                 '"evaluation/data/audioset/class_id=3/class_id=3,index=000,mixture.wav"', "path-layout", "src_wav"),
    ("audioset", "999,Nope,a,b", "unknown-class", "idx"),
])
def test_rows_that_audiosep_cannot_evaluate_are_named(evaluation: Path, name: str, line: str, code: str,
                                                      field: str | None) -> None:
    csv = evaluation / "metadata" / get_benchmark(name).csv_name
    rows = csv.read_text().splitlines()
    csv.write_text("\n".join(rows + [line]) + "\n")
    _, issues = parse_dataset(evaluation / "data" / name)
    found = [i for i in issues if i.code == code]
    assert found and found[0].row == len(rows) + 1 and found[0].field == field and found[0].file == str(csv)


# -- validate ---------------------------------------------------------------------------------------


def test_the_demo_benchmarks_are_usable_and_deterministic(demo_root: Path, tmp_path: Path) -> None:
    from dcase9.data.demo import make_benchmarks

    for name in BENCHMARK_NAMES:
        report = validate_dataset(demo_root / "evaluation" / "data" / name)
        assert report.issues == [] and report.usable, name
        assert report.files_checked == 2 * len(report.dataset.mixtures)
        for path in report.dataset.files_of(report.dataset.mixtures[0]):
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.subtype) == (32000, 1, "PCM_16")
    again = make_benchmarks(tmp_path / "again", seed=5)
    for path in (demo_root / "evaluation").rglob("*"):
        if path.is_file():
            assert (again / path.relative_to(demo_root / "evaluation")).read_bytes() == path.read_bytes()


def _rewrite(path: Path, samples: np.ndarray, rate: int = 32000) -> None:
    sf.write(path, samples, rate, subtype="PCM_16")


def test_validate_names_each_problem_as_for_the_task9_sets(evaluation: Path) -> None:
    esc50 = evaluation / "data" / "esc50"
    (esc50 / "segment-0.wav").unlink()  # missing
    raw = (esc50 / "mixture-1.wav").read_bytes()
    (esc50 / "mixture-1.wav").write_bytes(raw[: len(raw) // 2])  # cut off
    _rewrite(esc50 / "segment-2.wav", np.full(16000, 0.1, np.float32), 16000)  # another rate, same duration
    _rewrite(esc50 / "segment-3.wav", np.full(48000, 0.1, np.float32))  # 1.5 s against its 2 s mixture
    report = validate_dataset(esc50)
    by_code = {issue.code: issue for issue in report.issues}
    assert by_code["audio-missing"].file == str(esc50 / "segment-0.wav")
    assert by_code["audio-truncated"].file == str(esc50 / "mixture-1.wav")
    assert by_code["audio-rate"].severity == "warning" and "librosa" in by_code["audio-rate"].message
    assert by_code["length-mismatch"].row == 5 and "segment-3.wav 48000" in by_code["length-mismatch"].message
    assert not report.usable

    result = runner.invoke(app, ["validate", str(esc50)])
    assert result.exit_code == 1 and "ESC-50 benchmark" in result.output and "audio-missing" in result.output


def test_audioset_folders_must_give_the_evaluators_selection(evaluation: Path) -> None:
    folder = evaluation / "data" / "audioset" / "class_id=1"
    assert validate_dataset(folder.parent).usable
    for part in ("mixture", "source"):  # sorts before index=000: AudioSep's evaluator would score it
        shutil.copy(folder / f"class_id=1,index=000,{part}.wav", folder / f"class_id=1,extra,{part}.wav")
    report = validate_dataset(folder.parent)
    assert codes(report.errors) == ["benchmark-selection"] and report.errors[0].file == str(folder)
    assert "class_id=1,extra" in report.errors[0].message


# -- separate and score as AudioSep's evaluators --------------------------------------------------


@pytest.fixture(scope="module")
def audiosep_assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny System 2 (AudioSep's ResUNet30 at 32 kHz, small STFT, tiny CLAP) in the official layout."""
    root = tmp_path_factory.mktemp("audiosep")
    config = root / "2.yaml"
    config.write_text(yaml.safe_dump(system_config({"n_fft": 512, "hop_length": 128})))
    return {"checkpoint": write_lightning_checkpoint(root / "audiosep.ckpt", resunet=resunet_weights(512, 128)),
            "tokenizer": tokenizer_folder(root / "tokenizer"), "config": config}


def system2_args(assets: dict[str, Any]) -> list[str]:
    return ["--system", "2", "--checkpoint", str(assets["checkpoint"]), "--weight",
            f"roberta-base-tokenizer={assets['tokenizer']}", "--system-config", str(assets["config"]), "--offline"]


@pytest.mark.parametrize("name", BENCHMARK_NAMES)
def test_scores_equal_audiosep_evaluator_code(demo_root: Path, tmp_path: Path, audiosep_assets: dict[str, Any],
                                              name: str) -> None:
    data = demo_root / "evaluation" / "data" / name
    result = runner.invoke(app, ["infer", "-d", str(data), "-o", str(tmp_path / "est"), *system2_args(audiosep_assets)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["score", "-d", str(data), "-e", str(tmp_path / "est"), "-o", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    benchmark = summary["benchmark"]
    sdri, sisdr = audiosep_numbers(open_dataset(data), tmp_path / "est")
    assert f"{benchmark['sdri']:.3f}" == f"{sdri:.3f}" and f"{benchmark['sisdr']:.3f}" == f"{sisdr:.3f}"
    assert abs(benchmark["sdri"] - sdri) < 1e-4 and abs(benchmark["sisdr"] - sisdr) < 1e-4
    if get_benchmark(name).group_by:  # the demo's classes of unequal sizes tell the aggregate from a plain mean
        assert abs(benchmark["sdri"] - summary["mean"]["sdri"]) > 1e-3
    title = get_benchmark(name).title
    assert benchmark["printed"] == f"{title} Avg SDRi: {sdri:.3f}, SISDR: {sisdr:.3f}"
    assert benchmark["printed"] in " ".join(result.output.split())
    estimate = sf.info(next((tmp_path / "est").glob("*.wav")))
    assert estimate.samplerate == 32000
    header = (tmp_path / "report" / "per_clip.csv").read_text().splitlines()[0]
    group = ",class" if get_benchmark(name).group_by else ""
    assert header == f"id,file,reference,caption{group},sdr,sdri,sisdr,input_sdr,sisdri"


def test_a_16khz_system_runs_on_32khz_audio_and_is_scored_at_32khz(demo_root: Path, tmp_path: Path) -> None:
    """One rule for every system: the benchmark's 32 kHz audio goes to the system at its own rate through the
    resampler, and its estimate comes back to 32 kHz, scored against the 32 kHz reference."""
    data = demo_root / "evaluation" / "data" / "vggsound"
    result = api.infer("oracle", data, tmp_path / "est")
    manifest = json.loads((tmp_path / "est" / "dcase9-run.json").read_text())
    assert result.written == 4 and manifest["identity"]["resampler"] == "soxr"
    assert manifest["settings"]["data_sample_rate"] == 32000 and manifest["settings"]["model_sample_rate"] == 16000
    for path in (tmp_path / "est").glob("*.wav"):
        assert sf.info(path).samplerate == 32000
    report = api.score(data, tmp_path / "est", progress=False)
    assert report.summary["benchmark"]["sdri"] > 10  # the oracle's mask, computed at 16 kHz
    # A re-run resumes; the Task 9 sets' columns are unchanged (SI-SDRi belongs to the benchmarks).
    assert api.infer("oracle", data, tmp_path / "est").skipped == 4
    task9 = api.score(demo_root / "validation", _mixture_estimates(demo_root, tmp_path), progress=False)
    assert "sisdri" not in task9.metrics and "benchmark" not in task9.summary


def _mixture_estimates(demo_root: Path, tmp_path: Path) -> Path:
    api.infer("mixture", demo_root / "validation", tmp_path / "mix-est")
    return tmp_path / "mix-est"


def test_audiocaps_queries_by_caption_or_labels(demo_root: Path, tmp_path: Path) -> None:
    data = demo_root / "evaluation" / "data" / "audiocaps"
    for query in ("caption", "labels"):
        result = runner.invoke(app, ["infer", "-s", "mixture", "-d", str(data), "-o", str(tmp_path / query),
                                     "--query-column", query])
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["score", "-d", str(data), "-e", str(tmp_path / query), "-o",
                                     str(tmp_path / f"{query}-report"), "--query-column", query])
        assert result.exit_code == 0, result.output
        summary = json.loads((tmp_path / f"{query}-report" / "summary.json").read_text())
        assert summary["benchmark"]["query"] == query
    captions = (tmp_path / "caption-report" / "per_clip.csv").read_text()
    labels = (tmp_path / "labels-report" / "per_clip.csv").read_text()
    assert "Dog" in labels.split("\n")[1] or "Bird" in labels or "Rain" in labels
    assert captions != labels
    result = runner.invoke(app, ["score", "-d", str(demo_root / "evaluation" / "data" / "esc50"), "-e",
                                 str(tmp_path / "caption"), "--query-column", "labels"])
    assert result.exit_code == 2 and "the ESC-50 benchmark's queries come from caption" in result.output


def test_a_benchmark_file_at_another_rate_is_read_as_librosa_reads_it(evaluation: Path, tmp_path: Path) -> None:
    """AudioSep's librosa.load(sr=32000) resamples such a file and its evaluator scores it: validate warns,
    infer and score take it at 32 kHz (its length as read, not as stored)."""
    esc50 = evaluation / "data" / "esc50"
    for name in ("mixture-0.wav", "segment-0.wav"):
        audio, _ = sf.read(esc50 / name, dtype="float32")
        sf.write(esc50 / name, audio[::2], 16000, subtype="FLOAT")
    report = validate_dataset(esc50)
    assert report.usable and codes(report.warnings) == ["audio-rate", "audio-rate"]
    api.infer("mixture", esc50, tmp_path / "est")
    assert sf.info(tmp_path / "est" / "mixture-0.wav").samplerate == 32000
    scores = api.score(esc50, tmp_path / "est", progress=False)
    assert scores.problems == [] and scores.complete
