"""What a system is: mostly data (sample rate, weights, defaults) plus a factory for its model.

A `SystemSpec` names everything the registry, `dcase9 systems`, `dcase9 download` and the engine
need to know without importing any model code; `build_model` imports the system's module only
when the system is actually run (`dcase9.systems.loading.load_separator` wraps it for the engine).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from dcase9.engine import SeparationModel
from dcase9.models.checkpoints import read_checkpoint


@dataclass(frozen=True)
class Published:
    """Numbers a paper reports for this system on the validation set (dB; ATS is a cosine).

    `seed` and `row` say where: the paper ("000": Song et al., "003": Xiao et al., as CHALLENGE.md
    numbers them) and the row of its results table (seed 003 Table 2: the method's name; seed 000
    Table 5: model, training data, training approach, caption augmentation). tests/test_systems.py
    reads every number back from the papers' text.
    """

    sdr: float | None = None
    sdri: float | None = None
    sisdr: float | None = None
    ats: float | None = None
    source: str = ""
    seed: str = ""
    row: tuple[str, ...] = ()


@dataclass(frozen=True)
class PublishedBenchmark:
    """Numbers published for this system on one of AudioSep's LASS benchmarks (`dcase9.data.benchmarks`): the
    SDRi and SI-SDR its benchmark.py prints (dB), and where they were published. `dcase9 suite` prints them
    next to a run's; tests/test_suite.py reads them back from AudioSep's README."""

    benchmark: str  # vggsound, music, esc50, audioset, audiocaps, clotho
    sdri: float
    sisdr: float
    source: str


@dataclass(frozen=True)
class SystemSpec:
    name: str  # what users type: `--system baseline`, `--system 2`
    title: str
    summary: str
    sample_rate: int  # the rate the model runs at; the engine resamples 16 kHz data to it
    factory: str  # "module:callable" returning a SeparationModel, imported lazily
    aliases: tuple[str, ...] = ()
    needs_reference: bool = False  # only the oracle
    segment_seconds: float | None = None  # default chunk length for long inputs (None: whole)
    weights: tuple[str, ...] = ()  # registry names; the first is what --checkpoint replaces
    optional_weights: tuple[str, ...] = ()  # fetched only when the main weights lack them
    # (spec, its options) -> those of `weights` the factory asks for with these options (None: all of them);
    # checked, all at once, before anything is read or downloaded
    needs: Callable[[SystemSpec, Mapping[str, Any]], tuple[str, ...]] | None = None
    published: tuple[Published, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)  # defaults of the system's typed config
    published_benchmarks: tuple[PublishedBenchmark, ...] = ()  # on AudioSep's benchmarks (`dcase9 suite`)

    def to_json(self) -> dict[str, Any]:
        """What `dcase9 systems --json` prints of the system: its names, what it needs, its defaults and the
        published numbers (the keys are stable; the factory, an import path, is the code's business)."""
        return {"name": self.name, "aliases": list(self.aliases), "title": self.title, "summary": self.summary,
                "sample_rate": self.sample_rate, "needs_references": self.needs_reference,
                "segment_seconds": self.segment_seconds, "weights": list(self.weights),
                "optional_weights": list(self.optional_weights), "options": dict(self.options),
                "published": [asdict(p) for p in self.published],
                "published_benchmarks": [asdict(p) for p in self.published_benchmarks]}


@dataclass
class BuildContext:
    """Everything a factory gets: the device, the system options, a way to get weights, and a way to
    read checkpoints (`read_checkpoint`: a file read already while loading is not read again)."""

    device: torch.device
    options: dict[str, Any]
    weight: Callable[[str], Path]  # registry name -> local file or folder (resolved on demand)
    trust_checkpoint: bool = False
    checkpoints: dict[Path, Any] = field(default_factory=dict)  # path -> what read_checkpoint gave
    # CLAP towers a query encoder builds: "text" (all a text query needs) or "both" (audio examples as queries)
    query_towers: str = "text"

    def read_checkpoint(self, path: Path) -> Any:
        """The checkpoint at `path` (memory-mapped, without running pickled code unless trusted)."""
        if path not in self.checkpoints:
            self.checkpoints[path] = read_checkpoint(path, trust=self.trust_checkpoint)
        return self.checkpoints[path]


def weights_needed(spec: SystemSpec, options: Mapping[str, Any]) -> tuple[str, ...]:
    """The registry weights the system's factory asks for with `options` (see `SystemSpec.needs`)."""
    return spec.weights if spec.needs is None else spec.needs(spec, options)


def build_model(spec: SystemSpec, context: BuildContext) -> SeparationModel:
    """The system's model, from its factory (imported now)."""
    module_name, _, attr = spec.factory.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    model = factory(spec, context)
    if not isinstance(model, SeparationModel):
        raise TypeError(f"{spec.factory} returned {type(model).__name__}, which is not a SeparationModel")
    return model
