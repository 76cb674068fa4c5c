"""What the `dcase9 package` tests share: submission inputs from the demo data, configs, zip surgery."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import yaml

from dcase9.submission.pdf import write_one_page_pdf

REPO = Path(__file__).parents[1]
EXAMPLE_CONFIG = REPO / "docs" / "submission.example.yaml"
SUBSETS = ("eval-synth", "eval-real")

# The checkpoint's countable parameters: bn0 weight + bias (8), conv (60), query encoder (10).
CHECKPOINT_PARAMETERS = {"ss_model": 68, "query_encoder": 10}
CHECKPOINT_EXCLUDED = 4 + 4 + 9 * 16 + 16  # BN statistics, stft kernel, istft window


def checkpoint_state_dict() -> dict[str, torch.Tensor]:
    """A ResUNet30-like state dict with what the count must leave out: BN statistics, a step
    counter, the fixed STFT/ISTFT tensors, an integer buffer."""
    return {
        "ss_model.base.bn0.weight": torch.ones(4),
        "ss_model.base.bn0.bias": torch.zeros(4),
        "ss_model.base.bn0.running_mean": torch.zeros(4),
        "ss_model.base.bn0.running_var": torch.ones(4),
        "ss_model.base.bn0.num_batches_tracked": torch.tensor(7),
        "ss_model.base.conv.weight": torch.randn(3, 4, 5),
        "ss_model.base.stft.conv_real.weight": torch.randn(9, 1, 16),
        "ss_model.base.istft.ola_window": torch.ones(16),
        "query_encoder.model.text.weight": torch.randn(2, 5),
        "query_encoder.model.position_ids": torch.arange(8).unsqueeze(0),
    }


@dataclass(frozen=True)
class SubmissionInputs:
    root: Path
    data: dict[str, Path]  # subset -> evaluation-set folder
    float_estimates: dict[str, Path]  # subset -> `dcase9 infer` output (32-bit float)
    pcm_estimates: dict[str, Path]  # subset -> `dcase9 infer --pcm16` output
    report: Path  # `dcase9 score` report folder on the demo validation set
    checkpoint: Path
    pdf: Path


def make_submission_inputs(root: Path, demo_root: Path) -> SubmissionInputs:
    from dcase9 import api

    data = {subset: demo_root / subset for subset in SUBSETS}
    float_estimates = {s: root / "estimates" / "float" / s for s in SUBSETS}
    pcm_estimates = {s: root / "estimates" / "pcm" / s for s in SUBSETS}
    for subset in SUBSETS:
        api.infer("mixture", data[subset], float_estimates[subset], progress=False)
        api.infer("mixture", data[subset], pcm_estimates[subset],
                     progress=False, pcm16=True)
    validation_estimates = root / "estimates" / "validation"
    api.infer("mixture", demo_root / "validation", validation_estimates, progress=False)
    report = root / "reports" / "mixture"
    api.score(demo_root / "validation", validation_estimates, report, progress=False)
    checkpoint = root / "checkpoints" / "system.ckpt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": checkpoint_state_dict(), "epoch": 3, "global_step": 200}, checkpoint)
    pdf = root / "report" / "technical_report.pdf"
    pdf.parent.mkdir(parents=True)
    write_one_page_pdf(pdf, "A test technical report", ["Authors: Jane Smith, John Doe.", "Abstract: a test."])
    return SubmissionInputs(root, data, float_estimates, pcm_estimates, report, checkpoint, pdf)


def config_dict(inputs: SubmissionInputs, folder: Path) -> dict[str, Any]:
    """docs/submission.example.yaml with its paths pointed at `inputs`, relative to `folder`.

    System 1 packages float estimates (converted), system 2 PCM_16 ones (copied byte for byte).
    """
    def rel(path: Path) -> str:
        return os.path.relpath(path, folder)

    config = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    config["technical_report"] = rel(inputs.pdf)
    config["data"] = {subset: rel(path) for subset, path in inputs.data.items()}
    for system, estimates in zip(config["systems"], (inputs.float_estimates, inputs.pcm_estimates), strict=True):
        system["parameters"] = {"checkpoints": [rel(inputs.checkpoint)]}
        system["development_report"] = rel(inputs.report)
        system["estimates"] = {subset: rel(path) for subset, path in estimates.items()}
    return config


def write_config(inputs: SubmissionInputs, folder: Path,
                 edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = config_dict(inputs, folder)
    if edit is not None:
        edit(config)
    path = folder / "submission.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def wav_bytes(samples: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, subtype=subtype, format="WAV")
    return buffer.getvalue()


def rewrite_zip(source: Path, target: Path, *, drop: Callable[[str], bool] = lambda name: False,
                rename: Callable[[str], str] = lambda name: name,
                replace: Mapping[str, bytes] | None = None, add: Mapping[str | zipfile.ZipInfo, bytes] | None = None
                ) -> Path:
    """A copy of a package with entries dropped, renamed, replaced or added (names as given: no checks).

    Entries are stored uncompressed: the check accepts any method, and tests stay fast.
    """
    replace = replace or {}
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as new:
        for info in old.infolist():
            if drop(info.filename):
                continue
            data = replace.get(info.filename, old.read(info))
            new.writestr(rename(info.filename), data)
        for name, data in (add or {}).items():
            new.writestr(name, data)
    return target


# A hand-made template in the shape of a DCASE meta template (comments, `!!null`); not an official file.
HAND_MADE_TEMPLATE = """\
# Submission information
submission:
  label: Lastname_INST_task9_1      # [Last name]_[Abbreviation of institute]_task9_[1-4]
  name: System name
  abbreviation: Sys                 # at most 10 characters
  authors:
    - lastname: Lastname
      firstname: Firstname
      email: name@example.org
      corresponding: true           # one author
      affiliation:
        abbreviation: INST
        institute: Institute
        department: Department      # Optional
        location: City, Country
system:
  description:
    input_sampling_rate: 16kHz
  complexity:
    total_parameters: 1000
  external_datasets:
    - name: Dataset
      url: https://example.org
      total_audio_length: 10        # minutes
  source_code: !!null
results:
  development_dataset:
    sdr: 0.0
    sdri: 0.0
    sisdr: 0.0
"""
