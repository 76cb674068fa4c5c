"""The demo's model: its word-level tiny tokenizer, distinct random queries, and reuse of a finished run;
the whole demo on small data with a tiny net: trained model -> evaluation sets -> checked package, reused."""

from __future__ import annotations

import functools
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from typer.testing import CliRunner

from dcase9.data.demo import SOUND_CLASSES, caption_pool
from dcase9.models.checkpoints import read_checkpoint
from dcase9.models.clap import ClapEncoder, load_roberta_tokenizer
from dcase9.models.description import describe_checkpoint, tokenizer_files
from dcase9.models.tiny import MERGES, vocabulary, word_merges, write_tiny_roberta_tokenizer
from dcase9.progress import Stage
from dcase9.training.config import assemble_config

runner = CliRunner()


def small_demo_model() -> dict[str, Any]:
    """A configuration layer on the demo preset: the tiny test net, 2 steps, no validation."""
    from tests.test_train_run import TINY_RUN

    return {**TINY_RUN, "validation": {"data": None}, "checkpoint": {"every_steps": 1, "last_every_steps": 1},
            "trainer": {**TINY_RUN["trainer"], "max_steps": 2}, "query_encoder": {"tokenizer": "tiny-demo"}}


# The whole demo, small: 24 validation, 16 eval-synth and 12 eval-real mixtures, 16 training clips.
SMALL_DEMO_DATA = {"clips_per_class": 1, "train_clips_per_class": 2}


def test_plain_tiny_tokenizer_is_unchanged() -> None:
    vocab = vocabulary()
    assert len(vocab) == 284 and vocab["<mask>"] == 283 and vocab["Ġbarking"] == 4 + 256 + 10
    assert word_merges([]) == MERGES


def test_demo_tokenizer_makes_every_caption_word_one_token(tmp_path: Path) -> None:
    tokenizer = load_roberta_tokenizer(write_tiny_roberta_tokenizer(tmp_path / "tok", words_of=caption_pool()))
    tokens = tokenizer.tokenize("Someone's dog barks, growls, and barks again.")
    assert tokens == ["Someone", "'s", "Ġdog", "Ġbarks", ",", "Ġgrowls", ",", "Ġand", "Ġbarks", "Ġagain", "."]
    for caption in caption_pool():
        words = caption.replace(",", " ").replace(".", " ").replace("'s", " ").split()
        assert len([t for t in tokenizer.tokenize(caption) if t.strip("Ġ").isalpha()]) == len(words), caption
    assert tokenizer.tokenize("xylophone")[:2] == ["x", "y"]  # unknown words still tokenize, by bytes
    architecture = assemble_config(preset="demo").query_encoder.architecture
    assert len(tokenizer) <= architecture.text_vocab_size


def test_random_demo_queries_are_distinct(tmp_path: Path) -> None:
    from dcase9.models.tiny import random_clap_model

    spec = assemble_config(preset="demo").query_encoder.architecture.spec()
    tokenizer = load_roberta_tokenizer(write_tiny_roberta_tokenizer(tmp_path / "tok", words_of=caption_pool()))
    captions = [c for sound in SOUND_CLASSES for c in sound.captions]
    embeddings = ClapEncoder(random_clap_model(spec, seed=0), spec.front_end, tokenizer).encode_text(captions)
    similarity = embeddings @ embeddings.T
    off_diagonal = similarity[~torch.eye(len(captions), dtype=torch.bool)]
    assert off_diagonal.mean() < 0.7 and off_diagonal.max() < 0.99
    again = ClapEncoder(random_clap_model(spec, seed=0), spec.front_end, tokenizer).encode_text(captions)
    assert torch.equal(embeddings, again)


def test_demo_model_is_trained_then_reused_or_resumed(demo_root: Path, tmp_path: Path) -> None:
    from dcase9.demo import train_demo_model

    small = small_demo_model()
    train_json = demo_root / "train" / "train.json"
    run = tmp_path / "model"
    said: list[str] = []
    first, load = train_demo_model(train_json, run, progress=False, overrides=[small], announce=said.append)
    assert first.global_step == 2 and load["checkpoint"] == run / "last.ckpt" and load["trained_now"]
    described = describe_checkpoint(read_checkpoint(load["checkpoint"]), "last.ckpt")  # what loads it
    assert described is not None and described.system == "baseline"
    assert described.options["channels"] == [4, 8] and described.options["clap"]["text_hidden_size"] == 64
    assert described.tokenizer_files == tokenizer_files(run / "tokenizer")
    assert said == [load["why"]] and "no model there yet" in said[0]
    again, load = train_demo_model(train_json, run, progress=False, overrides=[small], announce=said.append)
    assert again.global_step == 2 and not load["trained_now"]
    assert (again.start_step, again.infer_command) == (0, first.infer_command)  # from the run's summary
    assert not (run / "logs" / "version_1").exists()  # reused, not retrained
    assert said[1].startswith(f"reusing the demo model trained earlier in {run} (2 steps, same settings)")
    shutil.copyfile(run / "checkpoints" / "step=1.ckpt", run / "last.ckpt")  # as if interrupted at step 1
    resumed, load = train_demo_model(train_json, run, progress=False, overrides=[small], announce=said.append)
    assert resumed.global_step == 2 and (run / "logs" / "version_1").exists()
    assert resumed.start_step == 1 and resumed.describe_steps().startswith("1 step in ")  # what the resume did
    assert said[2] == f"resuming the interrupted demo training in {run} at step 1 of 2"
    # A copy of the demo folder: the data are elsewhere, so the model is trained again, and the demo says why;
    # so is a model of an older version, whose checkpoint did not carry its tokenizer.
    old = read_checkpoint(run / "last.ckpt")
    old["dcase9"]["format"] = 1
    torch.save(old, run / "old.ckpt")  # not over the file `old` maps
    (run / "old.ckpt").replace(run / "last.ckpt")
    moved = Path(shutil.copytree(train_json.parent, tmp_path / "copy")) / "train.json"
    train_demo_model(moved, run, progress=False, overrides=[small], announce=said.append)
    assert said[3].startswith(f"training the demo model in {run} again: it was trained with other settings "
                              f"(data.datafiles: ")
    assert str(train_json) in said[3] and str(moved) in said[3] and "moved or copied" in said[3]
    assert "checkpoint format: 1 -> 2" in said[3]


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """One demo run, shared by the tests below (which leave its folder as they found it)."""
    from dcase9.demo import run_demo

    out = tmp_path_factory.mktemp("demo-run")
    return out, run_demo(out, progress=False, data_options=SMALL_DEMO_DATA, train_overrides=[small_demo_model()])


@pytest.mark.slow  # with the demo run it shares: about 8 s on two cores
def test_demo_packages_the_trained_model_and_the_package_passes(small_demo: tuple[Path, Any]) -> None:
    from dcase9.submission import check_package, count_checkpoint_parameters, load_profile, load_submission_config

    out, result = small_demo
    data = {subset: out / "data" / subset for subset in ("eval-synth", "eval-real")}
    counts = {"eval-synth": 16, "eval-real": 12}
    # The trained model ran on both evaluation sets, with the checkpoint and settings of its validation run.
    validation_run = json.loads((out / "estimates" / "trained" / "dcase9-run.json").read_text())
    for subset, n in counts.items():
        folder = out / "estimates" / f"trained-{subset}"
        assert result.evaluation[subset].out_dir == folder and result.evaluation[subset].written == n
        assert len(list(folder.glob("*.wav"))) == n
        assert json.loads((folder / "dcase9-run.json").read_text())["identity"] == validation_run["identity"]

    demo = result.package
    assert demo.ok and demo.package == out / "submission" / "Demo_DCASE9_task9.zip"
    assert demo.config == out / "submission" / "submission.yaml"
    # The real check, run again here with the evaluation data: every output matched to its mixture.
    check = check_package(demo.package, data=data)
    assert check.ok and check.data_checked and check.labels == ["Demo_DCASE9_task9_1"]
    assert check.outputs == {"Demo_DCASE9_task9_1": counts}

    config = load_submission_config(demo.config)  # the documented schema
    assert (config.submitter.lastname, config.submitter.abbreviation) == ("Demo", "DCASE9")
    assert config.authors[0].email.endswith("@example.org")
    assert config.systems[0].development_report.resolve() == (out / "reports" / "trained").resolve()
    checkpoint = out / "model" / "last.ckpt"
    assert [p.resolve() for p in config.systems[0].parameters.checkpoints] == [checkpoint.resolve()]
    parameters = count_checkpoint_parameters([checkpoint], load_profile().parameter_count.exclude).total
    with zipfile.ZipFile(demo.package) as archive:
        meta = yaml.safe_load(archive.read("task9/Demo_DCASE9_task9_1/Demo_DCASE9_task9_1.meta.yaml"))
        report = archive.read("task9/Demo_DCASE9_task9.technical_report.pdf")
    assert meta["submission"]["authors"][0]["lastname"] == "Demo"
    assert meta["submission"]["authors"][0]["affiliation"]["abbreviation"] == "DCASE9"
    assert "not a real submission" in meta["submission"]["name"]
    description = meta["system"]["description"]
    assert "2 levels, 4-8 channels, STFT 128/64" in description["separation_model"]  # the tiny net, from its checkpoint
    assert description["training"].startswith("2 steps, batch 2")
    assert meta["system"]["complexity"]["total_parameters"] == parameters > 0
    mean = result.reports["trained"].summary["mean"]
    assert meta["results"]["development_dataset"] == {m: round(mean[m], 3) for m in ("sdr", "sdri", "sisdr")}
    assert report == demo.report.read_bytes() and report.startswith(b"%PDF-")
    assert b"NOT A REAL DCASE SUBMISSION" in report and b"dcase9 demo" in report


@pytest.mark.slow  # shares the demo run
def test_demo_builds_the_listening_page(small_demo: tuple[Path, Any]) -> None:
    out, result = small_demo
    page = result.page
    assert page.page == out / "report" / "index.html" and page.page.is_file()
    assert page.systems == ["trained", "mixture", "oracle"] and page.clips == len(result.reports["trained"].rows)
    comparison = json.loads((out / "report" / "comparison.json").read_text())
    assert [(p["a"], p["b"]) for p in comparison["pairs"]] == [("trained", "mixture"), ("trained", "oracle"),
                                                                ("mixture", "oracle")]
    assert comparison["pairs"][2]["losses"] == page.clips  # the oracle beats the mixture on every clip


@pytest.mark.slow  # shares the demo run
def test_a_trained_checkpoint_is_named_by_its_file_not_as_the_official_system(small_demo: tuple[Path, Any],
                                                                                tmp_path: Path) -> None:
    from dcase9.report.inputs import read_score_report

    out, _ = small_demo
    assert read_score_report(out / "reports" / "trained").name == "model/last.ckpt (baseline)"
    assert read_score_report(out / "reports" / "mixture").name == "mixture"


@pytest.mark.slow  # two more demo runs, everything reused: about 8 s
def test_demo_command_reuses_finished_work_and_fails_loudly(small_demo: tuple[Path, Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from dcase9 import demo
    from dcase9.cli import app

    out, first = small_demo
    monkeypatch.setattr(demo, "run_demo", functools.partial(demo.run_demo, data_options=SMALL_DEMO_DATA,
                                                            train_overrides=[small_demo_model()]))
    estimates = sorted((out / "estimates").glob("*/*.wav"))
    stamps = [path.stat().st_mtime_ns for path in estimates]
    package = first.package.package.read_bytes()

    result = runner.invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "SDRi of the trained model" in text and "Demo_DCASE9_task9.zip: the check passes" in text
    assert "(Demo_DCASE9_task9_1: 16 eval-synth, 12 eval-real outputs matched against the evaluation CSVs)" in text
    # Reused: no new training run, no estimate rewritten; the rebuilt package is byte-identical.
    assert not (out / "model" / "logs" / "version_1").exists()
    assert [path.stat().st_mtime_ns for path in estimates] == stamps
    assert first.package.package.read_bytes() == package

    # A file dcase9 did not write among its estimates: the package is refused, and the demo says so with exit 1.
    stray = out / "estimates" / "trained-eval-real" / "not-a-mixture.wav"
    shutil.copyfile(out / "estimates" / "trained-eval-real" / "demo-real-case-0.wav", stray)
    try:
        result = runner.invoke(app, ["demo", "--out", str(out)])
    finally:
        stray.unlink()
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "the demo package was refused" in text and "[unvouched-output]" in text and "Traceback" not in text


def test_a_moved_demo_folder_recovers_by_itself(tmp_path: Path) -> None:
    """`mv demo-run elsewhere` (or a copy): the estimates were made from the data at its old place; the demo
    computes them again instead of refusing the folder (it has no --overwrite to offer)."""
    from dcase9.demo import run_demo

    stages: list[Stage] = []
    run_demo(tmp_path / "first", train_model=False, progress=False, data_options=SMALL_DEMO_DATA)
    shutil.move(tmp_path / "first", tmp_path / "moved")
    result = run_demo(tmp_path / "moved", train_model=False, progress=False, data_options=SMALL_DEMO_DATA,
                      on_stage=stages.append)
    assert result.reports["mixture"].summary["complete"]
    manifest = json.loads((tmp_path / "moved" / "estimates" / "mixture" / "dcase9-run.json").read_text())
    assert manifest["dataset"]["root"].startswith(str(tmp_path / "moved"))
    assert [(s.number, s.total) for s in stages] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [s.next for s in stages[:-1]] == [s.what for s in stages[1:]] and stages[-1].next is None
    assert stages[-1].elapsed >= stages[0].elapsed >= 0
