"""System outputs: which ones an evaluation set calls for, what each must be, and how it is written.

Shared by `package` (estimates on disk) and `--check` (entries in the zip), so both apply the same
profile rules in the same words.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from dcase9.submission.profile import AudioRules, Profile
from dcase9.data.formats import open_dataset
from dcase9.errors import ConfigError, DataError

FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
PCM_BITS = {"PCM_16": 16, "PCM_24": 24, "PCM_32": 32}
WRITABLE_SUBTYPES = (*PCM_BITS, "FLOAT")


@dataclass(frozen=True)
class ExpectedOutput:
    """One mixture of an evaluation set, which must get exactly one output."""

    id: str  # mixture id: the file name without extension (`__2`... for a repeated file)
    file: str  # mixture file name as written in the CSV
    frames: int  # the output's length in samples: the mixture's, at the profile's rate


def expected_outputs(profile: Profile, data: Mapping[str, Path]) -> dict[str, list[ExpectedOutput]]:
    """Every mixture of each given evaluation set (subset name -> folder), with its length.

    Raises ConfigError for a subset the profile does not know and DataError for unusable data.
    """
    expected: dict[str, list[ExpectedOutput]] = {}
    for name, folder in data.items():
        subset = profile.subsets.get(name)
        if subset is None:
            raise ConfigError(f"evaluation data for an unknown subset {name!r}; the profile's subsets are "
                              + ", ".join(profile.subsets))
        dataset = open_dataset(folder, kind=subset.kind)
        outputs = []
        for mixture in dataset.mixtures:
            path = dataset.files_of(mixture)[0]
            try:
                info = sf.info(str(path))
            except (sf.LibsndfileError, RuntimeError, OSError) as exc:
                raise DataError(f"cannot read the mixture ({exc}); run `dcase9 validate {dataset.root}`",
                                file=path) from exc
            frames = info.frames if info.samplerate == profile.audio.sample_rate else \
                round(info.frames * profile.audio.sample_rate / info.samplerate)
            outputs.append(ExpectedOutput(mixture.id, mixture.file or f"{mixture.id}.wav", frames))
        expected[name] = outputs
    return expected


def output_names(profile: Profile, subset: str, label: str, prefix: str,
                 outputs: list[ExpectedOutput]) -> dict[str, ExpectedOutput]:
    """Package entry name -> mixture, for one system and subset; refuses a template that merges two."""
    template = profile.templates.outputs[subset]
    names: dict[str, ExpectedOutput] = {}
    for output in outputs:
        name = template.format(label=label, prefix=prefix, id=output.id, file=output.file)
        if name in names:
            raise ConfigError(f"the profile's output template {template.text!r} gives mixtures "
                              f"{names[name].id!r} and {output.id!r} the same name {name!r}")
        names[name] = output
    return names


def audio_problems(info: Any, rules: AudioRules, expected_frames: int | None, *,
                   check_encoding: bool) -> list[tuple[str, str]]:
    """(code, message) for each way an audio file's header (`soundfile.info`) breaks the audio rules.

    `check_encoding=False` leaves out file and sample format, for estimates that will be converted.
    """
    problems = []
    if check_encoding and info.format != rules.format:
        problems.append(("wrong-format", f"{info.format} file, expected {rules.format}"))
    elif check_encoding and info.subtype not in rules.accepted_subtypes:
        problems.append(("wrong-format", f"{info.subtype} samples, expected one of "
                         + ", ".join(rules.accepted_subtypes)))
    if info.samplerate != rules.sample_rate:
        problems.append(("wrong-sample-rate", f"{info.samplerate} Hz, expected {rules.sample_rate} Hz"))
    if info.channels != rules.channels:
        problems.append(("wrong-channels", f"{info.channels} channels, expected {rules.channels}"))
    if rules.same_length_as_mixture and expected_frames is not None and info.frames != expected_frames:
        problems.append(("wrong-length", f"{info.frames} samples, the mixture has {expected_frames}"))
    return problems


def has_non_finite(source: str | Path | io.BytesIO) -> bool:
    samples, _ = sf.read(source, dtype="float32", always_2d=True)
    return not bool(np.all(np.isfinite(samples)))


@dataclass
class ConvertedWav:
    data: bytes
    clipped: int  # samples beyond full scale, clipped to it
    peak: float
    non_finite: bool


def convert_wav(path: Path, subtype: str) -> ConvertedWav:
    """The estimate re-encoded as a WAV of `subtype`, byte-identical for identical input.

    PCM is quantised here (round to nearest, full scale 2^(bits-1), as readers divide by it) rather
    than by libsndfile, which scales by 2^(bits-1) - 1 on writing; samples beyond full scale are
    clipped and counted. Float WAVs lose libsndfile's PEAK chunk, which carries a time stamp.
    """
    if subtype not in WRITABLE_SUBTYPES:
        raise ConfigError(f"cannot write {subtype} WAVs; choose one of {', '.join(WRITABLE_SUBTYPES)}")
    samples, rate = sf.read(str(path), dtype="float64")
    finite = bool(np.all(np.isfinite(samples)))
    if not finite:
        return ConvertedWav(b"", 0, 0.0, non_finite=True)
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    buffer = io.BytesIO()
    if subtype in PCM_BITS:
        bits = PCM_BITS[subtype]
        full_scale = 2.0 ** (bits - 1)
        quantised = np.round(samples * full_scale)
        clipped = int(np.count_nonzero((quantised > full_scale - 1) | (quantised < -full_scale)))
        quantised = np.clip(quantised, -full_scale, full_scale - 1)
        # 24-bit: libsndfile keeps the top `bits` bits of int32 data
        pcm = quantised.astype(np.int16) if bits == 16 else (quantised.astype(np.int64) << (32 - bits)).astype(np.int32)
        sf.write(buffer, pcm, rate, subtype=subtype, format="WAV")
        return ConvertedWav(buffer.getvalue(), clipped, peak, non_finite=False)
    sf.write(buffer, samples.astype(np.float32), rate, subtype=subtype, format="WAV")
    return ConvertedWav(without_chunk(buffer.getvalue(), b"PEAK"), 0, peak, non_finite=False)


def without_chunk(wav: bytes, chunk_id: bytes) -> bytes:
    """A RIFF/WAVE file with every chunk `chunk_id` removed and the RIFF size corrected."""
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    kept = [b"WAVE"]
    at = 12
    while at + 8 <= len(wav):
        name, size = wav[at:at + 4], struct.unpack("<I", wav[at + 4:at + 8])[0]
        end = at + 8 + size + (size & 1)  # chunks are padded to an even size
        if name != chunk_id:
            kept.append(wav[at:end])
        at = end
    body = b"".join(kept)
    return b"RIFF" + struct.pack("<I", len(body)) + body
