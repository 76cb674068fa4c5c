"""AudioSep's six LASS benchmarks as data: what each is, how its metadata reads, how it is aggregated.

AudioSep (github.com/Audio-AGI/AudioSep) publishes the suite LASS papers report next to the DCASE sets:
`evaluation/metadata/<name>_eval.csv` plus the audio under `evaluation/data/<name>/`, scored by
`benchmark.py` with one evaluator per set (`evaluation/evaluate_<name>.py`). What those evaluators
do, read from their code (the authority; this module restates it, `dcase9.data.formats` reads the
files accordingly):

- every file is loaded with `librosa.load(path, sr=32000, mono=True)`: 32 kHz whatever the file's rate;
- per row, one text query, one forward of the whole mixture (batch 1), and on the 32 kHz signals
  SDR(reference, estimate) - SDR(reference, mixture) (`sdri`) and SI-SDR(reference, estimate)
  (`sisdr`), with the same SDR and SI-SDR formulas as the DCASE baseline (`dcase9.metrics`); VGGSound's
  evaluator also computes SI-SDRi, which `benchmark.py` does not print;
- the CSV is read by position (`idx, caption, _, _, _ = row`): the header is skipped, not read;
- AudioCaps, Clotho, ESC-50, MUSIC: reference `segment-{idx}.wav`, mixture `mixture-{idx}.wav`;
  the other columns (`src_wav`, `noise_wav`...) only record how the mixtures were made;
- VGGSound: the columns `mix_wav` and `s0_wav` are paths under `data/vggsound`; the query is `s0_text`
  (source s0 is the target, s1 the interference);
- AudioSet: the evaluator does not read `audioset_eval.csv`; it lists each `class_id=N` folder, takes
  the first 10 clip names in sorted order (`<name>,mixture.wav` / `<name>,source.wav`) and queries with
  the class's `display_name` from `class_labels_indices.csv`, taken by position (row N, not the `index`
  column). The CSV lists exactly those clips (10 per class for 527 classes); `dcase9 validate` checks
  that the folders still give that selection;
- aggregates: AudioSet takes each class's median (`np.nanmedian`), then the mean over classes ignoring
  NaN (`np.nanmean`: a class without clips drops out); MUSIC the mean over its ten instrument classes of
  each class's mean (`np.mean`: a class without clips makes it NaN); the others the mean over clips.
- AudioCaps offers two queries (`AudioCapsEvaluator(query='caption' | 'labels')`); `benchmark.py`
  uses the caption.

Published numbers (AudioSep's README, `audiosep_base_4M_steps.ckpt`) live with the system in
`dcase9.systems.catalog`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BENCHMARK_SAMPLE_RATE = 32000  # librosa.load(..., sr=32000) in every evaluator
METADATA_DIR = "metadata"  # EVALUATION_DIR/metadata/<name>_eval.csv
DATA_DIR = "data"  # EVALUATION_DIR/data/<name>/
AUDIOSET_LABELS_CSV = "class_labels_indices.csv"  # index, mid, display_name
AUDIOSET_CLIPS_PER_CLASS = 10  # AudioSetEvaluator(number_per_class=10)
# MUSICEvaluator.source_types: the classes of its aggregate (a caption outside them stops the evaluator)
MUSIC_CLASSES = ("acoustic guitar", "violin", "accordion", "xylophone", "erhu", "trumpet", "tuba", "cello", "flute",
                 "saxophone")

# How a benchmark's clips become its number
PER_CLIP_MEAN = "mean over clips"
CLASS_MEDIAN_MEAN = "median per class, then mean over classes (NaN ignored)"
CLASS_MEAN_MEAN = "mean per class, then mean over the ten instrument classes"


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of AudioSep's suite: its folder name (`evaluation/data/<name>`, also the data set
    kind and `--only` name), how its metadata reads and how its clips are aggregated."""

    name: str
    title: str  # as AudioSep's evaluation log prints it
    csv_name: str  # in evaluation/metadata/
    header: tuple[str, ...]  # the published header; the evaluator reads the columns by position
    queries: tuple[str, ...]  # the columns a query may come from; the first is what benchmark.py uses
    aggregate: str  # PER_CLIP_MEAN | CLASS_MEDIAN_MEAN | CLASS_MEAN_MEAN
    group_by: str | None  # what the classes of the aggregate are, for reports
    published_clips: int  # rows of the published CSV
    what: str  # one line for `dcase9 suite` and the docs
    source: str  # where the audio comes from

    @property
    def query_default(self) -> str:
        return self.queries[0]


BENCHMARKS: tuple[Benchmark, ...] = (
    # The order of AudioSep's README table.
    Benchmark("vggsound", "VGGSound", "vggsound_eval.csv",
              ("file_id", "mix_wav", "s0_wav", "s0_text", "s1_wav", "s1_text"), ("s0_text",), PER_CLIP_MEAN, None,
              1000, "two VGGSound clips mixed; the query is the label of source s0 (VGGSound+, Yan's split)",
              "VGGSound (YouTube)"),
    Benchmark("music", "MUSIC", "music_eval.csv", ("idx", "caption", "src_wav", "noise_wav"), ("caption",),
              CLASS_MEAN_MEAN, "instrument", 5004, "solo instrument recordings mixed in pairs; the query is the "
              "instrument's name (10 instruments)", "MUSIC dataset (YouTube solos)"),
    Benchmark("esc50", "ESC-50", "esc50_eval.csv", ("idx", "caption", "src_wav", "noise_wav"), ("caption",),
              PER_CLIP_MEAN, None, 2000, "ESC-50 clips mixed in pairs; the query is the class name (50 classes)",
              "ESC-50 (Freesound)"),
    Benchmark("audioset", "AudioSet", "audioset_eval.csv", ("idx", "caption", "src_wav", "noise_wav"), ("label",),
              CLASS_MEDIAN_MEAN, "class", 5270, "AudioSet evaluation clips, the first 10 per class of 527; the "
              "query is the class label", "AudioSet (YouTube)"),
    Benchmark("audiocaps", "AudioCaps", "audiocaps_eval.csv", ("idx", "caption", "labels", "src_wav", "noise_wav"),
              ("caption", "labels"), PER_CLIP_MEAN, None, 4820, "AudioCaps test clips mixed in pairs; the query is "
              "the caption (or the AudioSet labels)", "AudioCaps (AudioSet, YouTube)"),
    Benchmark("clotho", "Clotho", "clotho_eval.csv", ("idx", "caption", "src_wav", "noise_wav1", "noise_wav1"),
              ("caption",), PER_CLIP_MEAN, None, 5225, "Clotho evaluation clips, each with two noise clips; the "
              "query is one of its captions", "Clotho v2 (Freesound)"),
)
BENCHMARK_NAMES: tuple[str, ...] = tuple(b.name for b in BENCHMARKS)


def get_benchmark(name: str) -> Benchmark:
    for benchmark in BENCHMARKS:
        if benchmark.name == name:
            return benchmark
    raise KeyError(name)


def _by_class(values: Sequence[float], groups: Sequence[str | None]) -> dict[str, list[float]]:
    by_class: dict[str, list[float]] = {}
    for value, group in zip(values, groups, strict=True):
        by_class.setdefault(str(group), []).append(float(value))
    return by_class


def benchmark_aggregate(benchmark: Benchmark, values: Sequence[float], groups: Sequence[str | None]) -> float | None:
    """The number AudioSep's `benchmark.py` prints for the scored clips' `values` (finite, in order), each
    clip's class in `groups`; None where it would print nan (no clips; MUSIC with a class without clips).

    AudioSet: the mean over classes of each class's median (classes without clips drop out, as
    np.nanmean drops their NaN medians); MUSIC: the mean over `MUSIC_CLASSES` of each class's mean;
    the others: the mean over clips.
    """
    if not values:
        return None
    if benchmark.aggregate == PER_CLIP_MEAN:
        return float(np.mean(np.asarray(values, dtype=np.float64)))
    by_class = _by_class(values, groups)
    if benchmark.aggregate == CLASS_MEDIAN_MEAN:
        return float(np.mean([np.median(v) for v in by_class.values()]))
    if any(name not in by_class for name in MUSIC_CLASSES):
        return None
    return float(np.mean([np.mean(by_class[name]) for name in MUSIC_CLASSES]))


def class_values(benchmark: Benchmark, values: Sequence[float], groups: Sequence[str | None]
                 ) -> dict[str, dict[str, float | int]]:
    """Per class: its clips and the median (AudioSet) or mean (MUSIC) that enters the aggregate;
    {} for the benchmarks aggregated over clips."""
    if benchmark.group_by is None:
        return {}
    pick = np.median if benchmark.aggregate == CLASS_MEDIAN_MEAN else np.mean
    return {name: {"clips": len(v), "value": float(pick(v))} for name, v in _by_class(values, groups).items()}
