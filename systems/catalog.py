"""Every system the toolkit knows, as data. Add a system by adding a SystemSpec to `SYSTEMS` here
(docs/extending.md); code outside the project adds one at run time with `register_system`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dcase9.systems.base import Published, PublishedBenchmark, SystemSpec
from dcase9.errors import ConfigError
from dcase9.models.resunet import RESUNET30_CONFIGS, ResUNet30Config
from dcase9.weights import CLAP_WEIGHT, TOKENIZER_WEIGHT

# AudioLDM's VAE and vocoder (System 3), and its segment: 1024 frames of 160 samples, so a 10 s clip runs whole
_AUDIOLDM = ("audioldm-vae", "audioldm-vocoder")
_AUDIOLDM_SEGMENT = 10.24


def _irm_ldm_needs(spec: SystemSpec, options: Mapping[str, Any]) -> tuple[str, ...]:
    """System 3 with `mask: ones` runs the latent path alone: AudioLDM's VAE and vocoder, no checkpoint, no tokenizer."""
    return _AUDIOLDM if options.get("mask") == "ones" else spec.weights


def _model(config: ResUNet30Config) -> tuple[int, dict[str, int]]:
    """(model sample rate, STFT settings) of a ResUNet30 variant (their one home: `RESUNET30_CONFIGS`)."""
    return config.sample_rate, {"n_fft": config.n_fft, "hop_length": config.hop_length}


_BASELINE_MODEL = _model(RESUNET30_CONFIGS["dcase2024-baseline-16k"])  # the DCASE baseline
_AUDIOSEP_MODEL = _model(RESUNET30_CONFIGS["audiosep-32k"])  # AudioSep
# Row labels of seed 000's Table 5 (model, training data; then training approach, caption augmentation)
_T5_BASELINE_DEV = ("Baseline", "Baseline Dev Set (FSD50K + Clotho v2)")
_T5_BASELINE_WAVCAPS = ("Baseline", "Baseline Dev Set + WavCaps")
_T5_AUDIOSEP_WAVCAPS = ("AudioSep", "Baseline Dev Set + WavCaps")


# AudioSep's README, "Benchmark Evaluation": `python benchmark.py --checkpoint_path audiosep_base_4M_steps.ckpt`
_AUDIOSEP_README = "AudioSep README, audiosep_base_4M_steps.ckpt"
_AUDIOSEP_BENCHMARKS = tuple(PublishedBenchmark(name, sdri, sisdr, _AUDIOSEP_README) for name, sdri, sisdr in (
    ("vggsound", 9.144, 9.043), ("music", 10.508, 9.425), ("esc50", 10.040, 8.810), ("audioset", 7.739, 6.903),
    ("audiocaps", 8.220, 7.189), ("clotho", 6.850, 5.242)))


def _text_queried(name: str, title: str, summary: str, checkpoint: str, model: tuple[int, dict[str, int]],
                  published: tuple[Published, ...], aliases: tuple[str, ...] = (),
                  benchmarks: tuple[PublishedBenchmark, ...] = ()) -> SystemSpec:
    """A CLAP-queried ResUNet30 system: everything but the checkpoint and the model variant is shared."""
    sample_rate, stft = model
    return SystemSpec(name=name, title=title, summary=summary, aliases=aliases, sample_rate=sample_rate,
                      factory="dcase9.systems.text_queried:build", segment_seconds=10.0,
                      weights=(checkpoint, TOKENIZER_WEIGHT), optional_weights=(CLAP_WEIGHT,), options=dict(stft),
                      published=published, published_benchmarks=benchmarks)


SYSTEMS: tuple[SystemSpec, ...] = (
    _text_queried(
        "baseline", "DCASE 2024 Task 9 baseline",
        "ResUNet30 at 16 kHz (STFT 1024/160) conditioned on a CLAP text embedding; the official "
        "checkpoint (Zenodo 10887460).",
        "baseline-checkpoint", _BASELINE_MODEL,
        (Published(5.708, 5.673, 3.862, 0.229, "baseline README; seed 003 Table 2", "003", ("baseline",)),
         Published(5.817, 5.782, 3.837, None, "seed 000 Table 5: retrained, no augmentation", "000",
                   _T5_BASELINE_DEV + ("Full", "N/A")),
         Published(7.500, 7.465, 5.795, None, "seed 000 Table 5: retrained on dev set + WavCaps, no augmentation",
                   "000", _T5_BASELINE_WAVCAPS + ("Full", "N/A")))),
    _text_queried(
        "1", "System 1: baseline trained on GPT-4 augmented captions",
        "The baseline architecture trained with 5 GPT-4 captions per FSD50K clip (seed 003). No public "
        "weights: train it, then pass --checkpoint.",
        "system1-checkpoint", _BASELINE_MODEL,
        (Published(5.937, 5.902, 4.191, 0.231, "seed 003 Table 2", "003", ("System 1",)),),
        aliases=("system1", "gpt-augmented")),
    _text_queried(
        "2", "System 2: AudioSep-32K",
        "Pretrained AudioSep (ResUNet30 at 32 kHz, STFT 2048/320) on 16 kHz data resampled "
        "16 -> 32 -> 16 kHz (seed 003).",
        "audiosep-checkpoint", _AUDIOSEP_MODEL,
        (Published(8.192, 8.157, 6.680, 0.249, "seed 003 Table 2", "003", ("System 2",)),
         Published(8.195, 8.160, 6.708, None, "seed 000 Table 5: AudioSep pretrained", "000",
                   ("AudioSep", "-", "Pretrained", "-"))),
        aliases=("system2", "audiosep32k", "audiosep-32k"), benchmarks=_AUDIOSEP_BENCHMARKS),
    SystemSpec(
        name="3",
        aliases=("system3", "irm-ldm", "irmldm"),
        title="System 3: IRM-LDM, a ratio mask in AudioLDM's VAE latent space",
        summary="VAE-encode the mixture's mel, mask the latent with a CLAP-conditioned ResUNet, VAE-decode and "
                "vocode (seed 003). No public weights: train it, then pass --checkpoint. Option mask: ones runs "
                "the latent path without a mask.",
        sample_rate=16000,
        factory="dcase9.systems.irm_ldm:build",
        segment_seconds=_AUDIOLDM_SEGMENT,
        weights=("system3-checkpoint", *_AUDIOLDM, TOKENIZER_WEIGHT),
        optional_weights=(CLAP_WEIGHT,),
        needs=_irm_ldm_needs,
        published=(Published(-4.757, -4.792, -42.346, 0.193, "seed 003 Table 2", "003", ("System 3",)),),
    ),
    SystemSpec(
        name="3-roundtrip",
        aliases=("system3-roundtrip", "irm-ldm-roundtrip"),
        title="System 3 diagnostic: the reference through AudioLDM's VAE + vocoder",
        summary="Encodes and decodes the reference without a mask (validation only): the ceiling of any system "
                "that separates in AudioLDM's latent space.",
        sample_rate=16000,
        factory="dcase9.systems.irm_ldm:build_roundtrip",
        needs_reference=True,
        segment_seconds=_AUDIOLDM_SEGMENT,
        weights=_AUDIOLDM,
    ),
    _text_queried(
        "4", "System 4: baseline trained on DDP captions selected by BERTScore >= 0.7",
        "The baseline architecture trained with dataset-dependent-prompt LLM captions kept at "
        "BERTScore >= 0.7 (seed 000). No public weights: train it, then pass --checkpoint.",
        "system4-checkpoint", _BASELINE_MODEL,
        (Published(6.716, 6.681, 4.729, None, "seed 000 Table 5: dev set + DDP", "000",
                   _T5_BASELINE_DEV + ("Full", "DDP")),
         Published(7.818, 7.783, 6.321, None, "seed 000 Table 5: dev set + WavCaps + DDP", "000",
                   _T5_BASELINE_WAVCAPS + ("Full", "DDP")),
         Published(6.547, 6.512, 4.636, None, "seed 000 Table 5: dev set + DIP (augment -p dip)", "000",
                   _T5_BASELINE_DEV + ("Full", "DIP")),
         Published(7.750, 7.715, 6.161, None, "seed 000 Table 5: dev set + WavCaps + DIP (augment -p dip)", "000",
                   _T5_BASELINE_WAVCAPS + ("Full", "DIP"))),
        aliases=("system4", "ddp-bert")),
    _text_queried(
        "4-audiosep", "System 4 (AudioSep variant): AudioSep fine-tuned on DDP captions, BERTScore >= 0.7",
        "AudioSep (32 kHz) fine-tuned with DDP captions (seed 000 Table 5). Train it from the AudioSep "
        "checkpoint, then pass --checkpoint.",
        "system4-audiosep-checkpoint", _AUDIOSEP_MODEL,
        (Published(8.489, 8.454, 7.198, None, "seed 000 Table 5: fine-tuned + DDP", "000",
                   _T5_AUDIOSEP_WAVCAPS + ("Fine-tuning", "DDP")),
         Published(8.459, 8.424, 7.072, None, "seed 000 Table 5: fine-tuned + DIP (augment -p dip)", "000",
                   _T5_AUDIOSEP_WAVCAPS + ("Fine-tuning", "DIP")),
         Published(8.370, 8.335, 7.109, None, "seed 000 Table 5: fine-tuned, no augmentation", "000",
                   _T5_AUDIOSEP_WAVCAPS + ("Fine-tuning", "N/A"))),
        aliases=("system4-audiosep",)),
    SystemSpec(
        name="mixture",
        title="Mixture (identity)",
        summary="Returns the mixture unchanged: SDRi is 0 dB by definition. A pipeline check.",
        sample_rate=16000,
        factory="dcase9.systems.reference_based:build_mixture",
    ),
    SystemSpec(
        name="oracle",
        title="Oracle ideal ratio mask",
        summary="Ideal ratio mask from the reference (validation only): an upper bound for masking systems.",
        sample_rate=16000,
        factory="dcase9.systems.reference_based:build_oracle",
        needs_reference=True,
    ),
)


_ADDED: dict[str, SystemSpec] = {}  # systems registered at run time, by name


def audiosep_published_benchmarks() -> tuple[PublishedBenchmark, ...]:
    """AudioSep's own numbers on its six benchmarks (its README): the row `dcase9 suite` prints for comparison."""
    return _AUDIOSEP_BENCHMARKS


def list_systems() -> tuple[SystemSpec, ...]:
    """The project's systems, then those registered at run time."""
    return SYSTEMS + tuple(_ADDED.values())


def _names(spec: SystemSpec) -> set[str]:
    return {spec.name.lower(), *(alias.lower() for alias in spec.aliases)}


def register_system(spec: SystemSpec) -> SystemSpec:
    """Add a system at run time (a notebook, a package of your own: docs/extending.md); it is then
    run, listed and loaded like the project's. Registering the same spec again is harmless; a name
    or alias another system has is refused. Returns `spec`."""
    module, _, attribute = spec.factory.partition(":")
    if not module or not attribute:
        raise ValueError(f"system '{spec.name}': factory {spec.factory!r} is not 'module:callable'")
    for other in list_systems():
        if other == spec:
            return spec
        taken = _names(other) & _names(spec)
        if taken:
            raise ValueError(f"system '{spec.name}': the name {sorted(taken)[0]!r} is taken by system '{other.name}'")
    _ADDED[spec.name] = spec
    return spec


def unregister_system(name: str) -> None:
    """Remove a system added with `register_system` (the project's own stay)."""
    _ADDED.pop(name, None)


def get_system(name: str) -> SystemSpec:
    """Look a system up by name or alias ("2", "audiosep32k", "system2" all work where declared)."""
    key = str(name).strip().lower()
    for spec in list_systems():
        if key in _names(spec):
            return spec
    known = ", ".join(s.name for s in list_systems())
    raise ConfigError(f"unknown system {name!r}; known systems: {known} (see `dcase9 systems`)")
