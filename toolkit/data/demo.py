"""A small, deterministic demo data set in the official formats, synthesised by our own code.

Eight clearly different sound classes (dog barks, bird chirps, rain, a siren, an idling engine,
a bell, footsteps, a piano melody) are synthesised procedurally, each clip 10 s of 16 kHz mono
16-bit PCM like the official clips, with captions in the style of the validation set. Nothing is
downloaded; the same seed always gives the same files.

Layouts written by `make_demo`:
- `validation/`: `lass_validation/<Index>.wav`, `lass_validation.json`, `lass_synthetic_validation.csv`
  (header `source, noise, snr, caption` with spaces, quoted captions with commas: the official quirks);
- `eval-synth/`: `lass_evaluation_synth/<name>.wav` mixtures + `lass_synthetic_evaluation.csv` (file_name,query);
- `eval-real/`: `lass_evaluation_real/<name>.wav` + `lass_real_evaluation.csv` (file_name,query), two
  queries per recording as in the real set;
- `train/`: clips + `train.json` in the baseline's training format `{"data": [{"wav", "caption"}]}`;
- `evaluation/`: AudioSep's six LASS benchmarks in its layout (`metadata/<name>_eval.csv`,
  `metadata/class_labels_indices.csv`, `data/<name>/...`), a few 2 s clips each at 32 kHz: its published
  headers and file naming, with our synthetic sounds (`make_benchmarks`).

Every file is made in memory first. A file already there with the same bytes is left untouched
(so its modification time, which `infer` uses to tell whether an estimate is current, stays); a
file that differs (edited, or made with other options) is never replaced silently: the whole call
is refused, writing nothing, unless `force=True` (`demo-data --force`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from dcase9.audio import SAMPLE_RATE, mix_at_snr, resample_hq
from dcase9.data.benchmarks import (AUDIOSET_LABELS_CSV, BENCHMARK_SAMPLE_RATE, DATA_DIR, METADATA_DIR,
                                    MUSIC_CLASSES, get_benchmark)
from dcase9.errors import Dcase9Error
from dcase9.files import require_folder, write_bytes_atomic

SECONDS = 10.0
N = int(SECONDS * SAMPLE_RATE)
Rng = np.random.Generator


def _t(n: int = N) -> np.ndarray:
    return np.arange(n) / SAMPLE_RATE


def _normalise(x: np.ndarray, peak: float) -> np.ndarray:
    return (x / (np.max(np.abs(x)) + 1e-12) * peak).astype(np.float32)


def _lowpass_noise(rng: Rng, n: int, cutoff_hz: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    return np.fft.irfft(spectrum / (1 + (freqs / cutoff_hz) ** 4), n)


def _bandpass_noise(rng: Rng, n: int, low: float, high: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    return np.fft.irfft(spectrum * ((freqs > low) & (freqs < high)), n)


def _place(signal: np.ndarray, event: np.ndarray, start: int) -> None:
    end = min(len(signal), start + len(event))
    if start < end:
        signal[start:end] += event[: end - start]


def dog_bark(rng: Rng) -> np.ndarray:
    out = np.zeros(N)
    f0 = rng.uniform(350, 650)
    for _ in range(rng.integers(3, 6)):
        start = int(rng.uniform(0.2, SECONDS - 1.5) * SAMPLE_RATE)
        for k in range(rng.integers(1, 4)):
            dur = rng.uniform(0.12, 0.22)
            t = _t(int(dur * SAMPLE_RATE))
            pitch = f0 * (1.25 - 0.45 * t / dur)  # a bark drops in pitch
            phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
            tone = sum(np.sin(h * phase) / h ** 0.7 for h in range(1, 9))
            envelope = np.sin(np.pi * t / dur) ** 0.6
            rough = 1 + 0.35 * _lowpass_noise(rng, len(t), 300) / 3
            _place(out, tone * envelope * rough, start + int(k * 0.3 * SAMPLE_RATE))
    return _normalise(out, rng.uniform(0.5, 0.8))


def bird_chirps(rng: Rng) -> np.ndarray:
    out = np.zeros(N)
    for _ in range(rng.integers(8, 16)):
        start = int(rng.uniform(0, SECONDS - 0.6) * SAMPLE_RATE)
        base, span = rng.uniform(2500, 4500), rng.uniform(800, 2000) * rng.choice([-1, 1])
        for k in range(rng.integers(2, 6)):
            dur = rng.uniform(0.04, 0.09)
            t = _t(int(dur * SAMPLE_RATE))
            freq = base + span * t / dur
            chirp = np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE) * np.hanning(len(t))
            _place(out, chirp, start + int(k * 0.11 * SAMPLE_RATE))
    return _normalise(out, rng.uniform(0.4, 0.7))


def rain(rng: Rng) -> np.ndarray:
    bed = _bandpass_noise(rng, N, 400, 7000) * (0.8 + 0.2 * np.sin(2 * np.pi * 0.1 * _t()))
    drops = np.zeros(N)
    for start in rng.integers(0, N - 200, size=int(rng.uniform(150, 300))):
        drops[start:start + 120] += rng.uniform(0.5, 2.0) * np.exp(-np.arange(120) / 18) * rng.standard_normal(120)
    return _normalise(bed / np.std(bed) + 1.5 * drops, rng.uniform(0.3, 0.5))


def siren(rng: Rng) -> np.ndarray:
    t = _t()
    period = rng.uniform(1.2, 3.0)
    freq = 950 + rng.uniform(250, 450) * np.sin(2 * np.pi * t / period)
    phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE
    tone = np.sin(phase) + 0.35 * np.sin(2 * phase) + 0.15 * np.sin(3 * phase)
    return _normalise(tone * np.minimum(1, t / 0.5), rng.uniform(0.4, 0.7))


def engine_idle(rng: Rng) -> np.ndarray:
    t = _t()
    rpm_hz = rng.uniform(25, 45) * (1 + 0.03 * np.sin(2 * np.pi * 0.3 * t))
    phase = 2 * np.pi * np.cumsum(rpm_hz) / SAMPLE_RATE
    hum = sum(np.sin(h * phase + h) / h for h in range(1, 14))
    rumble = _lowpass_noise(rng, N, 250)
    return _normalise(hum * (1 + 0.3 * np.sin(phase / 2)) + 2 * rumble / np.std(rumble), rng.uniform(0.5, 0.8))


def bell(rng: Rng) -> np.ndarray:
    out = np.zeros(N)
    fundamental = rng.uniform(300, 700)
    ratios = (0.5, 1.0, 1.19, 1.5, 2.0, 2.51, 2.66, 3.01)
    strikes = np.arange(rng.uniform(0, 0.5), SECONDS - 0.5, rng.uniform(1.5, 3.0))
    t = _t(int(3 * SAMPLE_RATE))
    strike = sum(np.sin(2 * np.pi * fundamental * r * t) * np.exp(-t * (0.8 + 1.2 * r)) / (1 + 0.3 * k)
                 for k, r in enumerate(ratios))
    for start in strikes:
        _place(out, strike, int(start * SAMPLE_RATE))
    return _normalise(out, rng.uniform(0.5, 0.8))


def footsteps(rng: Rng) -> np.ndarray:
    out = np.zeros(N)
    step = rng.uniform(0.45, 0.65)
    for k, start in enumerate(np.arange(rng.uniform(0, 0.5), SECONDS - 0.3, step)):
        n = int(0.12 * SAMPLE_RATE)
        thump = _bandpass_noise(rng, n, 60, 1800) * np.exp(-np.arange(n) / (0.025 * SAMPLE_RATE))
        scuff = _bandpass_noise(rng, n, 2000, 6000) * np.exp(-np.arange(n) / (0.01 * SAMPLE_RATE)) * 0.3
        _place(out, (thump + scuff) * (1.0 if k % 2 else 0.8), int((start + rng.normal(0, 0.01)) * SAMPLE_RATE))
    return _normalise(out, rng.uniform(0.5, 0.8))


def piano_melody(rng: Rng) -> np.ndarray:
    out = np.zeros(N)
    scale = 261.63 * 2 ** (np.array([0, 2, 4, 5, 7, 9, 11, 12]) / 12)
    beat = rng.uniform(0.3, 0.5)
    for start in np.arange(0.1, SECONDS - 1.0, beat):
        freq = rng.choice(scale) * rng.choice([1, 2])
        t = _t(int(1.2 * SAMPLE_RATE))
        note = sum(np.sin(2 * np.pi * freq * h * t) * np.exp(-t * (2.5 + h)) / h for h in range(1, 7))
        _place(out, note * np.minimum(1, t / 0.005), int(start * SAMPLE_RATE))
    return _normalise(out, rng.uniform(0.5, 0.8))


@dataclass(frozen=True)
class SoundClass:
    name: str
    synth: Callable[[Rng], np.ndarray]
    tags: tuple[str, ...]
    captions: tuple[str, ...]  # at least three; a clip gets three of them


SOUND_CLASSES: tuple[SoundClass, ...] = (
    SoundClass("dog", dog_bark, ("dog", "bark", "animal"), (
        "A dog is barking loudly.", "A dog barks several times in a row.",
        "Someone's dog barks, growls, and barks again.", "The dog keeps barking at something nearby.")),
    SoundClass("birds", bird_chirps, ("bird", "chirp, tweet", "animal"), (
        "Birds are chirping in the trees.", "Small birds tweet and chirp continuously.",
        "A bird sings a series of high, fast chirps.", "Birds chirp, call and tweet outside.")),
    SoundClass("rain", rain, ("rain", "raindrop", "water"), (
        "Rain is falling steadily on the ground.", "Heavy rain pours down, with raindrops splashing.",
        "The rain keeps falling, pattering on a surface.", "It is raining, and drops hit the roof.")),
    SoundClass("siren", siren, ("siren", "alarm", "vehicle"), (
        "A siren wails, rising and falling in pitch.", "An emergency siren is sounding continuously.",
        "The alarm of a police car howls up and down.", "A loud siren sweeps up and down repeatedly.")),
    SoundClass("engine", engine_idle, ("engine", "idling", "motor vehicle"), (
        "A car engine is idling with a low rumble.", "An engine hums and rumbles at low speed.",
        "A motor runs steadily, producing a deep, throbbing noise.", "The vehicle's engine idles roughly.")),
    SoundClass("bell", bell, ("bell", "church bell", "chime"), (
        "A bell is ringing at regular intervals.", "A church bell rings and its tone slowly fades.",
        "Someone strikes a large bell again and again.", "A metal bell chimes, ringing out clearly.")),
    SoundClass("footsteps", footsteps, ("walk, footsteps", "human"), (
        "Someone is walking with steady footsteps.", "Footsteps thud on the floor at an even pace.",
        "A person walks across a hard floor.", "A person's footsteps, step after step, on the ground.")),
    SoundClass("piano", piano_melody, ("piano", "music", "musical instrument"), (
        "Someone plays a simple melody on the piano.", "A piano plays a slow tune, note by note.",
        "Piano notes ring out, forming a gentle melody.", "A musician plays the piano, one note at a time.")),
)


class DemoFiles:
    """The files of a demo layout, in memory until `commit` writes the new and changed ones."""

    def __init__(self) -> None:
        self.contents: dict[Path, bytes] = {}

    def wav(self, path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
        """16-bit PCM like the official clips."""
        buffer = io.BytesIO()
        sf.write(buffer, np.asarray(samples, dtype=np.float32), sample_rate, subtype="PCM_16", format="WAV")
        self.contents[path] = buffer.getvalue()

    def text(self, path: Path, text: str) -> None:
        self.contents[path] = text.encode("utf-8")

    def commit(self, force: bool = False) -> None:
        """Write what is missing or different; refuse (writing nothing) to replace a differing file
        unless `force`."""
        changed = [path for path, data in self.contents.items() if _differs(path, data)]
        existing = [path for path in changed if path.exists() or path.is_symlink()]
        if existing and not force:
            shown = ", ".join(str(p) for p in existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
            raise Dcase9Error(f"{len(existing)} file(s) already there differ from what would be written (edited, or "
                              f"made with other options): {shown}. Refusing to replace them: choose another "
                              "folder, or pass --force to overwrite them")
        for path in changed:
            write_bytes_atomic(path, self.contents[path])


def _differs(path: Path, data: bytes) -> bool:
    try:
        return path.is_symlink() or path.stat().st_size != len(data) or path.read_bytes() != data
    except OSError:
        return True


def caption_pool() -> list[str]:
    """Every caption the demo sets can use, as written and lower-cased (the eval-real queries)."""
    captions = [caption for sound in SOUND_CLASSES for caption in sound.captions]
    return captions + [caption.lower() for caption in captions]


def _clip_name(class_index: int, k: int, seed: int) -> str:
    # Same shape as the official Index values ("692211_12333864-hq"), clearly marked as ours.
    return f"9{class_index:02d}{k:03d}_{seed:04d}{class_index * 97 + k:04d}-demo"


def synthesise_clips(clips_per_class: int, seed: int) -> list[tuple[str, SoundClass, np.ndarray]]:
    clips = []
    for c, sound in enumerate(SOUND_CLASSES):
        for k in range(clips_per_class):
            rng = np.random.default_rng([seed, c, k])
            clips.append((_clip_name(c, k, seed), sound, sound.synth(rng)))
    return clips


def _csv_text(header: str, rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    buffer.write(header + "\n")
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _mixture_rows(clips: list[tuple[str, SoundClass, np.ndarray]], rng: Rng, per_clip: int
                  ) -> list[tuple[int, int, int, str]]:
    """(target, noise, snr, caption) with the noise from another class, as the official sets do."""
    rows = []
    for i, (_, sound, _) in enumerate(clips):
        captions = rng.permutation(len(sound.captions))[:per_clip]
        for caption_index in captions:
            noise = int(rng.choice([j for j, other in enumerate(clips) if other[1].name != sound.name]))
            rows.append((i, noise, int(rng.integers(-15, 16)), sound.captions[caption_index]))
    return rows


def _make(build: Callable[..., Path], out: Path, *args: Any, force: bool) -> Path:
    files = DemoFiles()
    build(files, out, *args)
    files.commit(force)
    return out


def make_validation(out: Path, clips_per_class: int = 3, seed: int = 0, *, force: bool = False) -> Path:
    return _make(_validation, out, clips_per_class, seed, force=force)


def _validation(files: DemoFiles, out: Path, clips_per_class: int, seed: int) -> Path:
    clips = synthesise_clips(clips_per_class, seed)
    rng = np.random.default_rng([seed, 1000])
    for name, _, audio in clips:
        files.wav(out / "lass_validation" / f"{name}.wav", audio)
    entries = []
    for name, sound, _ in clips:
        chosen = rng.permutation(len(sound.captions))[:3]
        entries.append({"Index": name, "Tags": list(sound.tags), "Captions": [sound.captions[i] for i in chosen]})
    files.text(out / "lass_validation.json", json.dumps(entries, indent=4) + "\n")
    rows = _mixture_rows(clips, rng, per_clip=3)
    files.text(out / "lass_synthetic_validation.csv", _csv_text(
        "source, noise, snr, caption", [[clips[s][0], clips[n][0], str(snr), cap] for s, n, snr, cap in rows]))
    return out


def make_scaled_validation(out: Path, mixtures: int = 3000, clips: int = 1000, *, synthesised_per_class: int = 2,
                           seed: int = 0, force: bool = False) -> Path:
    """A validation set at the official one's scale (3000 mixtures of 1000 clips, by default) made
    quickly: `synthesised_per_class` clips per class are synthesised and written under `clips`
    distinct names (copies), so that reading, mixing and writing cost what they cost on the real
    set. Each clip is the target of about mixtures / clips rows, against noise from another class
    at a random SNR in -15..15 dB, with the captions of its class. For throughput checks: the audio
    repeats."""
    return _make(_scaled_validation, out, mixtures, clips, synthesised_per_class, seed, force=force)


def _scaled_validation(files: DemoFiles, out: Path, mixtures: int, clips: int, synthesised_per_class: int,
                       seed: int) -> Path:
    clips = max(clips, len(SOUND_CLASSES))
    base = synthesise_clips(synthesised_per_class, seed)
    folder = out / "lass_validation"
    names: list[str] = []
    classes: list[SoundClass] = []
    for k in range(clips):
        source_name, sound, audio = base[k % len(base)]
        name = f"{source_name}-{k:05d}"
        if k < len(base):
            files.wav(folder / f"{name}.wav", audio)
        else:  # the bytes of the file made for this audio
            files.contents[folder / f"{name}.wav"] = files.contents[folder / f"{names[k % len(base)]}.wav"]
        names.append(name)
        classes.append(sound)
    files.text(out / "lass_validation.json", json.dumps(
        [{"Index": n, "Tags": list(c.tags), "Captions": list(c.captions[:3])} for n, c in zip(names, classes, strict=True)],
        indent=1) + "\n")
    rng = np.random.default_rng([seed, 4000])
    rows: list[list[str]] = []
    seen: set[tuple[int, int, int, str]] = set()
    while len(rows) < mixtures:
        target = len(rows) % clips
        sound = classes[target]
        noise = int(rng.integers(clips))
        snr = int(rng.integers(-15, 16))
        caption = sound.captions[int(rng.integers(min(3, len(sound.captions))))]
        if classes[noise].name == sound.name or (target, noise, snr, caption) in seen:
            continue
        seen.add((target, noise, snr, caption))
        rows.append([names[target], names[noise], str(snr), caption])
    files.text(out / "lass_synthetic_validation.csv", _csv_text("source, noise, snr, caption", rows))
    return out


def _read_back(clip: np.ndarray) -> np.ndarray:
    """The clip as a 16-bit PCM file stores it (so mixtures match what a reader would build)."""
    return (np.round(np.clip(clip, -1, 32767 / 32768) * 32768) / 32768).astype(np.float32)


def _eval_synth(files: DemoFiles, out: Path, clips_per_class: int, seed: int) -> Path:
    clips = synthesise_clips(clips_per_class, seed)
    rng = np.random.default_rng([seed, 2000])
    rows = _mixture_rows(clips, rng, per_clip=2)
    records = []
    for k, (s, n, snr, caption) in enumerate(rows):
        mixture, _ = mix_at_snr(_read_back(clips[s][2]), _read_back(clips[n][2]), snr)
        name = f"demo-synth-case-{k}.wav"
        files.wav(out / "lass_evaluation_synth" / name, mixture)
        records.append([name, caption])
    files.text(out / "lass_synthetic_evaluation.csv", _csv_text("file_name,query", records))
    return out


def _eval_real(files: DemoFiles, out: Path, recordings: int, seed: int) -> Path:
    """Recordings of two overlapping classes, each queried for both (two rows per recording)."""
    rng = np.random.default_rng([seed, 3000])
    records = []
    for k in range(recordings):
        first, second = rng.choice(len(SOUND_CLASSES), size=2, replace=False)
        a = SOUND_CLASSES[first].synth(np.random.default_rng([seed, k, 0]))
        b = SOUND_CLASSES[second].synth(np.random.default_rng([seed, k, 1]))
        recording = _normalise(a + rng.uniform(0.5, 1.0) * b, 0.8)
        for j, sound in enumerate((SOUND_CLASSES[first], SOUND_CLASSES[second])):
            name = f"demo-real-case-{2 * k + j}.wav"
            files.wav(out / "lass_evaluation_real" / name, recording)
            records.append([name, sound.captions[int(rng.integers(len(sound.captions)))].lower()])
    files.text(out / "lass_real_evaluation.csv", _csv_text("file_name,query", records))
    return out


def make_train(out: Path, clips_per_class: int = 12, seed: int = 100, *, force: bool = False) -> Path:
    """Training clips (disjoint seeds from the evaluation sets) in the baseline's JSON format."""
    return _make(_train, out, clips_per_class, seed, force=force)


def _train(files: DemoFiles, out: Path, clips_per_class: int, seed: int) -> Path:
    clips = synthesise_clips(clips_per_class, seed)
    data = []
    for k, (name, sound, audio) in enumerate(clips):
        path = out / "audio" / f"{name}.wav"
        files.wav(path, audio)
        data.append({"wav": str(Path("audio") / f"{name}.wav"), "caption": sound.captions[k % len(sound.captions)]})
    files.text(out / "train.json", json.dumps({"data": data}, indent=1) + "\n")
    return out


# -- AudioSep's benchmarks ---------------------------------------------------------------------

BENCHMARK_DEMO_SECONDS = 2.0
# Per demo class: an AudioSet-style label (AudioSet, AudioCaps' labels) and an ESC-50 / VGGSound-style name.
_CLASS_LABELS = {"dog": ("Dog", "dog", "dog barking"), "birds": ("Bird", "chirping birds", "birds chirping tweeting"),
                 "rain": ("Rain", "rain", "raining"), "siren": ("Siren", "siren", "ambulance siren"),
                 "engine": ("Engine", "engine", "engine idling"), "bell": ("Bell", "church bells", "church bell ringing"),
                 "footsteps": ("Walk, footsteps", "footsteps", "people marching"),
                 "piano": ("Piano", "piano", "playing piano")}


def _instrument(rng: Rng, index: int) -> np.ndarray:
    """A melody with a timbre of its own per MUSIC class (harmonic weights, vibrato, attack)."""
    out = np.zeros(N)
    brightness, vibrato, attack = 0.4 + 0.15 * index, 0.004 * (index % 3), 0.005 + 0.02 * (index % 4)
    base = 110 * 2 ** (index / 4)
    beat = rng.uniform(0.35, 0.6)
    for start in np.arange(0.05, SECONDS - 1.0, beat):
        freq = base * 2 ** (rng.choice([0, 2, 4, 5, 7, 9]) / 12)
        t = _t(int(beat * 1.1 * SAMPLE_RATE))
        phase = 2 * np.pi * freq * (t + vibrato * np.sin(2 * np.pi * 5.5 * t) / (2 * np.pi * 5.5) * 2 * np.pi)
        note = sum(np.sin(h * phase) * brightness ** (h - 1) for h in range(1, 10) if h * freq < 7500)
        _place(out, note * np.minimum(1, t / attack) * np.exp(-t * 1.5), int(start * SAMPLE_RATE))
    return _normalise(out, rng.uniform(0.5, 0.8))


def _benchmark_clip(audio: np.ndarray) -> np.ndarray:
    """The loudest BENCHMARK_DEMO_SECONDS of a 16 kHz clip, at 32 kHz (soxr HQ), as a 16-bit file holds it."""
    length = int(BENCHMARK_DEMO_SECONDS * SAMPLE_RATE)
    cumulative = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    energy = cumulative[length:] - cumulative[:-length]  # of each window of `length` samples
    start = int(np.argmax(energy[::800])) * 800
    return _read_back(resample_hq(np.ascontiguousarray(audio[start:start + length], dtype=np.float32), SAMPLE_RATE,
                                  BENCHMARK_SAMPLE_RATE))


def _benchmark_pair(rng: Rng, target: np.ndarray, *noises: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mixture, reference) of a target against the sum of `noises` at a random SNR in -5..5 dB."""
    noise = np.sum(noises, axis=0).astype(np.float32)
    mixture, reference = mix_at_snr(target, noise, int(rng.integers(-5, 6)))
    return _read_back(mixture), _read_back(reference)


def make_benchmarks(out: Path, seed: int = 5, *, force: bool = False) -> Path:
    """AudioSep's six benchmarks in its layout under `out` (`out/metadata`, `out/data/<name>`): 4 VGGSound
    rows, 12 MUSIC rows (every instrument, its aggregate needs all ten, and two of them twice), 4 ESC-50 rows,
    6 AudioSet clips (3, 2 and 1 of 3 classes of the demo's 8 labels), 4 AudioCaps rows, 4 Clotho rows; 2 s
    at 32 kHz. Classes of unequal sizes tell the aggregates apart (a median from a mean, a mean over
    classes from a mean over clips)."""
    return _make(_benchmarks, out, seed, force=force)


def _benchmarks(files: DemoFiles, out: Path, seed: int) -> Path:
    metadata, data = out / METADATA_DIR, out / DATA_DIR
    rng = np.random.default_rng([seed, 5000])
    draws = iter(range(10_000))

    def clip(class_index: int) -> np.ndarray:
        sound = SOUND_CLASSES[class_index]
        return _benchmark_clip(sound.synth(np.random.default_rng([seed, class_index, next(draws)])))

    def pair_of_classes() -> tuple[int, int]:
        first, second = rng.choice(len(SOUND_CLASSES), size=2, replace=False)
        return int(first), int(second)

    def wav(path: Path, samples: np.ndarray) -> None:
        files.wav(path, samples, BENCHMARK_SAMPLE_RATE)

    # VGGSound: data/{mix,s0,s1}_wav/<file_id>.wav; s0 is the target, queried by its label
    rows = []
    for k in range(4):
        first, second = pair_of_classes()
        source, noise = clip(first), clip(second)
        mixture, reference = _benchmark_pair(rng, source, noise)
        file_id = f"demo{first}{k:02d}xyz_{10 * k:06d}+++demo{second}{k:02d}abc_{20 * k:06d}"
        paths = [f"data/{part}/{file_id}.wav" for part in ("mix_wav", "s0_wav", "s1_wav")]
        for path, audio in zip(paths, (mixture, reference, _read_back(mixture - reference)), strict=True):
            wav(data / "vggsound" / path, audio)
        rows.append([file_id, paths[0], paths[1], _CLASS_LABELS[SOUND_CLASSES[first].name][2], paths[2],
                     _CLASS_LABELS[SOUND_CLASSES[second].name][2]])
    files.text(metadata / get_benchmark("vggsound").csv_name, _csv_text(",".join(get_benchmark("vggsound").header), rows))

    def indexed(name: str, count: int, row_of: Callable[[int], tuple[list[str], np.ndarray, np.ndarray]]) -> None:
        """mixture-{idx}.wav and segment-{idx}.wav, as AudioSep names them, and the CSV rows."""
        benchmark = get_benchmark(name)
        records = []
        for idx in range(count):
            cells, mixture, reference = row_of(idx)
            wav(data / name / f"mixture-{idx}.wav", mixture)
            wav(data / name / f"segment-{idx}.wav", reference)
            records.append([str(idx), *cells])
        files.text(metadata / benchmark.csv_name, _csv_text(",".join(benchmark.header), records))

    instruments = [*range(len(MUSIC_CLASSES)), 1, 2]  # violin and accordion twice

    def music_row(idx: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        instrument = instruments[idx]
        other = (instrument + 1 + int(rng.integers(len(MUSIC_CLASSES) - 1))) % len(MUSIC_CLASSES)
        source = _benchmark_clip(_instrument(np.random.default_rng([seed, 6000, idx]), instrument))
        noise = _benchmark_clip(_instrument(np.random.default_rng([seed, 6001, idx]), other))
        return ([MUSIC_CLASSES[instrument], f"Ydemo{instrument:02d}_{idx}.wav", f"Ydemo{other:02d}_1.wav"],
                *_benchmark_pair(rng, source, noise))

    def esc50_row(idx: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        first, second = pair_of_classes()
        return ([_CLASS_LABELS[SOUND_CLASSES[first].name][1], f"1-{100 + idx}-A-{first}.wav",
                 f"2-{200 + idx}-A-{second}.wav"], *_benchmark_pair(rng, clip(first), clip(second)))

    def audiocaps_row(idx: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        first, second = pair_of_classes()
        sound = SOUND_CLASSES[first]
        return ([sound.captions[idx % len(sound.captions)], _CLASS_LABELS[sound.name][0],
                 f"Ydemo{first}{idx:02d}cap.wav", f"Ydemo{second}{idx:02d}noi.wav"],
                *_benchmark_pair(rng, clip(first), clip(second)))

    def clotho_row(idx: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        first, second = pair_of_classes()
        third = int(rng.choice([c for c in range(len(SOUND_CLASSES)) if c not in (first, second)]))
        sound = SOUND_CLASSES[first]
        return ([sound.captions[idx % len(sound.captions)], f"demo {sound.name} {idx}.wav",
                 f"demo {SOUND_CLASSES[second].name}.wav", f"demo {SOUND_CLASSES[third].name}.wav"],
                *_benchmark_pair(rng, clip(first), clip(second), clip(third)))

    indexed("music", len(instruments), music_row)
    indexed("esc50", 4, esc50_row)
    indexed("audiocaps", 4, audiocaps_row)
    indexed("clotho", 4, clotho_row)

    # AudioSet: class_id=N/<name>,{mixture,source}.wav, queried by the labels of class_labels_indices.csv
    files.text(metadata / AUDIOSET_LABELS_CSV, _csv_text("index,mid,display_name", [
        [str(i), f"/m/demo{i:02d}", _CLASS_LABELS[sound.name][0]] for i, sound in enumerate(SOUND_CLASSES)]))
    records = []
    for class_id, clips in enumerate((3, 2, 1)):
        for k in range(clips):
            other = (class_id + 1 + int(rng.integers(len(SOUND_CLASSES) - 1))) % len(SOUND_CLASSES)
            mixture, reference = _benchmark_pair(rng, clip(class_id), clip(other))
            folder = f"class_id={class_id}"
            name = f"class_id={class_id},index={k:03d}"
            wav(data / "audioset" / folder / f"{name},mixture.wav", mixture)
            wav(data / "audioset" / folder / f"{name},source.wav", reference)
            records.append([str(class_id), _CLASS_LABELS[SOUND_CLASSES[class_id].name][0],
                            f"evaluation/data/audioset/{folder}/{name},source.wav",
                            f"evaluation/data/audioset/{folder}/{name},mixture.wav"])
    files.text(metadata / get_benchmark("audioset").csv_name, _csv_text(",".join(get_benchmark("audioset").header),
                                                                        records))
    return out


def make_demo(out: str | Path, *, clips_per_class: int = 3, train_clips_per_class: int = 12,
              seed: int = 0, force: bool = False) -> dict[str, Path]:
    """Write all five demo layouts under `out` (nothing at all if a differing file would be replaced
    and not `force`); returns their folders."""
    out = Path(out)
    require_folder(out, "the demo data")
    files = DemoFiles()
    folders = {
        "validation": _validation(files, out / "validation", clips_per_class, seed),
        "eval-synth": _eval_synth(files, out / "eval-synth", max(1, clips_per_class - 1), seed + 1),
        "eval-real": _eval_real(files, out / "eval-real", len(SOUND_CLASSES) // 2 + 2, seed + 2),
        "train": _train(files, out / "train", train_clips_per_class, seed + 100),
        "benchmarks": _benchmarks(files, out / "evaluation", seed + 5),
    }
    files.commit(force)
    return folders
