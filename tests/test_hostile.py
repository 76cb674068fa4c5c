"""Hostile and degenerate input, one line per case: what dcase9 refuses, and that it never writes a
non-finite or stale result with exit 0.

Every case in `CASES` builds its input in a fresh folder (a `Workspace` with copies of the demo
sets), runs one `dcase9` command, and checks the exit code, a fragment of the message (whitespace
is normalised: rich wraps long lines), that no traceback was printed, and optionally the files left
behind. A case with `memory_mb` runs in a subprocess whose address space may grow by at most that
much (`resource.setrlimit`): the failure mode there is memory, not time.

A case with `forbid` names text (a secret) that must appear neither in the output nor in any file
the command wrote; `env` sets the command's environment.

To add a case, add one `Case(...)` line; builders and checks are small functions of the workspace
(`w.root` is the case's folder, `w.stack` an ExitStack for servers and other things to stop).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from dcase9.submission.pdf import one_page_pdf
from dcase9.cli import app
from tests.names_support import CAFE_NFC, CAFE_NFD, beside, cafe_set, nothing_packaged, package_data, rename_mixtures

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
FAKE_OPENAI_KEY = "sk-" + "H0st1leT3st" * 4  # the openai-api-key format of the shipped profile
ECHOED_KEY = "sk-hostile-echo-0123456789abcdef"
REDACTED = "<value of OPENAI_API_KEY redacted>"
LABEL = "Evil_HACK_task9_1"
META = f"task9/{LABEL}/{LABEL}.meta.yaml"
REPORT = "task9/Evil_HACK_task9.technical_report.pdf"
OUTPUT = f"task9/{LABEL}/eval_real/case-0.wav"



class Workspace:
    """A test's folder: copies of the demo sets on demand, and helpers that damage them."""

    def __init__(self, root: Path, demo: Path, stack: ExitStack):
        self.root, self.demo, self.stack = root, demo, stack
        self.out = root / "out"
        self.saved: dict[str, Any] = {}  # what a builder wants its check to see

    def copy(self, subset: str) -> Path:
        target = self.root / subset
        if not target.exists():
            shutil.copytree(self.demo / subset, target)
        return target

    def audio(self, subset: str, index: int = 0) -> Path:
        folder = next(p for p in sorted(self.copy(subset).iterdir()) if p.is_dir())
        return sorted(folder.glob("*.wav"))[index]

    def dcase9(self, *args: str | Path) -> str:
        """Run a preparatory command; it must succeed."""
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        return result.output

    def infer(self, subset: str, *extra: str, system: str = "mixture") -> list[str]:
        return ["infer", "-s", system, "-d", str(self.copy(subset)), "-o", str(self.out), *extra]

    def afile(self) -> Path:
        path = self.root / "a-file"
        path.write_text("not a folder\n")
        return path

    def estimates(self) -> dict[str, Path]:
        return {p.stem: p for p in self.out.glob("*.wav")}


def put_samples(path: Path, value: float, count: int = 100) -> None:
    """Overwrite `count` samples of a WAV with `value` (NaN, inf), keeping it a readable file."""
    data, rate = sf.read(path, dtype="float32")
    data[100:100 + count] = value
    sf.write(path, data, rate, subtype="FLOAT")


def truncate(path: Path, keep: int = 20000) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def strict_json(path: Path) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{path}: {constant} is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def all_finite(paths: Any) -> bool:
    return all(np.all(np.isfinite(sf.read(p, dtype="float32")[0])) for p in paths)


def ledger(w: Workspace) -> dict[str, dict[str, Any]]:
    lines = (w.out / "dcase9-outputs.jsonl").read_text().splitlines()
    return {record["id"]: record for record in map(json.loads, lines)}


# --- builders and checks used by several cases ------------------------------------------------------


def nan_in_real_input(w: Workspace) -> list[str]:
    put_samples(w.audio("eval-real", 0), np.nan)
    return w.infer("eval-real")


def real_minus_case0(w: Workspace) -> None:
    made = w.estimates()
    assert "demo-real-case-0" not in made and len(made) == 11 and all_finite(made.values())
    manifest = strict_json(w.out / "dcase9-run.json")
    assert manifest["status"] == "incomplete" and [p["id"] for p in manifest["problems"]] == ["demo-real-case-0"]


def inf_in_validation_clip(w: Workspace) -> list[str]:
    clip = w.audio("validation", 0)
    put_samples(clip, np.inf)
    rows = (w.copy("validation") / "lass_synthetic_validation.csv").read_text().splitlines()[1:13]
    w.saved["uses"] = sum(clip.stem in [cell.strip() for cell in row.split(",")[:2]] for row in rows)
    return w.infer("validation", "--limit", "12", system="oracle")


def oracle_left_out_the_clip(w: Workspace) -> None:
    made = w.estimates()
    assert len(made) == 12 - w.saved["uses"] and w.saved["uses"] > 0 and all_finite(made.values())


def mix_with_nan_clip(w: Workspace) -> list[str]:
    w.saved["clip"] = w.audio("validation", 1)
    put_samples(w.saved["clip"], np.nan, count=1)
    return ["mix", str(w.copy("validation")), "--out", str(w.out)]


def mix_skipped_the_clip(w: Workspace) -> None:
    rows = (w.out / "mixtures.csv").read_text().splitlines()[1:]
    assert rows and not any(w.saved["clip"].stem in row.split(",")[0] for row in rows)
    assert all_finite(w.out.glob("*/*.wav")) and len(list((w.out / "references").glob("*.wav"))) == len(rows)


def score_with_nan_reference(w: Workspace) -> list[str]:
    data = w.copy("validation")
    w.dcase9(*w.infer("validation"))
    put_samples(w.audio("validation", 2), np.nan, count=1)
    return ["score", "-d", str(data), "-e", str(w.out), "-o", str(w.root / "report")]


def score_with_unreadable_clip(w: Workspace) -> list[str]:
    data = w.copy("validation")
    w.dcase9(*w.infer("validation"))
    w.audio("validation", 2).write_bytes(b"RIFF, but not audio")
    return ["score", "-d", str(data), "-e", str(w.out), "-o", str(w.root / "report")]


def score_with_nan_estimate(w: Workspace) -> list[str]:
    w.dcase9(*w.infer("validation", "--limit", "4"))
    put_samples(sorted(w.out.glob("*.wav"))[0], np.nan, count=3)
    for name in ("dcase9-run.json", "dcase9-outputs.jsonl"):  # another tool's estimates (dcase9 never writes NaN)
        (w.out / name).unlink()
    return ["score", "-d", str(w.copy("validation")), "-e", str(w.out), "-o", str(w.root / "report")]


def report_is_valid(w: Workspace) -> None:
    summary = strict_json(w.root / "report" / "summary.json")
    rows = (w.root / "report" / "per_clip.csv").read_text().splitlines()[1:]
    assert summary["scored"] == len(rows) > 0 and not summary["complete"]
    assert all(math.isfinite(float(value)) for row in rows for value in row.split(",")[-4:])
    assert all(isinstance(v, float) for v in summary["mean"].values())


def infer_then(change: Callable[[Workspace], None], subset: str = "eval-real") -> Callable[[Workspace], list[str]]:
    """A finished run, then `change`; the case runs the same command again (the files after the change
    are in `w.saved["after"]`)."""

    def build(w: Workspace) -> list[str]:
        w.dcase9(*w.infer(subset))
        change(w)
        w.saved["after"] = {p.name: p.read_bytes() for p in w.out.iterdir() if p.is_file()}
        return w.infer(subset)

    return build


def folder_as_it_was(w: Workspace) -> None:
    """A refused run changed nothing (the lock file it held is gone again)."""
    assert {p.name: p.read_bytes() for p in w.out.iterdir() if p.is_file()} == w.saved["after"]


def edit_query(w: Workspace) -> None:
    path = w.copy("eval-real") / "lass_real_evaluation.csv"
    rows = list(csv.reader(path.read_text().splitlines()))
    rows = [[name, "a cat meows" if name == "demo-real-case-5.wav" else query] for name, query in rows]
    path.write_text("".join(f"{name},{query}\n" if "," not in query else f'{name},"{query}"\n' for name, query in rows))


def query_recorded(w: Workspace) -> None:
    assert ledger(w)["demo-real-case-5"]["source"]["query"] == "a cat meows"


def replace_input(w: Workspace) -> None:
    path = w.copy("eval-real") / "lass_evaluation_real" / "demo-real-case-3.wav"
    data, rate = sf.read(path, dtype="float32")
    w.saved["new"] = data[::-1].copy()  # other content, same length and size
    sf.write(path, w.saved["new"], rate, subtype="PCM_16")


def estimate_of_new_input(w: Workspace) -> None:
    estimate, _ = sf.read(w.out / "demo-real-case-3.wav", dtype="float32")
    np.testing.assert_allclose(estimate, w.saved["new"], atol=1e-4)


def symlink_output(w: Workspace) -> None:
    target = w.out / "demo-real-case-2.wav"
    target.unlink()
    target.symlink_to(w.out / "demo-real-case-1.wav")


def zero_output(w: Workspace) -> None:
    path = w.out / "demo-real-case-4.wav"
    data, rate = sf.read(path, dtype="float32")
    sf.write(path, np.zeros_like(data), rate, subtype="FLOAT")  # same length, other content


def outputs_are_plain_and_current(w: Workspace) -> None:
    made = w.estimates()
    assert len(made) == 12 and not any(p.is_symlink() for p in made.values())
    for output_id, path in made.items():
        estimate, _ = sf.read(path, dtype="float32")
        mixture, _ = sf.read(w.copy("eval-real") / "lass_evaluation_real" / f"{output_id}.wav", dtype="float32")
        np.testing.assert_allclose(estimate, mixture, atol=1e-4)


def real_then_synth(w: Workspace, *extra: str) -> list[str]:
    w.dcase9(*w.infer("eval-real"))
    return w.infer("eval-synth", *extra)


def only_real_outputs(w: Workspace) -> None:
    assert sorted(w.estimates()) == sorted(f"demo-real-case-{k}" for k in range(12))


def only_synth_outputs(w: Workspace) -> None:
    assert all(name.startswith("demo-synth-case-") for name in w.estimates()) and len(w.estimates()) == 16
    assert strict_json(w.out / "dcase9-run.json")["dataset"]["kind"] == "eval-synth"


def remove_row(w: Workspace) -> None:
    csv = w.copy("eval-real") / "lass_real_evaluation.csv"
    csv.write_text("".join(line for line in csv.read_text().splitlines(keepends=True) if "case-7.wav" not in line))


def float_then_pcm16(w: Workspace, *extra: str) -> list[str]:
    w.dcase9(*w.infer("eval-real"))
    w.saved["bytes"] = {p.name: p.read_bytes() for p in w.out.glob("*.wav")}
    return w.infer("eval-real", "--pcm16", *extra)


def all_pcm16(w: Workspace) -> None:
    assert len(w.estimates()) == 12
    assert {sf.info(str(path)).subtype for path in w.estimates().values()} == {"PCM_16"}


def damaged_manifest(w: Workspace, *extra: str) -> list[str]:
    w.dcase9(*w.infer("validation", "--limit", "2"))
    (w.out / "dcase9-run.json").write_text('{"identity": {"system": "mixture"')
    w.saved["bytes"] = {p.name: p.read_bytes() for p in w.out.glob("*.wav")}
    return w.infer("validation", "--limit", "2", *extra, system="oracle")


def outputs_untouched(w: Workspace) -> None:
    assert {p.name: p.read_bytes() for p in w.out.glob("*.wav")} == w.saved["bytes"]


def oracle_manifest(w: Workspace) -> None:
    assert strict_json(w.out / "dcase9-run.json")["identity"]["system"] == "oracle"


def damaged_ledger(w: Workspace) -> None:
    path = w.out / "dcase9-outputs.jsonl"
    path.write_text("not json\n" + path.read_text())


def ledger_pointing_outside(w: Workspace) -> list[str]:
    w.dcase9(*w.infer("eval-synth"))
    w.saved["victim"] = w.root / "victim.wav"
    w.saved["victim"].write_bytes(b"not yours")
    with (w.out / "dcase9-outputs.jsonl").open("a") as handle:
        for record_id in ("../victim", "demo-synth-case-0"):
            handle.write(json.dumps({"id": record_id, "files": {"../victim.wav": {}, str(w.saved["victim"]): {}}}) + "\n")
    return w.infer("eval-real", "--overwrite")


def victim_survives(w: Workspace) -> None:
    assert w.saved["victim"].read_bytes() == b"not yours"
    # The forged record replaced the one that vouched for demo-synth-case-0.wav: that file is no longer
    # provably ours, so it stays; every other synth output went.
    assert sorted(w.estimates()) == sorted([*(f"demo-real-case-{k}" for k in range(12)), "demo-synth-case-0"])


def locked_folder(w: Workspace) -> list[str]:
    from dcase9.files import exclusive_lock

    w.stack.enter_context(exclusive_lock(w.out, "infer"))  # held for the duration of the case
    return w.infer("eval-real")


def nothing_written(w: Workspace) -> None:
    assert not w.estimates() and not (w.out / "dcase9-run.json").exists()


def augment_without_key(w: Workspace) -> list[str]:
    pytest.importorskip("bert_score")  # without it, the run is refused for that first (the augment extra)
    return ["augment", str(w.copy("train") / "train.json"), "--out", str(w.out), "--prompt", "dip",
            "--backend", "openai", "--model", "gpt-4", "--api-key-env", "DCASE9_TEST_NO_SUCH_KEY"]


def folder_left_empty(w: Workspace) -> None:
    assert not w.out.exists()  # no config.yaml a later run would inherit, no lock, no empty --out folder


def train_args(w: Workspace, *extra: str) -> list[str]:
    pytest.importorskip("lightning")
    from tests.test_train_run import TINY_RUN

    config = w.root / "tiny.yaml"
    config.write_text(json.dumps({**TINY_RUN, "validation": {"data": None}}))  # JSON is YAML
    return ["train", "--preset", "demo", "--config", str(config), "--data", str(w.copy("train") / "train.json"),
            "--out", str(w.out), *extra]


def resume_truncated_checkpoint(w: Workspace) -> list[str]:
    pytest.importorskip("lightning")
    from tests.test_train_run import TINY_RUN
    from dcase9.training.config import assemble_config, dump_train_config

    config = assemble_config(preset="demo", overrides=[TINY_RUN, {"data": {"datafiles": [str(w.copy("train") / "train.json")]}}])
    w.out.mkdir()
    (w.out / "config.yaml").write_text(dump_train_config(config))
    (w.out / "last.ckpt").write_bytes(b"PK\x03\x04" + os.urandom(3000))  # a zip cut off after 3 kB
    w.saved["config"] = (w.out / "config.yaml").read_bytes()
    return ["train", "--out", str(w.out), "--resume", "--steps", "9"]


def config_unchanged_and_no_summary(w: Workspace) -> None:
    assert (w.out / "config.yaml").read_bytes() == w.saved["config"]
    assert not (w.out / "summary.json").exists()


def no_config_file(w: Workspace) -> None:
    assert not w.out.exists()  # no config.yaml, no lock, no empty --out folder


# --- continuing a run of the official training code (issue 25) ------------------------------------


def resume_from_published(w: Workspace) -> list[str]:
    """--resume-from a checkpoint laid out as the published ones: weights, no optimizer state."""
    from tests.tiny_models import write_lightning_checkpoint

    published = write_lightning_checkpoint(w.root / "baseline.ckpt")
    return train_args(w, "--resume-from", str(published))


# --- training that diverges (issue 21): checkpoints with NaN, plain pickles, runs that blow up


def tiny_net_checkpoint(w: Workspace, *, nan_tensors: int, name: str = "net.ckpt") -> Path:
    """A Lightning-layout checkpoint of TINY_RUN's net (what train --init and, with `tiny_system`,
    infer take), with its first `nan_tensors` floating-point tensors set to NaN."""
    import torch

    from tests.test_train_run import TINY_RUN
    from tests.tiny_models import write_lightning_checkpoint
    from dcase9.models.resunet import ResUNet30, ResUNet30Config

    net = {k: v for k, v in TINY_RUN["model"].items() if k != "kind"}
    model = ResUNet30.from_config(ResUNet30Config(16000, net["n_fft"], net["hop_length"], tuple(net["channels"]),
                                                  tuple(tuple(p) for p in net["pools"])))
    weights = model.state_dict()
    for key in [k for k, v in weights.items() if v.is_floating_point()][:nan_tensors]:
        weights[key] = torch.full_like(weights[key], float("nan"))
    return write_lightning_checkpoint(w.root / name, resunet=weights)


def tiny_system(w: Workspace) -> list[str]:
    """infer's options that load a tiny checkpoint as the baseline (its net's and CLAP's settings)."""
    from tests.test_train_run import TINY_RUN
    from tests.tiny_models import TINY_CLAP, tokenizer_folder

    settings = {**{k: v for k, v in TINY_RUN["model"].items() if k != "kind"}, "clap": dict(TINY_CLAP)}
    return ["--system-config", str(write(w.root / "tiny-system.yaml", json.dumps(settings))), "--offline",
            "--weight", f"roberta-base-tokenizer={tokenizer_folder(w.root / 'tokenizer')}"]


def infer_nan_checkpoint(w: Workspace) -> list[str]:
    checkpoint = tiny_net_checkpoint(w, nan_tensors=7)
    return w.infer("eval-real", "--checkpoint", str(checkpoint), *tiny_system(w), system="baseline")


def plain_pickle(w: Workspace) -> Path:
    """The tiny net's checkpoint written with pickle.dump instead of torch.save."""
    import pickle

    import torch

    checkpoint = torch.load(tiny_net_checkpoint(w, nan_tensors=0), weights_only=True)
    with (w.root / "net.pkl").open("wb") as handle:
        pickle.dump(checkpoint, handle)
    return w.root / "net.pkl"


def ats_with_inf_clap(w: Workspace) -> list[str]:
    import torch

    from tests.tiny_models import TINY_CLAP, tiny_clap_laion_weights, tokenizer_folder

    weights = tiny_clap_laion_weights()
    key = "text_branch.embeddings.word_embeddings.weight"
    weights[key][3, 5] = float("inf")
    torch.save({"state_dict": {f"module.{k}": v for k, v in weights.items()}}, w.root / "clap.pt")
    return ["score", "-d", str(w.copy("eval-real")), "-e", str(w.root), "--ats", "--ats-checkpoint",
            str(w.root / "clap.pt"), "--clap-config", str(write(w.root / "clap.yaml", json.dumps(dict(TINY_CLAP)))),
            "--weight", f"roberta-base-tokenizer={tokenizer_folder(w.root / 'tokenizer')}", "--offline"]


def resume_nan_checkpoint(w: Workspace) -> list[str]:
    import torch

    args = resume_truncated_checkpoint(w)  # the run's config.yaml, and a last.ckpt replaced below
    state = {"ss_model.a": torch.zeros(3), "ss_model.b": torch.tensor([1.0, float("nan")])}
    moments = {"step": torch.tensor(4.0), "exp_avg": torch.full((3,), float("inf"))}
    optimizer = {"state": {0: moments}, "param_groups": []}
    torch.save({"global_step": 4, "state_dict": state, "optimizer_states": [optimizer]}, w.out / "last.ckpt")
    return args


def diverged_after_step_1(w: Workspace) -> None:
    """The lr=1e30 run: step 1 trained and saved, step 2's loss NaN: nothing of step 2 on disk."""
    import torch

    from dcase9.models.checkpoints import non_finite_keys
    from dcase9.training.module import checkpoint_tensors

    saved = torch.load(w.out / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 1 and non_finite_keys(checkpoint_tensors(saved)) == []
    assert not list((w.out / "checkpoints").iterdir())  # step=2.ckpt was due: never written
    summary = strict_json(w.out / "summary.json")
    assert summary["status"] == "diverged" and summary["diverged"]["step"] == 2 and summary["infer_command"] == ""
    assert summary["last_checkpoint_step"] == 1


def nothing_saved(w: Workspace) -> None:
    assert not (w.out / "last.ckpt").exists() and not list((w.out / "checkpoints").iterdir())
    summary = strict_json(w.out / "summary.json")
    assert summary["status"] == "diverged" and summary["last_checkpoint"] is None


def unclosed_quote(w: Workspace) -> Path:
    data = w.copy("eval-real")
    lines = (data / "lass_real_evaluation.csv").read_text().splitlines(keepends=True)
    lines[2] = lines[2].split(",")[0] + ',"a quote opened and never closed\n'  # row 3
    (data / "lass_real_evaluation.csv").write_text("".join(lines))
    return data


def truncated_real(w: Workspace) -> Path:
    truncate(w.audio("eval-real", 1))
    return w.copy("eval-real")


def wav_header_of_4_gib(w: Workspace) -> list[str]:
    path = w.audio("eval-real", 0)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"data")
    raw[at + 4:at + 8] = struct.pack("<I", 4_000_000_000)  # the data chunk claims 4 GB
    path.write_bytes(bytes(raw))
    return ["validate", str(w.copy("eval-real"))]


def quote_before_64_mib(w: Workspace) -> list[str]:
    csv = w.copy("eval-real") / "lass_real_evaluation.csv"
    with csv.open("w") as handle:
        handle.write('file_name,query\ndemo-real-case-0.wav,"a dog barks\n')
        for _ in range(64):
            handle.write(("the rest of a long file " * 43 + "\n") * 1000)
    return ["validate", str(w.copy("eval-real")), "--no-audio"]


def demo_data_args(w: Workspace, *extra: str) -> list[str]:
    return ["demo-data", str(w.out), "--clips-per-class", "1", "--train-clips-per-class", "1", *extra]


def edited_demo_csv(w: Workspace, *extra: str) -> list[str]:
    w.dcase9(*demo_data_args(w))
    csv = w.out / "validation" / "lass_synthetic_validation.csv"
    csv.write_text(csv.read_text() + "my,own,0,row\n")
    w.saved["stamps"] = {p: p.stat().st_mtime_ns for p in w.out.rglob("*") if p.is_file() and p != csv}
    return demo_data_args(w, *extra)


def edit_kept_nothing_written(w: Workspace) -> None:
    assert (w.out / "validation" / "lass_synthetic_validation.csv").read_text().endswith("my,own,0,row\n")
    assert {p: p.stat().st_mtime_ns for p in w.saved["stamps"]} == w.saved["stamps"]


def edit_replaced(w: Workspace) -> None:
    assert "my,own" not in (w.out / "validation" / "lass_synthetic_validation.csv").read_text()
    assert {p: p.stat().st_mtime_ns for p in w.saved["stamps"]} == w.saved["stamps"]  # only the CSV rewritten


def demo_data_twice(w: Workspace) -> list[str]:
    w.dcase9(*demo_data_args(w))
    w.saved["stamps"] = {p: p.stat().st_mtime_ns for p in w.out.rglob("*") if p.is_file()}
    return demo_data_args(w)


def files_untouched(w: Workspace) -> None:
    assert {p: p.stat().st_mtime_ns for p in w.out.rglob("*") if p.is_file()} == w.saved["stamps"]


# --- builders of the submission, YAML, secret and zip-bomb cases -------------------------------



def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs" document: 9 levels of 9 aliases expand to 387 million strings."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def yaml_file(text: str) -> Callable[[Path], Path]:
    return lambda tmp: write(tmp / "hostile.yaml", text)


def zip_of(entries: dict[str, bytes], path: Path, *, comment: bytes = b"",
           infos: dict[str, zipfile.ZipInfo] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.comment = comment
        for name, data in entries.items():
            archive.writestr((infos or {}).get(name, name), data)
    return path


def pdf_with_flate_text(text: bytes) -> bytes:
    """A PDF whose page text sits in a FlateDecode stream, split by kerning as pdflatex writes it."""
    half = len(text) // 2
    content = b"BT /F1 10 Tf 56 700 Td [(" + text[:half] + b")-27(" + text[half:] + b")] TJ ET"
    stream = zlib.compress(content)
    return (b"%PDF-1.5\n1 0 obj\n<< /Length " + str(len(stream)).encode() + b" /Filter /FlateDecode >>\nstream\n"
            + stream + b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n")


def pdf_with_utf16_title(text: str) -> bytes:
    """A PDF whose /Title is a UTF-16BE hex text string (<FEFF...>), as PDF writers encode non-ASCII titles."""
    title = b"<FEFF" + text.encode("utf-16-be").hex().upper().encode() + b">"
    return one_page_pdf("A report").replace(b"/Producer (dcase9)", b"/Producer (dcase9) /Subject " + title)


def check_zip(make_entries: Callable[[Path], Path]) -> Callable[[Workspace], list[str]]:
    def make(w: Workspace) -> list[str]:
        return ["package", "--check", str(make_entries(w.root))]
    return make


def build_with_report(report: bytes) -> Callable[[Workspace], list[str]]:
    """`package` of a config whose technical report is `report` (nothing else needs to exist:
    the pre-check lists every problem, the report's secrets among them)."""
    def make(w: Workspace) -> list[str]:
        tmp = w.root
        write(tmp / "report.pdf", report)
        config = write(tmp / "submission.yaml", """
submitter: {lastname: Evil, abbreviation: HACK}
authors: [{lastname: Evil, firstname: E, email: e@example.org, corresponding: true,
           affiliation: {abbreviation: HACK, institute: Example, location: Nowhere}}]
technical_report: report.pdf
systems:
  - {index: 1, name: S, abbreviation: S, parameters: {total: 1},
     development_results: {sdr: 1.0, sdri: 1.0, sisdr: 1.0}, estimates: {eval-synth: none, eval-real: none}}
""")
        return ["package", "--config", str(config), "--out", str(tmp / "out.zip")]
    return make


def zip_bomb(tmp: Path, inflated_mib: int = 2048, claimed: int = 320 * 1024) -> Path:
    """One entry whose deflate stream inflates to `inflated_mib` MiB of zeros (about 1 KiB each)
    while its headers claim `claimed` bytes, with the CRC of the claimed prefix: a reader that
    trusts the stream allocates it all; one that trusts the header and CRC accepts 320 KB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(b"\0" * 2**20) + compressor.flush(zlib.Z_FULL_FLUSH)  # history reset:
    data = block * inflated_mib + compressor.flush()  # every MiB compresses to the same bytes
    name = OUTPUT.encode()
    # version 2.0, no flags, deflate, 1980-01-01 00:00, CRC, sizes: shared by both headers
    fields = struct.pack("<5H3L", 20, 0, zipfile.ZIP_DEFLATED, 0, 0x21, zlib.crc32(b"\0" * claimed), len(data), claimed)
    local = b"PK\x03\x04" + fields + struct.pack("<2H", len(name), 0) + name
    central = b"PK\x01\x02" + struct.pack("<H", 20) + fields + struct.pack("<5H2L", len(name), 0, 0, 0, 0, 0, 0) + name
    body = local + data
    end = b"PK\x05\x06" + struct.pack("<4H2LH", 0, 0, 1, 1, len(central), len(body), 0)
    return write(tmp / "bomb.zip", body + central + end)


def meta_bomb_zip(tmp: Path) -> Path:
    return zip_of({META: alias_bomb().encode(), REPORT: one_page_pdf("A report")}, tmp / "meta-bomb.zip")


def fake_llm_run(w: Workspace, script: Callable[[Any], None], captions: list[str], backend: str) -> list[str]:
    """`dcase9 augment` of `captions` against the fake LLM server (in `w.saved["server"]`), scripted by
    `script`; `backend` adds settings to the backend's section of the run's YAML."""
    pytest.importorskip("openai")
    pytest.importorskip("bert_score")
    from augment_support import MINILM_ARGS, FakeLLMServer, minilm_path, write_captions

    server = w.saved["server"] = w.stack.enter_context(FakeLLMServer())
    script(server)
    items = [{"wav": f"clip-{index}.wav", "caption": caption} for index, caption in enumerate(captions)]
    config = write(w.root / "augment.yaml", f"""
inputs: [{{captions: {write_captions(w.root / "captions.json", items)}, dataset: fsd50k}}]
backend: {{kind: openai, model: fake-gpt, base_url: '{server.base_url}', {backend}}}
bertscore: {{model: '{MINILM_ARGS[1]}', model_path: '{minilm_path()}', num_layers: {MINILM_ARGS[3]}}}
""")
    return ["augment", "--config", str(config), "-o", str(w.out)]


def echoing_server(status: int) -> Callable[[Workspace], list[str]]:
    """`dcase9 augment` against a server that repeats the API key it was sent in its error message."""
    def script(server: Any) -> None:
        from augment_support import DOG

        server.always_fail = {DOG: status}
        server.echo_key = True

    def make(w: Workspace) -> list[str]:
        from augment_support import DOG

        return fake_llm_run(w, script, [DOG], "timeout_s: 2, max_retries: 0, retry_attempts: 0")
    return make


def trickling_server(w: Workspace) -> list[str]:
    """A server that sends the answer to DOG one byte every 0.5 s (about 4 minutes for its 500 bytes)."""
    from augment_support import DOG, KETTLE

    args = fake_llm_run(w, lambda server: server.trickle.update({DOG: 0.5}), [DOG, KETTLE],
                        "max_retries: 0, retry_attempts: 1, retry_backoff_s: 0")
    w.saved["started"] = time.monotonic()
    return [*args, "--timeout", "3"]


def trickle_cut_off(w: Workspace) -> None:
    from augment_support import DOG

    elapsed, server = time.monotonic() - w.saved["started"], w.saved["server"]
    for _ in range(50):  # the server notices a hang-up at its next byte
        if len(server.trickled) == 2:
            break
        time.sleep(0.1)
    # Two attempts of 3 s each, where the trickle takes minutes: no attempt went on much past its 3 s.
    assert elapsed < 60 and server.calls[DOG] == 2 and len(server.trickled) == 2 and max(server.trickled) < 20
    records = {r["original"]: r for r in map(json.loads, (w.out / "responses.jsonl").read_text().splitlines())}
    assert records[DOG]["status"] == "failed" and records[DOG]["attempts"] == 2
    assert [r["status"] for r in records.values()].count("ok") == 1


def oversized_answer(w: Workspace) -> list[str]:
    """A server that answers DOG with 10 MB where 256 tokens were asked for."""
    from augment_support import DOG, KETTLE

    return fake_llm_run(w, lambda server: server.oversized.update({DOG: 10_000_000}), [DOG, KETTLE], "timeout_s: 60")


def answer_cut_and_logs_small(w: Workspace) -> None:
    from augment_support import DOG, KETTLE

    logs = [w.out / "responses.jsonl", w.out / "candidates.jsonl"]
    assert sum(path.stat().st_size for path in logs) < 32 * 1024  # 4 KiB kept of 10 MB; three copies of it at most
    records = {r["original"]: r for r in map(json.loads, logs[0].read_text().splitlines())}
    assert {caption: r["cut"] for caption, r in records.items()} == {DOG: True, KETTLE: False}
    assert records[DOG]["text"].startswith(w.saved["server"].answer_text(DOG))  # the start is kept
    assert w.saved["server"].hung_up[DOG] == 1  # the client stopped reading
    summary = strict_json(w.out / "summary.json")
    assert summary["totals"]["cut"] == 1 and summary["totals"]["answered"] == 2 and summary["totals"]["added"] > 0


def _info(*, comment: str = "", extra: str = "") -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(REPORT, date_time=(1980, 1, 1, 0, 0, 0))
    info.comment = comment.encode()
    if extra:  # one extra-field record: an unassigned header id, then the data
        info.extra = struct.pack("<2H", 0x6666, len(extra)) + extra.encode()
    return info



# --- the table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Workspace], list[str]]  # makes the input; returns the command's arguments
    exit_code: int
    message: str  # must appear in the output (whitespace normalised)
    check: Callable[[Workspace], None] | None = None  # the files left behind
    memory_mb: int | None = None  # run in a subprocess allowed this much more address space
    forbid: str | None = None  # must appear nowhere: not in the output, not in any file the command wrote
    env: dict[str, str] = field(default_factory=dict)  # environment of the command
    disk_full_after: int | None = None  # the disk fills up: fsync fails (ENOSPC) after this many calls


# --- an output over an input (issue 21) ---------------------------------------------------------------


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def keep_tree(w: Workspace, folder: Path) -> Path:
    """Remember `folder`'s files; `inputs_untouched` checks that they are all there, unchanged."""
    w.saved.setdefault("trees", {})[folder] = tree(folder)
    return folder


def inputs_untouched(w: Workspace) -> None:
    for folder, files in w.saved["trees"].items():
        assert tree(folder) == files, folder


def flat_set(w: Workspace) -> Path:
    """The evaluation set with its CSV and mixtures in one folder (a layout users make)."""
    flat = w.root / "flat"
    shutil.copytree(w.copy("eval-real"), flat)
    for wav in (flat / "lass_evaluation_real").glob("*.wav"):
        wav.rename(flat / wav.name)
    (flat / "lass_evaluation_real").rmdir()
    return keep_tree(w, flat)


def scored_validation(w: Workspace) -> tuple[Path, Path]:
    """Estimates of the mixture system on the validation set and their score report."""
    data = w.copy("validation")
    w.dcase9(*w.infer("validation"))
    report = w.root / "report"
    w.dcase9("score", "-d", data, "-e", w.out, "-o", report)
    return data, report


def no_partial_files(folder: Path) -> None:
    leftovers = [p for p in folder.rglob(".*") if ".part" in p.name or ".previous" in p.name]
    assert not leftovers, leftovers


def full_disk_fsync(after: int) -> Callable[[int], None]:
    """os.fsync that reports a full disk (ENOSPC, as delayed allocation does on flush) after `after` calls."""
    import errno

    real, calls = os.fsync, [0]

    def fsync(fd: int) -> None:
        calls[0] += 1
        if calls[0] > after:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    return fsync


def infer_resumes_after_a_full_disk(w: Workspace) -> None:
    """Only complete, vouched outputs were kept, and with space again the run resumes from them."""
    no_partial_files(w.out)
    kept = w.estimates()
    assert kept and set(kept) <= set(ledger(w))
    output = flat(w.dcase9(*w.infer("eval-real")))
    assert f"wrote {12 - len(kept)} estimate(s)" in output and f"({len(kept)} already there)" in output


def with_previous_report(w: Workspace) -> list[str]:
    """A complete score report, then a second `score` into the same folder."""
    data, report = scored_validation(w)
    w.saved["previous"] = tree(report)
    return ["score", "-d", str(data), "-e", str(w.out), "-o", str(report)]


def previous_report_whole(w: Workspace) -> None:
    assert tree(w.root / "report") == w.saved["previous"]
    no_partial_files(w.root)


def page_over_previous_page(w: Workspace) -> list[str]:
    _, report = scored_validation(w)
    page = w.root / "page"
    w.dcase9("report", report, "--out", page, "--spectrograms", "2")
    w.saved["previous"] = tree(page)
    return ["report", str(report), "--out", str(page), "--spectrograms", "2"]


def previous_page_whole(w: Workspace) -> None:
    assert tree(w.root / "page") == w.saved["previous"]
    no_partial_files(w.root)


def valid_package(w: Workspace) -> list[str]:
    """`package` of a submission that passes every check, into `p.zip`."""
    from package_support import make_submission_inputs, write_config

    config = write_config(make_submission_inputs(w.root / "inputs", w.demo), w.root / "config")
    return ["package", "--config", str(config), "--out", str(w.root / "p.zip")]


def report_with_huge_value(w: Workspace) -> list[str]:
    _, report = scored_validation(w)
    per_clip = report / "per_clip.csv"
    lines = per_clip.read_text().splitlines()
    cells = lines[2].split(",")
    cells[-3] = "1e308"  # the SDRi of the second clip
    lines[2] = ",".join(cells)
    per_clip.write_text("\n".join(lines) + "\n")
    return ["report", str(report), str(report), "--name", "a", "--name", "b", "--out", str(w.root / "page"),
            "--spectrograms", "0", "--resamples", "100"]


def page_is_strict(w: Workspace) -> None:
    assert strict_json(w.root / "page" / "comparison.json")["pairs"]


def validation_with_snr(w: Workspace, snr: str) -> Path:
    data = w.copy("validation")
    csv_path = data / "lass_synthetic_validation.csv"
    lines = csv_path.read_text().splitlines()
    cells = lines[1].split(",")
    cells[2] = snr
    lines[1] = ",".join(cells)
    csv_path.write_text("\n".join(lines) + "\n")
    return data


def eval_with_short_mixture(w: Workspace, samples: int) -> Path:
    sf.write(w.audio("eval-real", 0), np.full(samples, 0.1, np.float32), 16000, subtype="FLOAT")
    return w.copy("eval-real")


def eval_with_long_name(w: Workspace) -> Path:
    data = w.copy("eval-real")
    csv_path = data / "lass_real_evaluation.csv"
    lines = csv_path.read_text().splitlines()
    lines[1] = "x" * 300 + ".wav," + lines[1].split(",", 1)[1]
    csv_path.write_text("\n".join(lines) + "\n")
    return data


def mixture_replaced_by(w: Workspace, kind: str) -> Path:
    """The first eval-real mixture replaced by a folder or a named pipe of the same name."""
    path = w.audio("eval-real", 0)
    path.unlink()
    path.mkdir() if kind == "folder" else os.mkfifo(path)
    return w.copy("eval-real")


def eval_with_huge_caption(w: Workspace) -> Path:
    data = w.copy("eval-real")
    csv_path = data / "lass_real_evaluation.csv"
    lines = csv_path.read_text().splitlines()
    lines[2] = lines[2].split(",", 1)[0] + "," + "a dog barks " * 20_000  # 240 KB, no quote anywhere
    csv_path.write_text("\n".join(lines) + "\n")
    return data


def package_over_estimates(w: Workspace) -> list[str]:
    """A config whose zip would be written into the folder of estimates it packages."""
    estimates = keep_tree(w, w.copy("eval-real") / "lass_evaluation_real")
    write(w.root / "report.pdf", one_page_pdf("A report"))
    config = write(w.root / "submission.yaml", f"""
submitter: {{lastname: Evil, abbreviation: HACK}}
authors: [{{lastname: Evil, firstname: E, email: e@example.org, corresponding: true,
           affiliation: {{abbreviation: HACK, institute: Example, location: Nowhere}}}}]
technical_report: report.pdf
systems:
  - {{index: 1, name: S, abbreviation: S, parameters: {{total: 1}},
     development_results: {{sdr: 1.0, sdri: 1.0, sisdr: 1.0}}, estimates: {{eval-synth: none, eval-real: {estimates}}}}}
""")
    return ["package", "--config", str(config), "--out", str(estimates / "Evil_HACK_task9.zip")]


def separate_args(w: Workspace, *recordings: Path, out: Path | None = None, system: str = "mixture",
                  query: str = "a dog barks") -> list[str]:
    return ["separate", *map(str, recordings), "-q", query, "-s", system, "-o", str(out or w.out)]


def silent_wav(path: Path) -> Path:
    sf.write(path, np.zeros(16000, dtype=np.float32), 16000)
    return path


def separated_only(w: Workspace, name: str) -> None:
    assert sorted(p.relative_to(w.out).as_posix() for p in w.out.rglob("*.wav")) == [f"{name}/a_dog_barks.wav"]


def foreign_checkpoint(w: Workspace) -> Path:
    """A checkpoint without the `dcase9` entry (made elsewhere): it does not say which system loads it."""
    import torch

    path = w.root / "foreign.ckpt"
    torch.save({"global_step": 1, "state_dict": {"ss_model.base.bn0.weight": torch.ones(2)}}, path)
    return path


CASES = [
    # 1-3. YAML bombs, secrets the scanner must find, zip bombs (submission packaging, configs, augment).
    Case("YAML bomb in submission.yaml",
         lambda w: ["package", "-c", str(yaml_file(alias_bomb())(w.root)), "-o", str(w.root / "o.zip")],
         2, "alias expansion exceeds 100,000 nodes", memory_mb=400),
    Case("YAML bomb in a meta file inside the zip", check_zip(meta_bomb_zip), 1,
         "refused YAML: alias expansion exceeds 100,000 nodes", memory_mb=400),
    Case("YAML bomb as the profile",
         lambda w: ["package", "--check", str(meta_bomb_zip(w.root)), "--profile", str(yaml_file(alias_bomb())(w.root))],
         2, "alias expansion exceeds", memory_mb=400),
    Case("YAML bomb as the meta template",
         lambda w: ["package", "--check", str(meta_bomb_zip(w.root)), "--template", str(yaml_file(alias_bomb())(w.root))],
         2, "alias expansion exceeds", memory_mb=400),
    Case("YAML bomb as a training config",
         lambda w: ["train", "--config", str(yaml_file(alias_bomb())(w.root)), "--out", str(w.root / "run"),
                   "--print-config"], 2, "alias expansion exceeds", memory_mb=400),
    Case("YAML bomb as a system config",
         lambda w: ["infer", "--system", "mixture", "--system-config", str(yaml_file(alias_bomb())(w.root)),
                   "--data", str(w.copy("eval-real")), "--out", str(w.out)], 2, "alias expansion exceeds", memory_mb=400),
    Case("YAML bomb as an augment config",
         lambda w: ["augment", "--config", str(yaml_file(alias_bomb())(w.root)), "-o", str(w.root / "out")],
         2, "alias expansion exceeds", memory_mb=400),
    Case("YAML bomb as a prompt file",
         lambda w: ["augment", str(write(w.root / "c.json", '{"data": [{"wav": "a.wav", "caption": "A dog barks."}]}')),
                   "-d", "fsd50k", "--prompt", str(yaml_file(alias_bomb())(w.root)), "--dry-run", "-o", str(w.root / "out")],
         2, "alias expansion exceeds", memory_mb=400),
    Case("a recursive alias in submission.yaml",
         lambda w: ["package", "-c", str(yaml_file("submitter: &s {lastname: *s}\n")(w.root)), "-o", str(w.root / "o.zip")],
         2, "refers to a node that contains it"),
    Case("YAML nested 10,000 levels deep",
         lambda w: ["package", "-c", str(yaml_file("[" * 10_000 + "]" * 10_000)(w.root)), "-o", str(w.root / "o.zip")],
         2, "nesting deeper than 100 levels"),
    Case("a key in a compressed PDF stream (package)", build_with_report(pdf_with_flate_text(FAKE_OPENAI_KEY.encode())),
         1, "openai-api-key format in a PDF text string in a compressed PDF stream", forbid=FAKE_OPENAI_KEY),
    Case("a key in a compressed PDF stream (--check)",
         check_zip(lambda t: zip_of({REPORT: pdf_with_flate_text(FAKE_OPENAI_KEY.encode())}, t / "p.zip")),
         1, "openai-api-key format in a PDF text string in a compressed PDF stream", forbid=FAKE_OPENAI_KEY),
    Case("a key in a UTF-16 PDF text string",
         check_zip(lambda t: zip_of({REPORT: pdf_with_utf16_title(FAKE_OPENAI_KEY)}, t / "p.zip")),
         1, "openai-api-key format in a PDF text string", forbid=FAKE_OPENAI_KEY),
    Case("a key in the zip comment",
         check_zip(lambda t: zip_of({REPORT: one_page_pdf("A report")}, t / "p.zip", comment=FAKE_OPENAI_KEY.encode())),
         1, "the zip comment contains text in the openai-api-key format", forbid=FAKE_OPENAI_KEY),
    Case("a key in an entry comment",
         check_zip(lambda t: zip_of({REPORT: b"%PDF-"}, t / "p.zip", infos={REPORT: _info(comment=FAKE_OPENAI_KEY)})),
         1, "its entry comment contains text in the openai-api-key format", forbid=FAKE_OPENAI_KEY),
    Case("a key in an extra field",
         check_zip(lambda t: zip_of({REPORT: b"%PDF-"}, t / "p.zip", infos={REPORT: _info(extra=FAKE_OPENAI_KEY)})),
         1, "its extra field contains text in the openai-api-key format", forbid=FAKE_OPENAI_KEY),
    Case("zip bomb: 2 GiB behind a header that claims 320 KB", check_zip(zip_bomb), 1,
         "inflates past its declared size of 327,680 bytes", memory_mb=400),
    Case("augment: a 401 that echoes the API key", echoing_server(401), 2, f"you sent Bearer {REDACTED}",
         forbid=ECHOED_KEY, env={"OPENAI_API_KEY": ECHOED_KEY}),
    Case("augment: a 500 that echoes the API key", echoing_server(500), 1, f"you sent Bearer {REDACTED}",
         forbid=ECHOED_KEY, env={"OPENAI_API_KEY": ECHOED_KEY}),
    # 4. NaN and inf: never a non-finite output with exit 0.
    Case("infer: NaN in an input", nan_in_real_input, 1, "demo-real-case-0.wav: 100 NaN or infinite samples", real_minus_case0),
    Case("infer: inf in a validation clip", inf_in_validation_clip, 1, "100 NaN or infinite samples", oracle_left_out_the_clip),
    Case("mix: NaN in a clip", mix_with_nan_clip, 1, "1 NaN or infinite samples", mix_skipped_the_clip),
    Case("score: NaN in a reference", score_with_nan_reference, 1, "unusable-input", report_is_valid),
    Case("score: an unreadable clip", score_with_unreadable_clip, 1, "cannot be scored", report_is_valid),
    Case("score: NaN in an estimate", score_with_nan_estimate, 1, "44 missing, 1 non-finite", report_is_valid),
    # 5. Stale outputs: recomputed when what they were computed from changed, or they are damaged.
    Case("infer: edited query", infer_then(edit_query), 0, "1 output(s) were here but stale, computed again: 1 because "
         "its query changed (e.g. demo-real-case-", query_recorded),
    Case("infer: replaced input file", infer_then(replace_input), 0, "wrote 1 estimate(s)", estimate_of_new_input),
    Case("infer: output is a symlink", infer_then(symlink_output), 0, "wrote 1 estimate(s)", outputs_are_plain_and_current),
    # An output changed since dcase9 wrote it is no longer provably dcase9's: never deleted, never written over.
    Case("infer: truncated output", infer_then(lambda w: truncate(w.out / "demo-real-case-6.wav", 3000)), 2,
         "demo-real-case-6.wav: not written by dcase9 in this folder, or changed since", folder_as_it_was),
    Case("infer: empty output", infer_then(lambda w: (w.out / "demo-real-case-8.wav").write_bytes(b"")), 2,
         "demo-real-case-8.wav: not written by dcase9 in this folder, or changed since", folder_as_it_was),
    Case("infer: output changed in place", infer_then(zero_output), 2, "move it away, or choose another --out",
         folder_as_it_was),
    Case("infer: another data set", real_then_synth, 2, "holds outputs for the eval-real set", only_real_outputs),
    Case("infer: another data set, --overwrite", lambda w: real_then_synth(w, "--overwrite"), 0, "wrote 16 estimate(s)",
         only_synth_outputs),
    Case("infer: float outputs, then --pcm16", float_then_pcm16, 2, "differs in: subtype", outputs_untouched),
    Case("infer: float outputs, then --pcm16 --overwrite", lambda w: float_then_pcm16(w, "--overwrite"), 0,
         "wrote 12 estimate(s)", all_pcm16),
    Case("infer: a row removed", infer_then(remove_row), 0, "belong to no mixture of the data set"),
    # 6. Manifest, ledger and lock.
    Case("infer: unreadable manifest", damaged_manifest, 2, "dcase9-run.json: unreadable run manifest", outputs_untouched),
    Case("infer: unreadable manifest, --overwrite", lambda w: damaged_manifest(w, "--overwrite"), 0, "wrote 2 estimate(s)",
         oracle_manifest),
    Case("infer: damaged ledger", infer_then(damaged_ledger), 2, "unreadable output ledger (line 1"),
    Case("infer --overwrite: a ledger naming files elsewhere", ledger_pointing_outside, 0, "wrote 12 estimate(s)",
         victim_survives),
    Case("infer: folder in use", locked_folder, 2, "another dcase9 command (dcase9 infer, process", nothing_written),
    Case("augment: refused run", augment_without_key, 2, "needs a key", folder_left_empty),
    Case("train --resume: truncated last.ckpt", resume_truncated_checkpoint, 2, "damaged or truncated",
         config_unchanged_and_no_summary),
    Case("train: refused run", lambda w: train_args(w, "--devices", "abc"), 2, "Lightning cannot set up this run",
         no_config_file),
    # 7. CSV and WAV edge cases.
    Case("validate: unclosed quote", lambda w: ["validate", str(unclosed_quote(w)), "--no-audio"], 1,
         "row 3: a quoted field starting on this line runs over lines 3-"),
    Case("infer: unclosed quote", lambda w: ["infer", "-s", "mixture", "-d", str(unclosed_quote(w)), "-o", str(w.out)], 2,
         "[csv-unclosed-quote]"),
    Case("validate: truncated WAV", lambda w: ["validate", str(truncated_real(w))], 1, "demo-real-case-1.wav: truncated WAV"),
    Case("infer: truncated WAV", lambda w: ["infer", "-s", "mixture", "-d", str(truncated_real(w)), "-o", str(w.out)], 1,
         "demo-real-case-1.wav: truncated WAV"),
    Case("validate: a 4 GB data chunk in a small file", wav_header_of_4_gib, 1, "truncated WAV", memory_mb=300),
    Case("validate: unclosed quote before 64 MiB", quote_before_64_mib, 1, "row 2: malformed CSV", memory_mb=300),
    # 8. demo-data never replaces what differs.
    Case("demo-data: edited CSV", edited_demo_csv, 2, "differ from what would be written", edit_kept_nothing_written),
    Case("demo-data --force: edited CSV", lambda w: edited_demo_csv(w, "--force"), 0, "validation:", edit_replaced),
    Case("demo-data: same folder twice", demo_data_twice, 0, "validation:", files_untouched),
    # 9. User errors: one message, exit 2.
    Case("validate --kind bogus", lambda w: ["validate", str(w.copy("eval-real")), "--kind", "bogus"], 2,
         "unknown --kind 'bogus'"),
    Case("validate --seconds -1", lambda w: ["validate", str(w.copy("eval-real")), "--seconds", "-1"], 2, "must not be negative"),
    Case("infer --out FILE", lambda w: ["infer", "-s", "mixture", "-d", str(w.copy("eval-real")), "-o", str(w.afile())], 2,
         "a-file is a file, not a folder"),
    Case("infer --out under a file", lambda w: w.infer("eval-real")[:-1] + [str(w.afile() / "sub")], 2, "Not a directory"),
    Case("infer --limit 0", lambda w: w.infer("eval-real", "--limit", "0"), 2, "--limit must be at least 1"),
    Case("mix --out FILE", lambda w: ["mix", str(w.copy("validation")), "-o", str(w.afile())], 2, "is a file, not a folder"),
    Case("score --out FILE", lambda w: ["score", "-d", str(w.copy("validation")), "-e", str(w.root), "-o", str(w.afile())],
         2, "is a file, not a folder"),
    Case("score --batch-size 0", lambda w: ["score", "-d", str(w.copy("validation")), "-e", str(w.root), "--batch-size", "0"],
         2, "--batch-size must be at least 1"),
    Case("augment --out FILE", lambda w: ["augment", str(w.copy("train") / "train.json"), "-o", str(w.afile())], 2,
         "is a file, not a folder"),
    Case("train --out FILE", lambda w: train_args(w)[:-2] + ["--out", str(w.afile())], 2, "is a file, not a folder"),
    Case("demo-data FILE", lambda w: ["demo-data", str(w.afile())], 2, "is a file, not a folder"),

    # --- Edges (issue 21): an --out over an input, a full disk, interrupts, values out of range, mixed runs
    Case("infer --out: the set's audio folder",
         lambda w: w.infer("eval-real")[:-2] + ["-o", str(keep_tree(w, w.copy("eval-real")) / "lass_evaluation_real")],
         2, "is its audio folder", inputs_untouched),
    Case("infer --out: the flat set's own folder", lambda w: w.infer("eval-real")[:-4] + ["-d", str(flat_set(w)), "-o",
         str(w.root / "flat")], 2, "flat is the data set", inputs_untouched),
    Case("mix --out: inside the audio folder", lambda w: ["mix", str(keep_tree(w, w.copy("validation"))), "--out",
         str(w.copy("validation") / "lass_validation" / "mixed")], 2, "lies inside its audio folder", inputs_untouched),
    Case("score --out: the estimates", lambda w: ["score", "-d", str(scored_validation(w)[0]), "-e",
         str(keep_tree(w, w.out)), "-o", str(w.out)], 2, "is --estimates", inputs_untouched),
    Case("report --out: a report it reads", lambda w: ["report", str(keep_tree(w, scored_validation(w)[1])), "--out",
         str(w.root / "report")], 2, "is the report", inputs_untouched),
    Case("package --out: inside the estimates", package_over_estimates, 2,
         "lies inside systems[0].estimates.eval-real", inputs_untouched),
    Case("train --out: the training data's folder", lambda w: train_args(w)[:-2] + ["--out", str(keep_tree(
         w, w.copy("train")))], 2, "contains data.datafiles[0]", inputs_untouched),
    Case("infer: the disk fills up", lambda w: w.infer("eval-real"), 2, "the disk is full",
         infer_resumes_after_a_full_disk, disk_full_after=6),
    Case("mix: the disk fills up", lambda w: ["mix", str(w.copy("validation")), "--out", str(w.out)], 2,
         "the disk is full", lambda w: no_partial_files(w.out), disk_full_after=6),
    Case("score: the disk fills up", with_previous_report, 2, "report/per_clip.csv: the disk is full",
         previous_report_whole, disk_full_after=0),
    Case("report: the disk fills up", page_over_previous_page, 2, "the disk is full", previous_page_whole,
         disk_full_after=3),
    Case("package: the disk fills up", valid_package, 2,
         "p.zip: the disk is full", lambda w: (no_partial_files(w.root), not (w.root / "p.zip").exists()
                                                 or pytest.fail("zip written")), disk_full_after=0),
    Case("demo-data: the disk fills up", lambda w: ["demo-data", str(w.out), "--clips-per-class", "1",
         "--train-clips-per-class", "1"], 2, "the disk is full", lambda w: no_partial_files(w.out), disk_full_after=4),
    Case("report: a per-clip value of 1e308", report_with_huge_value, 1, "row 3, field 'sdri': 1e308 is outside "
         "-1000..1000", page_is_strict),
    Case("validate: an SNR of 4000 dB", lambda w: ["validate", str(validation_with_snr(w, "4000"))], 1,
         "row 2, field 'snr': SNR 4000 dB is beyond +-100 dB"),
    Case("infer: an SNR of 4000 dB", lambda w: w.infer("validation", system="oracle")[:-4] + [
         "-d", str(validation_with_snr(w, "4000")), "-o", str(w.out), "--limit", "3"], 1,
         "row 2, field 'snr': SNR 4000 dB is beyond +-100 dB"),
    Case("mix: an SNR of 4000 dB", lambda w: ["mix", str(validation_with_snr(w, "4000")), "--out", str(w.out)], 1,
         "SNR 4000 dB is beyond +-100 dB"),
    Case("infer: a 0-sample mixture", lambda w: w.infer("eval-real")[:-4] + ["-d", str(eval_with_short_mixture(w, 0)),
         "-o", str(w.out)], 1, "demo-real-case-0.wav: no samples (an empty recording)"),
    Case("infer: a 1-sample mixture", lambda w: w.infer("eval-real")[:-4] + ["-d", str(eval_with_short_mixture(w, 1)),
         "-o", str(w.out)], 1, "1 samples: shorter than 0.1 s"),
    Case("mix: a 0-sample clip", lambda w: (sf.write(w.audio("validation", 0), np.zeros(0, np.float32), 16000),
         ["mix", str(w.copy("validation")), "--out", str(w.out)])[1], 1, "no samples (an empty recording)"),
    Case("validate: a 1-sample mixture", lambda w: ["validate", str(eval_with_short_mixture(w, 1))], 1,
         "shorter than 0.1 s, too short to separate"),
    Case("validate: a 300-character file name", lambda w: ["validate", str(eval_with_long_name(w))], 1,
         "row 2: the output name"),
    Case("infer: a 300-character file name", lambda w: w.infer("eval-real")[:-4] + ["-d", str(eval_with_long_name(w)),
         "-o", str(w.out)], 1, "row 2: the output name"),
    Case("validate: a folder named like a mixture", lambda w: ["validate", str(mixture_replaced_by(w, "folder"))], 1,
         "demo-real-case-0.wav: audio a folder, not a file"),
    Case("infer: a named pipe named like a mixture", lambda w: w.infer("eval-real")[:-4] + [
         "-d", str(mixture_replaced_by(w, "fifo")), "-o", str(w.out)], 1,
         "demo-real-case-0.wav: a named pipe (FIFO), not a regular file"),
    Case("validate --csv: a named pipe", lambda w: (os.mkfifo(w.root / "pipe.csv"), ["validate", str(w.copy("eval-real")),
         "--csv", str(w.root / "pipe.csv")])[1], 2, "CSV a named pipe (FIFO), not a regular file"),
    Case("package --config: /dev/zero", lambda w: ["package", "-c", "/dev/zero", "-o", str(w.root / "p.zip")], 2,
         "/dev/zero (the submission config): a device, not a regular file"),
    Case("package --check: a folder", lambda w: ["package", "--check", str(w.copy("eval-real"))], 2,
         "package a folder, not a file"),
    Case("validate: a 240 KB caption", lambda w: ["validate", str(eval_with_huge_caption(w))], 1,
         "one field of this line is longer than 131,072 characters: not a caption"),
    Case("infer: DCASE9_HOME is a file", lambda w: ["infer", "-s", "baseline", "-d", str(w.copy("eval-real")), "-o",
         str(w.out), "--offline"], 2, "DCASE9_HOME=/etc/passwd is a file, not a folder",
         env={"DCASE9_HOME": "/etc/passwd"}),
    Case("augment --out: the captions' folder", lambda w: augment_without_key(w)[:2] + ["--out", str(keep_tree(
         w, w.copy("train")))] + augment_without_key(w)[4:], 2, "contains inputs[0].captions", inputs_untouched),
    Case("train --set optimizer.lr=1e300", lambda w: train_args(w, "--set", "optimizer.lr=1e300"), 2,
         "optimizer.lr: Value error, 1e+300 is more than a float32 holds (3.4e+38)"),
    Case("demo --out: a folder of the user's", lambda w: (write(w.out / "thesis.tex", b"mine"), ["demo", "--out",
         str(w.out)])[1], 2, "holds files that are not the demo's (thesis.tex)",
         lambda w: sorted(p.name for p in w.out.iterdir()) == ["thesis.tex"] or pytest.fail("demo wrote there")),
    Case("infer --precision bogus", lambda w: w.infer("eval-real", "--precision", "bogus"), 2,
         "unknown precision 'bogus'", lambda w: not w.out.exists() or pytest.fail("an --out folder was made")),
    Case("infer: a file of the user's at an output's name", lambda w: (write(w.out / "demo-real-case-3.wav", b"mine"),
         w.infer("eval-real"))[1], 2, "demo-real-case-3.wav: not written by dcase9 in this folder",
         lambda w: (w.out / "demo-real-case-3.wav").read_bytes() == b"mine" or pytest.fail("overwritten")),

    # --- Training that diverges (issue 21)
    Case("train: the loss diverges (optimizer.lr=1e30)",
         lambda w: train_args(w, "--steps", "3", "--set", "optimizer.lr=1e30"), 1,
         "training diverged at step 2: the loss is", diverged_after_step_1),
    Case("train: diverges before any save",
         lambda w: train_args(w, "--steps", "3", "--set", "optimizer.lr=1e30", "--set", "checkpoint.last_every_steps=100"),
         1, "no checkpoint had been saved before it, so there is no good one", nothing_saved),
    Case("infer --checkpoint: NaN weights", infer_nan_checkpoint, 2,
         "net.ckpt: state dict (ss_model.*): 7 of 125 tensors hold NaN or infinite values (base.bn0.weight, "
         "base.bn0.bias, base.bn0.running_mean, base.bn0.running_var, base.pre_conv.weight and 2 more)", nothing_written),
    Case("score --ats-checkpoint: an infinite CLAP weight", ats_with_inf_clap, 2,
         "1 of 137 tensors hold NaN or infinite values (text_model.embeddings.word_embeddings.weight)"),
    Case("train --init: NaN weights", lambda w: train_args(w, "--init", str(tiny_net_checkpoint(w, nan_tensors=9))), 2,
         "(ss_model.*): 9 of", no_config_file),
    Case("train --resume: NaN in last.ckpt", resume_nan_checkpoint, 2,
         "2 of 4 tensors hold NaN or infinite values (ss_model.b, optimizer_states[0].state[0].exp_avg)",
         config_unchanged_and_no_summary),
    Case("infer --checkpoint: a plain pickle",
         lambda w: w.infer("eval-real", "--checkpoint", str(plain_pickle(w)), *tiny_system(w), system="baseline"), 2,
         "a plain Python pickle (pickle.dump), not a torch checkpoint (torch.save): it cannot be read without running "
         "the code it may hold. If you trust its source, pass --trust-checkpoint", nothing_written, forbid="weights_only"),
    Case("train --init: a plain pickle", lambda w: train_args(w, "--init", str(plain_pickle(w))), 2,
         "pass --trust-checkpoint", no_config_file),

    # --- A slow or oversized LLM server (issue 21)
    Case("augment --timeout 3: a server that trickles its answer", trickling_server, 1,
         "no answer for 'A dog barks loudly in the distance.' (APITimeoutError: Request timed out: no complete answer "
         "within 3 s", trickle_cut_off),
    Case("augment: a 10 MB answer to 256 tokens", oversized_answer, 0,
         "1 answer(s) were longer than 4,096 bytes (16 per token asked for, --max-new-tokens 256) and were cut",
         answer_cut_and_logs_small),

    # --- YAML duplicate keys and names that collide elsewhere (issue 21)
    Case("a key twice in a training config",
         lambda w: ["train", "--config", str(yaml_file("seed: 0\noptim:\n  lr: 0.001\n  lr: 0.1\n")(w.root)),
                   "--out", str(w.root / "run"), "--print-config"],
         2, "hostile.yaml: refused YAML: duplicate key 'optim.lr' at lines 3 and 4"),
    Case("a key twice in a system config, spelled two ways",
         lambda w: ["infer", "--system", "mixture", "--system-config", str(yaml_file("1: a\ntrue: b\n")(w.root)),
                   "--data", str(w.copy("eval-real")), "--out", str(w.out)],
         2, "duplicate key 'true', written '1' and 'true' at lines 1 and 2"),
    Case("a key twice in submission.yaml",
         lambda w: ["package", "-c", str(yaml_file("submitter: {lastname: A}\nsubmitter: {lastname: B}\n")(w.root)),
                   "-o", str(w.root / "o.zip")], 2, "duplicate key 'submitter' at lines 1 and 2"),
    Case("two merge keys in one mapping of a profile",
         lambda w: ["package", "--check", str(zip_of({REPORT: b"%PDF-"}, w.root / "p.zip")), "--profile",
                   str(yaml_file("a: &a {x: 1}\nb: &b {y: 1}\nc:\n  <<: *a\n  <<: *b\n")(w.root))],
         2, "duplicate key 'c.<<' at lines 4 and 5 (a mapping has one merge key: merge several mappings with "
            "`<<: [*first, *second]`)"),
    Case("a key twice in a meta template",
         lambda w: ["package", "--check", str(zip_of({REPORT: b"%PDF-"}, w.root / "p.zip")), "--template",
                   str(yaml_file("system:\n  name: x\n  name: y\n")(w.root))], 2, "duplicate key 'system.name'"),
    Case("a key twice in an augment config",
         lambda w: ["augment", "--config", str(yaml_file("backend: {kind: openai, kind: local}\n")(w.root)), "-o",
                   str(w.out)], 2, "duplicate key 'backend.kind' twice on line 1"),
    Case("a key twice in a prompt file",
         lambda w: ["augment", str(write(w.root / "c.json", '{"data": [{"wav": "a.wav", "caption": "A dog."}]}')), "-d",
                   "fsd50k", "--prompt", str(yaml_file("id: mine\ntemplate: a\ntemplate: b\n")(w.root)), "--dry-run",
                   "-o", str(w.out)], 2, "duplicate key 'template' at lines 2 and 3"),
    Case("a key twice in a meta file inside the zip",
         check_zip(lambda t: zip_of({META: b"submission:\n  label: A\n  name: B\n  label: C\n",
                                     REPORT: one_page_pdf("A report")}, t / "p.zip")),
         1, f"{META}:4: refused YAML: duplicate key 'submission.label' at lines 2 and 4"),
    Case("validate: file names that differ only by NFC/NFD", lambda w: ["validate", str(cafe_set(w.copy("eval-real")))],
         0, f"row 4, field 'file_name': file name '{CAFE_NFD}.wav' and '{CAFE_NFC}.wav' of row 3 differ only by "
            "Unicode normalisation (NFC/NFD)"),
    Case("validate --strict: file names that differ only by letter case",
         lambda w: ["validate", "--strict", str(rename_mixtures(w.copy("eval-real"), {"demo-real-case-3": "Demo-Real-Case-2"}))],
         1, "row 5, field 'file_name': file name 'Demo-Real-Case-2.wav' and 'demo-real-case-2.wav' of row 4 differ "
            "only by letter case: macOS and Windows read them as one file"),
    Case("package: estimates whose entry names differ only by NFC/NFD",
         lambda w: [build_with_report(one_page_pdf("A report"))(w), package_data(
             w.root / "submission.yaml", {"eval-synth": w.copy("eval-synth"), "eval-real": cafe_set(w.copy("eval-real"))})][0],
         1, f"{beside(OUTPUT, CAFE_NFD)}: differs from the entry '{beside(OUTPUT, CAFE_NFC)}' only by Unicode "
            "normalisation (NFC/NFD)", nothing_packaged),
    Case("package --check: entries that differ only by NFC/NFD",
         check_zip(lambda t: zip_of({beside(OUTPUT, CAFE_NFC): b"", beside(OUTPUT, CAFE_NFD): b""}, t / "p.zip")),
         1, f"{beside(OUTPUT, CAFE_NFD)}: differs from the entry '{beside(OUTPUT, CAFE_NFC)}' only by Unicode "
            "normalisation (NFC/NFD)"),
    Case("package --check: entries that differ only by letter case",
         check_zip(lambda t: zip_of({OUTPUT: b"", OUTPUT.replace("case-0", "CASE-0"): b""}, t / "p.zip")),
         1, f"{OUTPUT.replace('case-0', 'CASE-0')}: differs from the entry '{OUTPUT}' only by letter case: unpacked on "
            "macOS or Windows the two are one file and one is lost; rename one [name-collision]"),
    Case("package --check: a 0-byte output", check_zip(lambda t: zip_of({OUTPUT: b""}, t / "p.zip")),
         1, f"{OUTPUT}: empty file (0 bytes), not audio: write this output again and rebuild the package"),
    # issue 23: dcase9 separate (a user's recordings)
    Case("separate: a recording that is not audio", lambda w: separate_args(w, write(w.root / "notes.wav", "text\n")),
         2, "notes.wav: not audio that libsndfile"),
    Case("separate: a silent recording next to a good one",
         lambda w: separate_args(w, silent_wav(w.root / "quiet.wav"), w.audio("eval-real", 0)), 1,
         "quiet.wav: silent: every one of its 16000 samples is zero", lambda w: separated_only(w, "demo-real-case-0")),
    Case("separate: --out over the recordings' folder",
         lambda w: separate_args(w, w.audio("eval-real", 0), out=w.audio("eval-real", 0).parent), 2,
         "contains the recording"),
    Case("separate: a system that needs the reference", lambda w: separate_args(w, w.audio("eval-real", 0), system="oracle"),
         2, "system 'oracle' separates with the reference signal"),
    Case("separate: an empty query", lambda w: separate_args(w, w.audio("eval-real", 0), query="  "), 2,
         "an empty query ('  '): say what to separate"),
    Case("separate: a silent audio example",
         lambda w: [*separate_args(w, w.audio("eval-real", 0)), "--query-audio", str(silent_wav(w.root / "ex.wav"))],
         2, "ex.wav: silent: every one of its 16000 samples is zero, nothing to separate (an audio example"),
    # issue 26: AudioSep's six LASS benchmarks (EVALUATION_DIR/metadata, EVALUATION_DIR/data/<name>)
    Case("validate: a benchmark folder without its metadata CSV", lambda w: [
         "validate", str(without(w.copy("evaluation") / "metadata" / "esc50_eval.csv").parent.parent / "data" / "esc50")],
         2, "esc50_eval.csv: the metadata CSV of the esc50 benchmark: file not found (AudioSep's layout: "
            "EVALUATION_DIR/metadata/esc50_eval.csv next to EVALUATION_DIR/data/esc50/"),
    Case("validate: AudioSet without class_labels_indices.csv", lambda w: [
         "validate", str(without(w.copy("evaluation") / "metadata" / "class_labels_indices.csv").parent.parent / "data"
                         / "audioset")],
         1, "AudioSep's AudioSet evaluator queries each class with its display_name from class_labels_indices.csv"),
    Case("validate: a MUSIC caption that is none of its ten instruments", lambda w: [
         "validate", str(appended(w.copy("evaluation"), "music", "12,banjo,a.wav,b.wav"))],
         1, "row 14, field 'caption': caption 'banjo' is none of MUSIC's ten instruments"),
    Case("infer: a benchmark reference shorter than its mixture", lambda w: [
         "infer", "-s", "mixture", "-d", str(shortened(w.copy("evaluation"), "esc50", "segment-2.wav")), "-o",
         str(w.out)], 1, "the mixture has 64000 samples at 32000 Hz, the reference"),
    Case("score: benchmark estimates at 16 kHz", lambda w: [
         "score", "-d", str(w.copy("evaluation") / "data" / "esc50"), "-e", str(estimates_at_16k(w, "esc50"))],
         1, "mixture-0.wav: 16000 Hz, expected 32000"),
    Case("suite: a folder not in AudioSep's layout", lambda w: ["suite", str(w.copy("validation")), "-s", "mixture",
                                                                "-o", str(w.out)],
         2, "not AudioSep's evaluation folder: no metadata/ or data/ in it"),
    Case("suite: --out inside EVALUATION_DIR", lambda w: ["suite", str(w.copy("evaluation")), "-s", "mixture", "-o",
                                                          str(w.root / "evaluation" / "data" / "results")],
         2, "--out", lambda w: (w.root / "evaluation" / "data" / "results").exists() and pytest.fail("written")),

    # issue 24: exporting trained systems, checkpoints from the Hub.
    Case("export: a checkpoint made elsewhere, without --system",
         lambda w: ["export", str(foreign_checkpoint(w)), "--out", str(w.out), "--offline"], 2,
         "does not say which system loads it (it was made elsewhere than `dcase9 train`): name it with --system"),
    Case("export: --dry-run without --push-to-hub",
         lambda w: ["export", str(foreign_checkpoint(w)), "--out", str(w.out), "--dry-run"], 2,
         "--dry-run lists what --push-to-hub would upload: name the repository with --push-to-hub"),
    Case("export: --push-to-hub a name that is not owner/name",
         lambda w: ["export", str(foreign_checkpoint(w)), "--out", str(w.out), "--system", "baseline", "--offline",
                    "--push-to-hub", "../owner"], 2, "'../owner' is not a Hugging Face model: write hf://owner/name"),
    Case("export: --out is the checkpoint's folder",
         lambda w: ["export", str(foreign_checkpoint(w)), "--out", str(w.root), "--system", "baseline", "--offline"],
         2, "contains the checkpoint"),
    Case("infer: --checkpoint hf:// without owner/name",
         lambda w: w.infer("eval-real", "--checkpoint", "hf://just-a-name", system="baseline"), 2,
         "'hf://just-a-name' is not a Hugging Face model: write hf://owner/name or hf://owner/name@revision"),
    Case("infer: --checkpoint hf:// offline, not in the cache",
         lambda w: w.infer("eval-real", "--checkpoint", "hf://dcase9-tests/nothing", "--offline", system="baseline"),
         2, "hf://dcase9-tests/nothing is not in the Hugging Face cache"),
    Case("infer: --checkpoint a folder that is not an export",
         lambda w: w.infer("eval-real", "--checkpoint", str(w.copy("validation")), "--offline", system="baseline"),
         2, "is a folder, not a checkpoint file; a folder of `dcase9 export` holds config.json, model.safetensors "
            "and checksums.sha256"),

    # --- Continuing a run of the official training code (issue 25)
    Case("train --resume-from: a weights-only checkpoint", resume_from_published, 2,
         "holds no optimizer state (a weights-only checkpoint, such as the published ones), so no run can continue "
         "from it; start a new run from its weights with --init", no_config_file),
    Case("train --resume-from together with --resume", lambda w: train_args(w, "--resume", "--resume-from",
                                                                          str(w.afile())), 2,
         "--resume-from starts a new run folder from another run's checkpoint, --resume continues the run in --out: "
         "give one of them"),
    Case("train --resume-from: not a checkpoint", lambda w: train_args(w, "--resume-from", str(w.afile())), 2,
         "--resume-from", no_config_file),

    # issue 21, class 2 (a full disk) in the commands added since: separate, train, suite, export
    Case("separate: the disk fills up", lambda w: separate_args(w, w.audio("eval-real", 0)), 2, "the disk is full",
         lambda w: no_partial_files(w.out), disk_full_after=0),
    Case("train: the disk fills up", train_args, 2, "the disk is full", lambda w: no_partial_files(w.out),
         disk_full_after=0),
    Case("suite: the disk fills up", lambda w: ["suite", str(w.copy("evaluation")), "-s", "mixture", "-o", str(w.out),
                                                "--only", "esc50"], 2, "the disk is full",
         lambda w: no_partial_files(w.out), disk_full_after=2),
    # issue 27.3: missing weights named all at once, with the running command's own flags; no network, at once
    Case("infer -s 2 offline: every missing weight in one message",
         lambda w: no_weights_cached(w, w.infer("eval-real", "--offline", system="2")), 2,
         "2 weights are not available here; offline mode is on (--offline), so nothing was downloaded: - "
         "audiosep-checkpoint"),
    Case("score --ats offline: the tokenizer and CLAP at once, CLAP with --ats-checkpoint",
         lambda w: no_weights_cached(w, ["score", "-d", str(w.copy("eval-real")), "-e", str(w.copy("eval-real")),
                                         "--ats", "--offline"]), 2,
         "give it with --ats-checkpoint FILE or --weight clap-music-speech-audioset=FILE"),
    Case("download offline: where each file goes, no flag that download lacks",
         lambda w: no_weights_cached(w, ["download", "-s", "2"]), 2,
         "offline mode is on (DCASE9_OFFLINE is set), so nothing was downloaded", env={"DCASE9_OFFLINE": "1"},
         forbid="--weight"),
    Case("download, the network unreachable: said at once, no AssertionError",
         lambda w: no_network(w, ["download", "-s", "2"]), 2,
         "2 weights are not available here; the network cannot be reached, so nothing was downloaded",
         forbid="AssertionError"),
    # The options of every command that loads a system are one set: separate takes hf:// as infer does.
    Case("separate: --checkpoint hf:// without owner/name",
         lambda w: [*separate_args(w, w.audio("eval-real", 0), system="baseline"), "--checkpoint", "hf://just-a-name"],
         2, "'hf://just-a-name' is not a Hugging Face model: write hf://owner/name or hf://owner/name@revision"),
]


def no_weights_cached(w: Workspace, args: list[str]) -> list[str]:
    """`args`, run with an empty Hugging Face cache (dcase9's home is the session's, where nothing is)."""
    from unittest import mock

    import huggingface_hub.constants

    w.stack.enter_context(mock.patch.object(huggingface_hub.constants, "HF_HUB_CACHE", str(w.root / "hf-cache")))
    return args


def no_network(w: Workspace, args: list[str]) -> list[str]:
    """`args`, run with nothing cached and the Hugging Face Hub where nothing listens (port 9)."""
    from unittest import mock

    import huggingface_hub.constants

    nowhere = "http://127.0.0.1:9"
    w.stack.enter_context(mock.patch.object(huggingface_hub.constants, "ENDPOINT", nowhere))
    w.stack.enter_context(mock.patch.object(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                                            nowhere + "/{repo_id}/resolve/{revision}/{filename}"))
    return no_weights_cached(w, args)


def without(path: Path) -> Path:
    path.unlink()
    return path


def appended(evaluation: Path, name: str, line: str) -> Path:
    csv = evaluation / "metadata" / f"{name}_eval.csv"
    csv.write_text(csv.read_text() + line + "\n")
    return evaluation / "data" / name


def shortened(evaluation: Path, name: str, file: str) -> Path:
    path = evaluation / "data" / name / file
    data, rate = sf.read(path, dtype="float32")
    sf.write(path, data[: len(data) // 2], rate, subtype="PCM_16")
    return evaluation / "data" / name


def estimates_at_16k(w: Workspace, name: str) -> Path:
    folder = w.root / "estimates-16k"
    folder.mkdir()
    for mixture in sorted((w.copy("evaluation") / "data" / name).glob("mixture-*.wav")):
        data, _ = sf.read(mixture, dtype="float32")
        sf.write(folder / mixture.name, data[::2], 16000, subtype="FLOAT")
    return folder


def flat(text: str) -> str:
    return " ".join(text.split())


_LIMITED = """
import os, resource, sys
import dcase9.api, dcase9.cli  # what the command needs, imported before the limit
import dcase9.submission.check, dcase9.submission.package, soundfile
from dcase9.cli import app

def address_space():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))

limit = address_space() + int(sys.argv[1]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
app(sys.argv[2:], prog_name="dcase9")
"""


def run_limited(args: list[str], memory_mb: int, extra_env: dict[str, str]) -> tuple[int, str]:
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "COLUMNS": "200", "PYTHONPATH": str(REPO), **extra_env}
    done = subprocess.run([sys.executable, "-c", _LIMITED, str(memory_mb), *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case: Case, demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ExitStack() as stack:
        workspace = Workspace(tmp_path, demo_root, stack)
        args = [str(a) for a in case.build(workspace)]
        if case.memory_mb is not None:
            if not sys.platform.startswith("linux"):
                pytest.skip("the address-space limit is measured through /proc")
            exit_code, output = run_limited(args, case.memory_mb, case.env)
        else:
            for name, value in case.env.items():
                monkeypatch.setenv(name, value)
            if case.disk_full_after is not None:
                monkeypatch.setattr(os, "fsync", full_disk_fsync(case.disk_full_after))
            result = runner.invoke(app, args)
            monkeypatch.undo()
            exit_code, output = result.exit_code, result.output
            assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert "Traceback" not in output and "MemoryError" not in output, output
        assert exit_code == case.exit_code, output
        assert flat(case.message) in flat(output), output
        if exit_code == 2:
            assert "error:" in output, output
        if case.forbid is not None:
            assert case.forbid not in output
            for path in tmp_path.rglob("*"):
                if path.is_file() and path.suffix not in (".zip", ".pdf", ".yaml"):  # the inputs hold it on purpose
                    assert case.forbid.encode() not in path.read_bytes(), path
        if case.check is not None:
            case.check(workspace)


def test_cases_have_distinct_names() -> None:
    assert len({c.name for c in CASES}) == len(CASES)


# --- beyond the command line: the engine, score's extra metrics, the lock, a hard kill ----------------


class GainSeparator:
    """Returns the mixture times `gain` (NaN for a NaN gain); counts the clips it saw."""

    sample_rate = 16000

    def __init__(self, gain: float = 1.0, delay: float = 0.0):
        self.gain, self.delay, self.clips = gain, delay, 0

    def encode_queries(self, queries):  # type: ignore[no-untyped-def]
        return None

    def separate(self, mixture, conditions, reference=None):  # type: ignore[no-untyped-def]
        time.sleep(self.delay)
        self.clips += mixture.shape[0]
        return mixture * self.gain


def separate_with(separator: Any, data: Path, out: Path, **options: Any) -> Any:
    from dcase9.data.formats import open_dataset
    from dcase9.engine import EngineOptions, Separator

    return Separator(separator, identity={"system": "gain"},
                     options=EngineOptions(progress=False, **options)).infer(open_dataset(data), out)


def test_a_system_returning_nan_writes_nothing_and_says_so(demo_root: Path, tmp_path: Path) -> None:
    result = separate_with(GainSeparator(float("nan")), demo_root / "eval-real", tmp_path / "out", limit=3)
    assert result.written == 0 and len(result.problems) == 3 and not list((tmp_path / "out").glob("*.wav"))
    assert "the system returned 160000 NaN or infinite samples" in result.problems[0].message
    assert strict_json(tmp_path / "out" / "dcase9-run.json")["status"] == "incomplete"


def test_a_non_finite_metric_is_a_problem_and_the_summary_stays_json(demo_root: Path, tmp_path: Path) -> None:
    from dcase9.scoring import score_estimates

    separate_with(GainSeparator(), demo_root / "validation", tmp_path / "est", limit=3)

    def broken_metric(specs, estimates, device):  # type: ignore[no-untyped-def]
        return [float("nan") if k == 0 else 0.5 for k in range(len(specs))]

    report = score_estimates(demo_root / "validation", tmp_path / "est", tmp_path / "report", progress=False,
                             extra_metrics={"broken": broken_metric})
    kinds = {p.kind for p in report.problems}
    assert "non-finite-score" in kinds and len(report.rows) == 2
    summary = strict_json(tmp_path / "report" / "summary.json")
    assert summary["mean"]["broken"] == 0.5 and summary["scored"] == 2


def test_the_lock_leaves_no_file_and_takes_over_a_dead_holders(tmp_path: Path) -> None:
    from dcase9.errors import ConfigError
    from dcase9.files import LOCK_NAME, exclusive_lock

    (tmp_path / LOCK_NAME).write_text("dcase9 infer, process 999999")  # left by a killed process: no flock held
    with exclusive_lock(tmp_path, "infer"), \
            pytest.raises(ConfigError, match=r"another dcase9 command \(dcase9 infer, process \d+\)"), \
            exclusive_lock(tmp_path, "mix"):
        pass
    assert not (tmp_path / LOCK_NAME).exists()


_KILLED_RUN = """
import sys
sys.path.insert(0, sys.argv[3])
from tests.test_hostile import GainSeparator, separate_with
from pathlib import Path
separate_with(GainSeparator(delay=0.2), Path(sys.argv[1]), Path(sys.argv[2]), batch_size=1, workers=1)
"""


def test_sigkill_during_infer_then_resume_loses_and_repeats_nothing(demo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ledger_path = out / "dcase9-outputs.jsonl"
    process = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(demo_root / "eval-real"), str(out), str(REPO)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(600):  # until some outputs are recorded (a condition, not a duration)
            if ledger_path.exists() and ledger_path.read_text().count("\n") >= 3:
                break
            if process.poll() is not None:
                pytest.fail(f"the run ended before it was killed: {process.stderr.read().decode()}")
            time.sleep(0.05)
        process.kill()  # SIGKILL: no handler runs
    finally:
        process.wait()
    recorded = [json.loads(line) for line in ledger_path.read_text().split("\n")[:-1]]  # a torn last line is no record
    assert 3 <= len(recorded) < 12
    separator = GainSeparator()
    result = separate_with(separator, demo_root / "eval-real", out)
    assert result.skipped == len(recorded) and result.written == separator.clips == 12 - len(recorded)
    assert not list(out.glob(".*.part")) and len(list(out.glob("*.wav"))) == 12
    outputs_are_plain_and_current(Workspace(tmp_path, demo_root, ExitStack()))
