"""Every shell and Python example of README.md, CHALLENGE.md and docs/*.md, taken out of the page and run on the
demo data where it can run offline, as docs/extending.md's worked example is (tests/test_extending.py).

Two tables classify the examples: `SHELL` every command of a ```sh / ```bash block, by its exact text (an edited
command is noticed), and `PYTHON` every ```python block, by a snippet of it. A command or block that no table
knows fails, and so does an entry that no page holds any longer, so a new example is classified when it is
written. An example runs (`Run`, `RunPython`) in a workspace laid out as the docs say, with what a reader brings
replaced by small stand-ins:

- the placeholders of the command summaries (DATA_DIR, EST, ...) by folders of the workspace: `data/validation`,
  `data/eval-synth`, `data/eval-real` (the demo sets, cut to a few mixtures) and `evaluation/` (the demo's copy
  of AudioSep's benchmarks);
- a reader's files (street.mp3, baseline.ckpt, augmented.json, submission.yaml, ...) by files made here;
- systems whose weights are downloaded by the tiny models of tests/tiny_models.py and tests/tiny_audioldm.py,
  given as the docs say one's own weights are given (`--checkpoint`, `--weight NAME=PATH`, `--system-config`),
  and the Hugging Face Hub by tests/hub_support.py's, in memory.

Everything else runs with DCASE9_OFFLINE=1 and HF_HUB_OFFLINE=1: an example that would download fails. The
examples that cannot run here are skipped (`Skip`) with the reason: real weights, GPUs, an LLM, the network.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import functools
import io
import json
import re
import shlex
import shutil
import subprocess
import traceback
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

from tests.hub_support import FakeHub
from tests.test_train_run import TINY_RUN
from tests.tiny_models import (SMALL_NET, TINY_CLAP, resunet_weights, system_config, tiny_clap_laion_weights,
                               tokenizer_folder, write_lightning_checkpoint)
from dcase9.cli import app

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "CHALLENGE.md",
             *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md")))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SHELL_LANGUAGES = ("sh", "bash")
NOT_RUN = ("", "yaml", "json")  # fences that hold layouts, diagrams and file contents, not commands
MIXTURES = 2  # per demo set in the workspace: enough to score and compare, few enough to run in seconds
runner = CliRunner()


# -- the examples, as the pages hold them ------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    document: str
    line: int  # of the opening fence
    language: str
    text: str

    @property
    def name(self) -> str:
        return f"{self.document}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for document in DOCUMENTS:
        text = (REPO / document).read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if match.group(1) in (*SHELL_LANGUAGES, "python"):
                found.append(Block(document, text.count("\n", 0, match.start()) + 1, match.group(1), match.group(2)))
    return found


def without_comment(line: str) -> str:
    """The line up to a `#` that starts a shell comment (outside quotes, at a word's start)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def commands(block: Block) -> list[str]:
    """The block's commands in order: continuation lines joined, comments dropped, `a && b` as two, white
    space collapsed (the keys of SHELL)."""
    found: list[str] = []
    pending = ""
    for raw in block.text.splitlines():
        line = without_comment(raw).rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = " ".join((pending + line).split()), ""
        found.extend(part.strip() for part in line.split(" && ") if part.strip())
    return found


# -- the stand-ins and the workspace -----------------------------------------------------------------------------


SYSTEM2_STFT = {"n_fft": 512, "hop_length": 128}  # at 32 kHz, as tests/test_systems.py's stand-in for System 2
# tests/test_train_run.py's tiny net and CLAP for two steps: a training run in seconds, the preset otherwise as is.
TWO_STEPS = {**TINY_RUN, "trainer": {**TINY_RUN["trainer"], "max_steps": 2}}


def cut_set(source: Path, target: Path, rows: int) -> Path:
    """A demo set with only its first `rows` mixtures: the CSV cut (its line ends kept), the rest linked."""
    target.mkdir(parents=True)
    for entry in source.iterdir():
        if entry.suffix == ".csv":
            lines = entry.read_bytes().splitlines(keepends=True)
            (target / entry.name).write_bytes(b"".join(lines[:rows + 1]))
        else:
            (target / entry.name).symlink_to(entry)
    return target


class Assets:
    """What the module's examples share: the cut demo sets and the stand-ins for downloaded weights, each made
    when an example first needs it."""

    def __init__(self, root: Path, demo: Path) -> None:
        self.root, self.demo = root, demo
        self.data = {name: cut_set(demo / name, root / "data" / name, MIXTURES)
                     for name in ("validation", "eval-synth", "eval-real")}

    def write_yaml(self, name: str, content: Any) -> Path:
        path = self.root / name
        path.write_text(yaml.safe_dump(content))
        return path

    @functools.cached_property
    def tokenizer(self) -> Path:
        return tokenizer_folder(self.root / "tokenizer")

    def checkpoint(self, system: str) -> Path:
        """The stand-in checkpoint of the baseline, System 2 (AudioSep at 32 kHz) or System 3 (its mask net)."""
        from tests.tiny_audioldm import write_system3_checkpoint

        path = self.root / f"{system}.ckpt"
        if path.exists():
            return path
        if system == "3":
            return write_system3_checkpoint(path)
        stft = SYSTEM2_STFT if system == "2" else {}
        return write_lightning_checkpoint(path, resunet=resunet_weights(**stft, net=SMALL_NET))

    @functools.cached_property
    def options(self) -> dict[str, dict[str, Any]]:
        """The systems' settings for the stand-in checkpoints (`--system-config`, `system_options=`)."""
        from tests.tiny_audioldm import TINY_MASK_NET

        return {"baseline": system_config(net=SMALL_NET),
                "2": system_config(SYSTEM2_STFT, net=SMALL_NET),
                "3": {"mask_net": TINY_MASK_NET, "clap": dict(TINY_CLAP)}}

    @functools.cached_property
    def clap(self) -> Path:
        """The registry's CLAP (`clap-music-speech-audioset`): a tiny one, in laion's layout."""
        path = self.root / "clap.pt"
        torch.save({"state_dict": {f"module.{k}": v for k, v in tiny_clap_laion_weights(3).items()}}, path)
        return path

    @functools.cached_property
    def audioldm(self) -> list[str]:
        """AudioLDM's VAE and vocoder (cvssp/audioldm-s-full-v2 on the Hub): tiny ones, in its layout."""
        from tests.tiny_audioldm import write_tiny_vae, write_tiny_vocoder

        return ["--weight", f"audioldm-vae={write_tiny_vae(self.root / 'vae')}",
                "--weight", f"audioldm-vocoder={write_tiny_vocoder(self.root / 'vocoder')}"]

    def flags(self, name: str) -> list[str]:
        """The flags that load stand-in `name` (added to a command)."""
        tokenizer = ["--weight", f"roberta-base-tokenizer={self.tokenizer}"]
        if name in ("baseline", "2"):
            return ["--checkpoint", str(self.checkpoint(name)), *tokenizer, "--system-config",
                    str(self.write_yaml(f"{name}.yaml", self.options[name])), "--offline"]
        if name == "3":  # the command names its checkpoint (runs/system3/last.ckpt)
            return [*self.audioldm, *tokenizer, "--system-config", str(self.write_yaml("3.yaml", self.options["3"])),
                    "--offline"]
        if name == "audioldm":
            return [*self.audioldm, "--offline"]
        if name == "ats":
            return ["--weight", f"clap-music-speech-audioset={self.clap}", *tokenizer, "--clap-config",
                    str(self.write_yaml("clap.yaml", dict(TINY_CLAP))), "--offline"]
        if name == "training":
            return ["--config", str(self.write_yaml("training.yaml", TWO_STEPS)), "--offline"]
        assert name == "small demo", name
        return ["--clips-per-class", "1", "--train-clips-per-class", "1"]

    def keywords(self, name: str) -> dict[str, Any]:
        """The keywords that load stand-in `name` (Python examples: `STAND_IN[name]`)."""
        weights = {"roberta-base-tokenizer": self.tokenizer}
        if name == "ats":
            return {"weights": {**weights, "clap-music-speech-audioset": self.clap}, "clap": dict(TINY_CLAP),
                    "offline": True}
        checkpoint = {"checkpoint": self.checkpoint(name)} if name == "2" else {}  # baseline: the reader's file
        return {**checkpoint, "weights": weights, "system_options": self.options[name], "offline": True}


@pytest.fixture(scope="module")
def assets(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Assets:
    return Assets(tmp_path_factory.mktemp("readme-assets"), demo_root)


@dataclass
class Workspace:
    root: Path
    assets: Assets
    monkeypatch: pytest.MonkeyPatch
    hub: FakeHub | None = None

    def path(self, relative: str) -> Path:
        return self.root / relative


@pytest.fixture()
def workspace(assets: Assets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The folder a reader runs the examples in: the data sets where the docs put them, and the files the
    examples take as the reader's own."""
    root = tmp_path / "work"
    (root / "data").mkdir(parents=True)
    for name, folder in assets.data.items():
        (root / "data" / name).symlink_to(folder)
    (root / "evaluation").symlink_to(assets.demo / "evaluation")
    (root / "baseline.ckpt").symlink_to(assets.checkpoint("baseline"))  # the baseline's file, from Zenodo
    training = json.loads((assets.demo / "train" / "train.json").read_text())
    for item in training["data"]:
        item["wav"] = str(assets.demo / "train" / item["wav"])
    for name in ("augmented.json", "data/fsd50k_train.json"):  # training data files (caption files)
        (root / name).write_text(json.dumps(training))
    monkeypatch.chdir(root)
    for variable in ("DCASE9_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(variable, "1")
    return Workspace(root, assets, monkeypatch)


def street_recording(work: Workspace) -> None:
    """The reader's street.mp3: 1.5 s of stereo noise at 44.1 kHz, every channel different."""
    if "MP3" not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) has no MP3 (the README: 'MP3 where libsndfile "
                    "has it')")
    audio = np.cumsum(np.random.default_rng(1).standard_normal((66150, 2)), axis=0)
    sf.write(work.path("street.mp3"), (0.3 * audio / np.max(np.abs(audio))).astype(np.float32), 44100)


def the_hub(work: Workspace) -> FakeHub:
    """tests/hub_support.py's Hub in memory, made on first use: `--push-to-hub` and `hf://` reach it."""
    if work.hub is None:
        work.hub = FakeHub(work.root.parent / "hub-cache", work.monkeypatch)
    return work.hub


# -- what the examples are said to do -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    exit_code: int
    output: str  # stdout and stderr


Check = Callable[[Workspace, Outcome], None]
Prepare = Callable[[Workspace], None]


def flat(text: str) -> str:
    return " ".join(text.split())


def wavs(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.wav"))


def mixture_ids(data: Path) -> list[str]:
    from dcase9.data.formats import open_dataset

    return sorted(m.id for m in open_dataset(data).mixtures)


def estimates_of(data: str, out: str) -> Check:
    """An `<id>.wav` per mixture of the set, and the manifest."""
    def check(work: Workspace, result: Outcome) -> None:
        assert wavs(work.path(out)) == mixture_ids(work.path(data))
        assert (work.path(out) / "dcase9-run.json").is_file()
        assert f"wrote {MIXTURES} estimate(s)" in flat(result.output)
    return check


def score_report(out: str, *metrics: str) -> Check:
    """`per_clip.csv`, `summary.json` and `sdri_vs_snr.png` (validation sets), with these metrics."""
    def check(work: Workspace, result: Outcome) -> None:
        for name in ("per_clip.csv", "summary.json", "sdri_vs_snr.png"):
            assert (work.path(out) / name).is_file(), name
        summary = json.loads((work.path(out) / "summary.json").read_text())
        assert set(metrics) <= set(summary["metrics"]) and summary["scored"] == MIXTURES, summary
    return check


def score_of_the_mixture(data: str, out: str) -> Prepare:
    """A second system's `score` report (the mixture's), for a page that compares two."""
    def prepare(work: Workspace) -> None:
        from dcase9 import api

        estimates = f"est/{Path(out).name}"
        api.infer("mixture", data, estimates, progress=False)
        api.score(data, estimates, out, progress=False)
    return prepare


def page(out: str) -> Check:
    def check(work: Workspace, result: Outcome) -> None:
        assert (work.path(out) / "index.html").is_file() and (work.path(out) / "comparison.json").is_file()
    return check


def separated(work: Workspace, result: Outcome) -> None:
    """`separated/street/a_dog_barks.wav` and `separated/street/rain.wav`, at the recording's sample rate,
    channel count and length."""
    recorded = sf.info("street.mp3")
    for name in ("a_dog_barks", "rain"):
        info = sf.info(f"separated/street/{name}.wav")
        assert (info.samplerate, info.channels, info.frames) == (recorded.samplerate, recorded.channels,
                                                                  recorded.frames)


def validated(work: Workspace, result: Outcome) -> None:
    report = json.loads(result.output)
    assert (report["kind"], report["usable"], report["strict"], report["mixtures"]) == ("validation", True, True,
                                                                                         MIXTURES), report


def usable(work: Workspace, result: Outcome) -> None:
    assert "usable: 0 error(s), 0 warning(s)" in flat(result.output)


def mixed(work: Workspace, result: Outcome) -> None:
    """Validation mixtures and references, by mixture id."""
    ids = mixture_ids(work.path("data/validation"))
    assert wavs(work.path("mixed/mixtures")) == ids and wavs(work.path("mixed/references")) == ids


def suite_of(out: str, *names: str) -> Check:
    """`OUT/<name>/estimates`, `OUT/<name>/report`, `OUT/summary.json`, and AudioSep's README table."""
    def check(work: Workspace, result: Outcome) -> None:
        summary = json.loads((work.path(out) / "summary.json").read_text())
        assert sorted(summary["benchmarks"]) == sorted(names), summary
        for name in names:
            assert (work.path(out) / name / "report" / "summary.json").is_file()
            assert any((work.path(out) / name / "estimates").glob("*.wav"))
        assert "AudioSep's LASS benchmarks" in flat(result.output)
    return check


def demo_data(out: str) -> Check:
    def check(work: Workspace, result: Outcome) -> None:
        for name in ("validation", "eval-synth", "eval-real", "train", "evaluation"):
            assert (work.path(out) / name).is_dir(), name
    return check


def environment(work: Workspace, result: Outcome) -> None:
    report = json.loads(result.output)
    assert report["dcase9"] and report["packages"]["torch"]


def trained(work: Workspace, result: Outcome) -> None:
    """The run ends by printing the `dcase9 infer` command that loads its checkpoint."""
    summary = json.loads(work.path("runs/system1/summary.json").read_text())
    assert summary["status"] == "finished" and work.path("runs/system1/last.ckpt").is_file()
    assert "dcase9 infer --system 1 --checkpoint runs/system1/last.ckpt" in flat(result.output)


def exported(work: Workspace, result: Outcome) -> None:
    """model.safetensors, config.json, tokenizer/ (not roberta-base), the model card and checksums.sha256, which
    `sha256sum -c` checks."""
    folder = work.path("share/system1")
    for name in ("model.safetensors", "config.json", "README.md", "checksums.sha256", "tokenizer"):
        assert (folder / name).exists(), name
    if shutil.which("sha256sum"):
        done = subprocess.run(["sha256sum", "-c", "checksums.sha256"], cwd=folder, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def dry_run(work: Workspace, result: Outcome) -> None:
    assert "would upload to https://huggingface.co/me/dcase9-system1 (dry run: nothing uploaded)" in flat(result.output)
    assert the_hub(work).uploads == []


def pushed(work: Workspace, result: Outcome) -> None:
    assert "https://huggingface.co/me/dcase9-system1" in flat(result.output) and "uploaded" in result.output
    assert ("model", "me/dcase9-system1") in the_hub(work).main


def push_without_dry_run(work: Workspace) -> None:
    """The README's `# then again without --dry-run`."""
    if ("model", "me/dcase9-system1") not in the_hub(work).main:
        run_command("dcase9 export runs/system1 --out share/system1 --report reports/system1 --license mit "
                    "--push-to-hub me/dcase9-system1", Run(hub=True, check=pushed), work)


def submission_config(system: str, **edits: Any) -> Prepare:
    """submission.yaml as docs/submission.md says to write it: docs/submission.example.yaml copied and edited
    (its first system only, with `edits`), and what it names that a reader brings: the technical report, and the
    checkpoint (`system`'s stand-in)."""
    def prepare(work: Workspace) -> None:
        from package_support import EXAMPLE_CONFIG
        from dcase9.submission.pdf import write_one_page_pdf

        config = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
        config["systems"] = [{**config["systems"][0], **edits}]
        work.path("submission.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        (checkpoint,) = config["systems"][0]["parameters"]["checkpoints"]
        work.path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
        work.path(checkpoint).symlink_to(work.assets.checkpoint(system))
        work.path(config["technical_report"]).parent.mkdir(parents=True, exist_ok=True)
        write_one_page_pdf(work.path(config["technical_report"]), "A technical report",
                           ["Authors: Jane Smith.", "Abstract: a test."])
    return prepare


def packaged(work: Workspace, result: Outcome) -> None:
    """Everything under `task9/`: the report, a meta YAML and the outputs of each evaluation set."""
    with zipfile.ZipFile(work.path("Smith_UNI_task9.zip")) as package:
        names = package.namelist()
    assert "task9/Smith_UNI_task9.technical_report.pdf" in names
    assert "task9/Smith_UNI_task9_1/Smith_UNI_task9_1.meta.yaml" in names
    for subset in ("eval_synth", "eval_real"):
        assert len([n for n in names if n.startswith(f"task9/Smith_UNI_task9_1/{subset}/")]) == MIXTURES


def package_passes(work: Workspace, result: Outcome) -> None:
    assert "passes" in flat(result.output), result.output


def package_matches_the_template(work: Workspace, result: Outcome) -> None:
    """Every key path of the template is there (no `template-missing`). Without the data folders the outputs are
    counted against the official sets' sizes, which the demo's are not: those are the only errors."""
    text = flat(result.output)
    assert "template-missing" not in text and "[template-extra]" in text
    assert "FAILS: Smith_UNI_task9.zip: 2 error(s)" in text and text.count("[output-count]") == 2


def system_described(name: str) -> Check:
    def check(work: Workspace, result: Outcome) -> None:
        """`systems NAME --json`: the one system, with its weights and the numbers it was published with."""
        described = json.loads(result.output)
        assert described["name"] == name and described["weights"] and "published" in described

    return check


def package_findings_csv(work: Workspace, result: Outcome) -> None:
    """`package --check --csv`: the findings as rows a script reads (severity, code, entry, line, message)."""
    rows = list(csv.reader(io.StringIO(result.output)))
    assert rows[0][:3] == ["severity", "code", "entry"], rows[:2]
    assert all(len(row) == len(rows[0]) for row in rows)
    # exit 1: the demo sets are smaller than the official ones, the only errors
    assert {row[1] for row in rows[1:] if row[0] == "error"} == {"output-count"}, rows


def package_passes_json(work: Workspace, result: Outcome) -> None:
    assert json.loads(result.output)["ok"] is True


def meta_template(work: Workspace) -> None:
    """The meta template a reader downloads from the DCASE task page: the tests' copy of its key paths."""
    from package_support import HAND_MADE_TEMPLATE

    work.path("task9_meta_template.yaml").write_text(HAND_MADE_TEMPLATE)


def system3_run(work: Workspace) -> None:
    """What the skipped `dcase9 train --preset system3` leaves: a checkpoint at runs/system3/last.ckpt."""
    work.path("runs/system3").mkdir(parents=True, exist_ok=True)
    work.path("runs/system3/last.ckpt").symlink_to(work.assets.checkpoint("3"))


def dry_run_of_augment(work: Workspace, result: Outcome) -> None:
    """What would be asked, and how much is already answered, without calling anything."""
    items = len(json.loads(work.path("data/fsd50k_train.json").read_text())["data"])
    assert f"{items} caption items, prompts ddp: {items} requests, 0 already answered" in flat(result.output)
    assert "first prompt to send" in result.output and not work.path("out/fsd50k-ddp/responses.jsonl").exists()


# -- the tables --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """Run the command: placeholders (PLACEHOLDERS, then `values`) replaced, `[optional]` parts kept, `...`
    dropped, the flags of the stand-ins named in `stand_in` added; then `check` what the docs say it does."""

    stand_in: tuple[str, ...] = ()
    values: dict[str, str] = field(default_factory=dict)
    before: Prepare | None = None
    check: Check | None = None
    code: int = 0
    hub: bool = False  # reaches the Hugging Face Hub: tests/hub_support.py's, in memory
    slow: bool = False


@dataclass(frozen=True)
class RunPython:
    """exec the block in the workspace with each (old, new) of `replace` applied (each must be found once),
    with `STAND_IN[name]` (the keywords that load a stand-in) and the arrays an example takes as the reader's
    (`audio`, `mixture`, `batch`, `reference`); `check` gets the names it made and the value of its last line
    when that is an expression."""

    replace: tuple[tuple[str, str], ...] = ()
    before: Prepare | None = None
    check: Callable[[Workspace, dict[str, Any], Any], None] | None = None
    slow: bool = False


@dataclass(frozen=True)
class Skip:
    reason: str


PLACEHOLDERS = {
    "DATA_DIR": "data/validation", "MIXED": "mixed", "EST": "est/baseline", "REPORT": "reports/baseline",
    "REPORT_A": "reports/baseline", "REPORT_B": "reports/mixture", "PAGE": "page", "EVALUATION_DIR": "evaluation",
    "SYSTEM": "baseline", "NAME": "clotho",
}

SUBMISSION_BASELINE = submission_config("baseline")  # the example's system 1 as it is

SHELL: dict[str, Run | Skip] = {
    # README.md: first commands
    "make demo": Skip("the whole demo (minutes): tests/test_train_demo.py runs `dcase9 demo` on small demo data"),
    "make test": Skip("the test suite itself, this file included"),
    # README.md: separate your own audio
    'dcase9 separate street.mp3 -q "a dog barks" -q "rain" -s 2 -o separated':
        Run(("2",), before=street_recording, check=separated),
    # README.md: using it
    "dcase9 validate DATA_DIR [--json] [--strict]": Run(check=validated),
    "dcase9 mix DATA_DIR --out MIXED": Run(check=mixed),
    "dcase9 systems [NAME] [--json]": Run(values={"NAME": "2"}, check=system_described("2")),
    "dcase9 download --system baseline": Skip("downloads the baseline's checkpoint (Zenodo) and CLAP (the Hub)"),
    "dcase9 infer --system baseline --data DATA_DIR --out EST":
        Run(("baseline",), check=estimates_of("data/validation", "est/baseline")),
    "dcase9 score --data DATA_DIR --estimates EST --out REPORT [--ats]":
        Run(("ats",), check=score_report("reports/baseline", "sdri", "ats")),
    "dcase9 report REPORT_A REPORT_B ... --out PAGE":
        Run(before=score_of_the_mixture("data/validation", "reports/mixture"), check=page("page")),
    "dcase9 suite EVALUATION_DIR -s SYSTEM -o OUT [--only NAME]":
        Run(("baseline",), values={"OUT": "results"}, check=suite_of("results", "clotho")),
    "dcase9 demo-data OUT [--force]": Run(("small demo",), values={"OUT": "demo"}, check=demo_data("demo")),
    "dcase9 env [--json]": Run(check=environment),
    # README.md, docs/augment.md: caption augmentation
    "dcase9 augment fsd50k.json -d fsd50k -o out/fsd50k": Skip("an LLM: downloads Phi-2 and roberta-large"),
    "dcase9 augment fsd50k.json -d fsd50k --tags dev.csv -p gpt4-keywords -b openai -m gpt-4o -o out/gpt":
        Skip("the OpenAI API: a key and the network"),
    "dcase9 augment -o out/fsd50k --reselect -t 0.8": Skip("reselects the LLM's run above"),
    "dcase9 augment data/fsd50k_train.json --dataset fsd50k --out out/fsd50k-ddp":
        Skip("an LLM: downloads Phi-2 and roberta-large"),
    "export OPENAI_API_KEY=...": Skip("the OpenAI API key, for the next command"),
    "dcase9 augment data/fsd50k_train.json -d fsd50k --tags FSD50K.ground_truth/dev.csv --prompt gpt4-keywords "
    "--backend openai --model gpt-4o --rpm 500 --out out/fsd50k-gpt": Skip("the OpenAI API: a key and the network"),
    "vllm serve Qwen/Qwen2.5-7B-Instruct --data-parallel-size 8 &": Skip("vLLM on eight GPUs"),
    "dcase9 augment data/wavcaps_audioset.json -d wavcaps-audioset -b openai -m Qwen/Qwen2.5-7B-Instruct "
    "--base-url http://localhost:8000/v1 --concurrency 256 --out out/as-ddp": Skip("the vLLM server above"),
    "dcase9 augment --out out/fsd50k-ddp --reselect --threshold 0.8": Skip("reselects the LLM's run above"),
    "dcase9 augment data/fsd50k_train.json -d fsd50k --out out/fsd50k-ddp --dry-run": Run(check=dry_run_of_augment),
    # README.md, docs/training.md: training
    "pip install 'dcase9[train]'": Skip("installs packages"),
    "dcase9 train --preset system1 --data fsd50k_gpt4/augmented.json --data clotho_development.json "
    "--validation data/validation --out runs/system1 --devices 8": Skip("eight GPUs and the training data sets"),
    "dcase9 train --out runs/system1 --resume": Skip("resumes the eight-GPU run above"),
    "dcase9 infer --system 1 --checkpoint runs/system1/last.ckpt --data data/validation --out est/system1":
        Skip("the checkpoint of the eight-GPU run above (README's 'Share your system' runs these steps)"),
    "dcase9 score --data data/validation --estimates est/system1 --out reports/system1":
        Skip("the estimates of the eight-GPU run above"),
    "dcase9 train --preset baseline --data clotho_development.json --data fsd50k_gpt4.json --resume-from "
    "workspace/checkpoints/train/audiosep_base,devices=8/step=20000.ckpt --out runs/continued":
        Skip("a checkpoint of the official training code and the training data sets"),
    "dcase9 train --preset system4 --data ... --out runs/s4 --devices 8": Skip("eight GPUs; `--data ...` elided"),
    "dcase9 train --preset system4 --data ... --out runs/s4 --devices 8 --num-nodes 2 --strategy ddp":
        Skip("two nodes of eight GPUs; `--data ...` elided"),
    "dcase9 train --preset system3 --data clotho_dev.json --data fsd50k.json --validation data/validation "
    "--out runs/system3 --devices 2": Skip("two GPUs, AudioLDM and the training data sets"),
    "dcase9 train ... --set model.loss.ldm_weight=1.0": Skip("elided: the command above with a setting"),
    "dcase9 train ... --set model.segment_frames=256 --set data.segment_seconds=2.56":
        Skip("elided: the command above with settings"),
    # README.md, docs/training.md: share your system
    "dcase9 train --preset system1 --data augmented.json --validation data/validation --out runs/system1":
        Run(("training",), check=trained, slow=True),
    "dcase9 infer -s 1 --checkpoint runs/system1/last.ckpt -d data/validation -o est/system1":
        Run(check=estimates_of("data/validation", "est/system1")),
    "dcase9 score -d data/validation -e est/system1 -o reports/system1 --ats":
        Run(("ats",), check=score_report("reports/system1", "sdri", "ats")),
    "dcase9 export runs/system1 --out share/system1 --report reports/system1 --license mit": Run(check=exported),
    "dcase9 export runs/system1 --out share/system1 --report reports/system1 --license mit "
    "--push-to-hub me/dcase9-system1 --dry-run": Run(hub=True, check=dry_run),
    "dcase9 export runs/system1 --out share/system1 --report reports/system1 --license mit "
    "--push-to-hub me/dcase9-system1": Run(hub=True, check=pushed),
    "dcase9 infer -s 1 --checkpoint hf://me/dcase9-system1 -d data/eval-real -o est/real":
        Run(hub=True, before=push_without_dry_run, check=estimates_of("data/eval-real", "est/real")),
    # README.md, docs/submission.md: submitting
    "dcase9 validate data/eval-synth": Run(check=usable),
    "dcase9 validate data/eval-real": Run(check=usable),
    "dcase9 infer -s 2 -d data/eval-synth -o est/2/synth":
        Run(("2",), check=estimates_of("data/eval-synth", "est/2/synth")),
    "dcase9 infer -s 2 -d data/eval-real -o est/2/real": Run(("2",), check=estimates_of("data/eval-real", "est/2/real")),
    "dcase9 infer -s 2 -d data/validation -o est/2/val": Run(("2",), check=estimates_of("data/validation", "est/2/val")),
    "dcase9 score -d data/validation -e est/2/val -o reports/2 --ats":
        Run(("ats",), check=score_report("reports/2", "sdri", "ats")),
    "dcase9 package --config submission.yaml --out Smith_UNI_task9.zip": Run(check=packaged),
    "dcase9 package --check Smith_UNI_task9.zip --data-synth data/eval-synth --data-real data/eval-real":
        Run(check=package_passes),
    "dcase9 infer --system baseline --data data/eval-synth --out estimates/baseline/eval-synth":
        Run(("baseline",), check=estimates_of("data/eval-synth", "estimates/baseline/eval-synth")),
    "dcase9 infer --system baseline --data data/eval-real --out estimates/baseline/eval-real":
        Run(("baseline",), check=estimates_of("data/eval-real", "estimates/baseline/eval-real")),
    "dcase9 infer --system baseline --data data/validation --out estimates/baseline/validation":
        Run(("baseline",), check=estimates_of("data/validation", "estimates/baseline/validation")),
    "dcase9 score --data data/validation --estimates estimates/baseline/validation --out reports/baseline":
        Run(check=score_report("reports/baseline", "sdri")),
    "dcase9 package --check Smith_UNI_task9.zip --config submission.yaml --json": Run(check=package_passes_json),
    "dcase9 package --check Smith_UNI_task9.zip --csv": Run(check=package_findings_csv, code=1),
    "dcase9 package --check Smith_UNI_task9.zip --template task9_meta_template.yaml":
        Run(before=meta_template, check=package_matches_the_template, code=1),
    # docs/benchmarks.md
    "dcase9 suite evaluation -s 2 -o results/audiosep":
        Run(("2",), check=suite_of("results/audiosep", "vggsound", "music", "esc50", "audioset", "audiocaps",
                                   "clotho"), slow=True),
    "dcase9 suite evaluation -s baseline -o results/baseline --only audioset --only clotho":
        Run(("baseline",), check=suite_of("results/baseline", "audioset", "clotho")),
    "dcase9 validate evaluation/data/audioset": Run(check=usable),
    "dcase9 infer -s 2 -d evaluation/data/audiocaps -o est/audiocaps [--query-column labels]": Run(("2",)),
    "dcase9 score -d evaluation/data/audiocaps -e est/audiocaps -o reports/audiocaps [--query-column labels]": Run(),
    "dcase9 report results/audiosep/clotho/report results/baseline/clotho/report -o pages/clotho":
        Run(check=page("pages/clotho")),
    "dcase9 demo-data demo": Run(("small demo",), check=demo_data("demo")),
    # docs/irm-ldm.md
    "dcase9 train --preset system3 --data clotho_dev.json --data fsd50k.json --validation data/validation "
    "--out runs/system3": Skip("trains System 3: a GPU, AudioLDM and the training data sets (a tiny checkpoint "
                               "stands in for its last.ckpt below)"),
    "dcase9 infer --system 3 --data data/validation --out est/system3 --checkpoint runs/system3/last.ckpt":
        Run(("3",), before=system3_run, check=estimates_of("data/validation", "est/system3"), slow=True),
    "dcase9 score --data data/validation --estimates est/system3 --out reports/system3":
        Run(check=score_report("reports/system3", "sdri")),
    "dcase9 infer --system 3-roundtrip --data data/validation --out est/roundtrip":
        Run(("audioldm",), check=estimates_of("data/validation", "est/roundtrip"), slow=True),
    'echo "mask: ones" > unmasked.yaml': Run(),
    "dcase9 infer --system 3 --system-config unmasked.yaml --data data/validation --out est/unmasked":
        Run(("audioldm",), check=estimates_of("data/validation", "est/unmasked"), slow=True),
    "dcase9 score --data data/validation --estimates est/roundtrip --out reports/roundtrip":
        Run(check=score_report("reports/roundtrip", "sdri")),
}

# The `before` of a command that appears in several blocks with different inputs.
BEFORE = {
    ("README.md", "dcase9 package --config submission.yaml --out Smith_UNI_task9.zip"):
        submission_config("2", estimates={"eval-synth": "est/2/synth", "eval-real": "est/2/real"},
                          development_report="reports/2"),
    ("docs/submission.md", "dcase9 package --config submission.yaml --out Smith_UNI_task9.zip"): SUBMISSION_BASELINE,
}


def reader_arrays() -> dict[str, Any]:
    rng = np.random.default_rng(2)
    mixture = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    return {"audio": (0.1 * rng.standard_normal(44100)).astype(np.float32), "mixture": mixture,
            "batch": (0.1 * rng.standard_normal((2, 16000))).astype(np.float32),
            "reference": (0.5 * mixture).astype(np.float32)}


def separated_in_python(work: Workspace, names: dict[str, Any], last: Any) -> None:
    """dog.wav as the recording (rate, channels, length); an array back in the input's shape."""
    written, recorded = sf.info("dog.wav"), sf.info("street.mp3")
    assert (written.samplerate, written.channels, written.frames) == (recorded.samplerate, recorded.channels,
                                                                      recorded.frames)
    assert names["estimate"].shape == names["audio"].shape


def api_verbs(work: Workspace, names: dict[str, Any], last: Any) -> None:
    assert names["report"].usable_strictly
    assert wavs(work.path("est/baseline")) == mixture_ids(work.path("data/validation"))
    assert {"sdr", "sdri", "sisdr", "ats"} <= set(names["scores"].summary["mean"])
    assert work.path("reports/page/index.html").is_file() and work.path("reports/page/comparison.json").is_file()


def separator_in_memory(work: Workspace, names: dict[str, Any], last: Any) -> None:
    """`(samples,) numpy in, numpy out`, `(batch, samples)`, and the last line's `32000 (the rate it runs at), "2"`."""
    assert isinstance(names["estimate"], np.ndarray) and names["estimate"].shape == names["mixture"].shape
    assert names["estimates"].shape == names["batch"].shape
    assert names["oracle"].shape == names["mixture"].shape
    assert last == (32000, "2")


def submission_inputs(work: Workspace) -> None:
    """What docs/submission.md's steps 1-3 leave (the `mixture` system's outputs), submission.yaml, model.ckpt."""
    from dcase9 import api

    for subset in ("eval-synth", "eval-real", "validation"):
        api.infer("mixture", f"data/{subset}", f"estimates/baseline/{subset}", progress=False)
    api.score("data/validation", "estimates/baseline/validation", "reports/baseline", progress=False)
    SUBMISSION_BASELINE(work)
    work.path("model.ckpt").symlink_to(work.assets.checkpoint("baseline"))


def submission_in_python(work: Workspace, names: dict[str, Any], last: Any) -> None:
    assert names["result"].ok and names["report"].ok
    assert names["count"].total > 0 and work.path("report/draft.pdf").is_file()


GPU = "cuda" if torch.cuda.is_available() else "cpu"

PYTHON: dict[str, RunPython | Skip] = {
    # README.md: separate your own audio
    'separator.separate_file("street.mp3", "a dog barks", out="dog.wav")':
        RunPython((('load_separator("2")', 'load_separator("2", **STAND_IN["2"])'),), before=street_recording,
                  check=separated_in_python),
    # README.md: Python API
    'report = api.validate("data/validation")':
        RunPython((('checkpoint="baseline.ckpt")', 'checkpoint="baseline.ckpt", **STAND_IN["baseline"])'),
                   ("api.load_ats_scorer()", 'api.load_ats_scorer(**STAND_IN["ats"])')), check=api_verbs),
    'separator = dcase9.load_separator("2", device="cuda", precision="bf16")':
        RunPython((('device="cuda", precision="bf16")', f'device="{GPU}", precision="bf16", **STAND_IN["2"])'),),
                  check=separator_in_memory),
    # docs/augment.md
    'backend=BackendConfig(kind="openai", model="Qwen/Qwen2.5-7B-Instruct",':
        Skip("an OpenAI-compatible server (vLLM) at localhost:8000"),
    # docs/extending.md
    "# name, label, compute": Skip("a line of my_extension.py below"),
    "# my_extension.py": Skip("tests/test_extending.py runs the worked example"),
    "# run_example.py": Skip("tests/test_extending.py runs the worked example"),
    # docs/irm-ldm.md
    "loss_fn = IrmLdmLoss(": Skip("a sketch of a training step: its folders, loader and CLAP are the reader's"),
    # docs/submission.md
    'result = build_package("submission.yaml", "Smith_UNI_task9.zip")':
        RunPython(before=submission_inputs, check=submission_in_python),
    # docs/training.md
    'config = assemble_config(preset="system1"':
        Skip("trains System 1 at full size: a GPU, CLAP and the training data sets"),
}


# -- running them ------------------------------------------------------------------------------------------------


def argv(command: str, run: Run, work: Workspace) -> list[str]:
    values = {**PLACEHOLDERS, **run.values}
    words = []
    for word in shlex.split(command):
        word = word.removeprefix("[").removesuffix("]")
        if word != "...":
            words.append(values.get(word, word))
    for name in run.stand_in:
        words += work.assets.flags(name)
    return words


def run_command(command: str, run: Run, work: Workspace) -> Outcome:
    if run.before is not None:
        run.before(work)
    words = argv(command, run, work)
    env: dict[str, str | None] = {"COLUMNS": "200"}
    if run.hub:
        the_hub(work)
        env.update(DCASE9_OFFLINE=None, HF_HUB_OFFLINE=None)
    if words[0] == "dcase9":
        invoked = runner.invoke(app, words[1:], env=env)
        crash = invoked.exception if not isinstance(invoked.exception, SystemExit) else None
        result = Outcome(invoked.exit_code, invoked.output + "".join(traceback.format_exception(crash) if crash else []))
    else:
        done = subprocess.run(command, shell=True, capture_output=True, text=True, cwd=work.root)
        result = Outcome(done.returncode, done.stdout + done.stderr)
    assert result.exit_code == run.code, (f"{command}: exit {result.exit_code}, expected {run.code}\n"
                                          f"ran: {shlex.join(words)}\n{result.output}")
    if run.check is not None:
        run.check(work, result)
    return result


def shell_entries(block: Block) -> list[tuple[str, Run | Skip]]:
    entries = []
    for command in commands(block):
        entry = SHELL.get(command)
        assert entry is not None, (f"{block.name}: a command that SHELL does not know: classify it in "
                                   f"tests/test_readme_examples.py\n    {command!r}")
        before = BEFORE.get((block.document, command))
        entries.append((command, dataclasses.replace(entry, before=before) if isinstance(entry, Run) and before
                        else entry))
    return entries


def python_entry(block: Block) -> RunPython | Skip:
    matches = [entry for snippet, entry in PYTHON.items() if snippet in block.text]
    assert len(matches) == 1, (f"{block.name}: a Python example that PYTHON does not know (or knows twice): "
                               f"classify it in tests/test_readme_examples.py\n{block.text}")
    return matches[0]


def run_python(block: Block, entry: RunPython, work: Workspace) -> None:
    if entry.before is not None:
        entry.before(work)
    text = block.text
    for old, new in entry.replace:
        assert text.count(old) == 1, f"{block.name}: the example no longer holds {old!r}"
        text = text.replace(old, new)
    tree = ast.parse(text, filename=block.name)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    assert last is None or isinstance(last, ast.Expr)
    stand_ins = {name: work.assets.keywords(name) for name in re.findall(r'STAND_IN\["([\w ]+)"\]', text)}
    names: dict[str, Any] = {"__name__": "__readme__", "STAND_IN": stand_ins, **reader_arrays()}
    exec(compile(tree, block.name, "exec"), names)  # the documentation's own example
    value = eval(compile(ast.Expression(last.value), block.name, "eval"), names) if last else None
    if entry.check is not None:
        entry.check(work, names, value)


def is_slow(block: Block) -> bool:
    """A block with a slow step (or one that no table knows yet: the test says so, quickly)."""
    try:
        entries = [python_entry(block)] if block.language == "python" else [e for _, e in shell_entries(block)]
    except AssertionError:
        return False
    return any(getattr(entry, "slow", False) for entry in entries)


BLOCKS = blocks()


def test_every_example_is_classified() -> None:
    """A command or Python block the tables do not know, or a table entry no page holds, fails; so does a fence
    of another language or an indented one, which this file would not read."""
    unknown, used = [], set()
    for document in DOCUMENTS:
        text = (REPO / document).read_text(encoding="utf-8")
        unknown += [f"{document}: a fence of language {match.group(1)!r}" for match in FENCE.finditer(text)
                    if match.group(1) not in (*SHELL_LANGUAGES, "python", *NOT_RUN)]
        unknown += [f"{document}: an indented fence {line.strip()!r}" for line in text.splitlines()
                    if line.startswith((" ", "\t")) and line.lstrip().startswith("```")]
    for block in BLOCKS:
        if block.language == "python":
            snippets = [s for s in PYTHON if s in block.text]
            if len(snippets) != 1:
                unknown.append(f"{block.name}: a Python block {len(snippets)} PYTHON snippets match:\n{block.text}")
            used.update(snippets)
        else:
            known = [c for c in commands(block) if c in SHELL]
            unknown += [f"{block.name}: {c!r}" for c in commands(block) if c not in SHELL]
            used.update(known)
    stale = [f"{key!r}" for key in (*SHELL, *PYTHON) if key not in used]
    stale += [f"BEFORE {key!r}" for key in BEFORE if key[1] not in used]
    assert not unknown, "examples to classify in tests/test_readme_examples.py:\n" + "\n".join(unknown)
    assert not stale, "entries that no page holds any longer:\n" + "\n".join(stale)


@pytest.mark.parametrize("block", [pytest.param(b, id=b.name, marks=[pytest.mark.slow] if is_slow(b) else [])
                                   for b in BLOCKS])
def test_the_example_runs_as_documented(block: Block, workspace: Workspace) -> None:
    if block.language == "python":
        example = python_entry(block)
        if isinstance(example, Skip):
            pytest.skip(example.reason)
        run_python(block, example, workspace)
        return
    entries = shell_entries(block)
    if all(isinstance(entry, Skip) for _, entry in entries):
        pytest.skip("; ".join(dict.fromkeys(entry.reason for _, entry in entries if isinstance(entry, Skip))))
    for command, entry in entries:
        if isinstance(entry, Run):
            run_command(command, entry, workspace)
