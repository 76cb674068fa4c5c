"""Every system the toolkit knows, as data. Add a system by adding a SystemSpec here."""

from __future__ import annotations

from systems.base import Published, SystemSpec
from toolkit.errors import ConfigError

_BASELINE_STFT = {"n_fft": 1024, "hop_length": 160}  # the DCASE baseline at 16 kHz
_AUDIOSEP_STFT = {"n_fft": 2048, "hop_length": 320}  # AudioSep at 32 kHz
_TEXT_QUERIED = "systems.text_queried:build"
_TOKENIZER = "roberta-base-tokenizer"
_CLAP = "clap-music-speech-audioset"
_AUDIOLDM = ("audioldm-vae", "audioldm-vocoder")
_AUDIOLDM_SEGMENT = 10.24  # AudioLDM's 1024 frames of 160 samples: a 10 s clip runs whole

SYSTEMS: tuple[SystemSpec, ...] = (
    SystemSpec(
        name="baseline",
        title="DCASE 2024 Task 9 baseline",
        summary="ResUNet30 at 16 kHz (STFT 1024/160) conditioned on a CLAP text embedding; the official "
                "checkpoint (Zenodo 10887460).",
        sample_rate=16000,
        factory=_TEXT_QUERIED,
        segment_seconds=10.0,
        weights=("baseline-checkpoint", _TOKENIZER),
        optional_weights=(_CLAP,),
        options=dict(_BASELINE_STFT),
        published=(Published(5.708, 5.673, 3.862, 0.229, "baseline README, seed 003"),
                   Published(5.817, 5.782, 3.837, None, "seed 000 re-run")),
    ),
    SystemSpec(
        name="1",
        aliases=("system1", "gpt-augmented"),
        title="System 1: baseline trained on GPT-4 augmented captions",
        summary="The baseline architecture trained with 5 GPT-4 captions per FSD50K clip (seed 003). No public "
                "weights: train it, then pass --checkpoint.",
        sample_rate=16000,
        factory=_TEXT_QUERIED,
        segment_seconds=10.0,
        weights=("system1-checkpoint", _TOKENIZER),
        optional_weights=(_CLAP,),
        options=dict(_BASELINE_STFT),
        published=(Published(5.937, 5.902, 4.191, 0.231, "seed 003"),),
    ),
    SystemSpec(
        name="2",
        aliases=("system2", "audiosep32k", "audiosep-32k"),
        title="System 2: AudioSep-32K",
        summary="Pretrained AudioSep (ResUNet30 at 32 kHz, STFT 2048/320) on 16 kHz data resampled "
                "16 -> 32 -> 16 kHz (seed 003).",
        sample_rate=32000,
        factory=_TEXT_QUERIED,
        segment_seconds=10.0,
        weights=("audiosep-checkpoint", _TOKENIZER),
        optional_weights=(_CLAP,),
        options=dict(_AUDIOSEP_STFT),
        published=(Published(8.192, 8.157, 6.680, 0.249, "seed 003"),
                   Published(8.195, 8.160, 6.708, None, "seed 000, AudioSep pretrained")),
    ),
    SystemSpec(
        name="3",
        aliases=("system3", "irm-ldm", "irmldm"),
        title="System 3: IRM-LDM, a ratio mask in AudioLDM's VAE latent space",
        summary="VAE-encode the mixture's mel, mask the latent with a CLAP-conditioned ResUNet, VAE-decode and "
                "vocode (seed 003). No public weights: train it, then pass --checkpoint. Option mask: ones runs "
                "the latent path without a mask.",
        sample_rate=16000,
        factory="systems.irm_ldm:build",
        segment_seconds=_AUDIOLDM_SEGMENT,
        weights=("system3-checkpoint", *_AUDIOLDM, _TOKENIZER),
        optional_weights=(_CLAP,),
        published=(Published(-4.757, -4.792, -42.346, 0.193, "seed 003"),),
    ),
    SystemSpec(
        name="3-roundtrip",
        aliases=("system3-roundtrip", "irm-ldm-roundtrip"),
        title="System 3 diagnostic: the reference through AudioLDM's VAE + vocoder",
        summary="Encodes and decodes the reference without a mask (validation only): the ceiling of any system "
                "that separates in AudioLDM's latent space.",
        sample_rate=16000,
        factory="systems.irm_ldm:build_roundtrip",
        needs_reference=True,
        segment_seconds=_AUDIOLDM_SEGMENT,
        weights=_AUDIOLDM,
    ),
    SystemSpec(
        name="4",
        aliases=("system4", "ddp-bert"),
        title="System 4: baseline trained on DDP captions selected by BERTScore >= 0.7",
        summary="The baseline architecture trained with dataset-dependent-prompt LLM captions kept at "
                "BERTScore >= 0.7 (seed 000). No public weights: train it, then pass --checkpoint.",
        sample_rate=16000,
        factory=_TEXT_QUERIED,
        segment_seconds=10.0,
        weights=("system4-checkpoint", _TOKENIZER),
        optional_weights=(_CLAP,),
        options=dict(_BASELINE_STFT),
        published=(Published(6.716, 6.681, 4.729, None, "seed 000, baseline dev set + DDP"),
                   Published(7.818, 7.783, 6.321, None, "seed 000, + WavCaps + DDP")),
    ),
    SystemSpec(
        name="4-audiosep",
        aliases=("system4-audiosep",),
        title="System 4 (AudioSep variant): AudioSep fine-tuned on DDP captions, BERTScore >= 0.7",
        summary="AudioSep (32 kHz) fine-tuned with DDP captions (seed 000 Table 5). Train it from the AudioSep "
                "checkpoint, then pass --checkpoint.",
        sample_rate=32000,
        factory=_TEXT_QUERIED,
        segment_seconds=10.0,
        weights=("system4-audiosep-checkpoint", _TOKENIZER),
        optional_weights=(_CLAP,),
        options=dict(_AUDIOSEP_STFT),
        published=(Published(8.489, 8.454, 7.198, None, "seed 000, AudioSep fine-tuned + DDP"),),
    ),
    SystemSpec(
        name="mixture",
        title="Mixture (identity)",
        summary="Returns the mixture unchanged: SDRi is 0 dB by definition. A pipeline check.",
        sample_rate=16000,
        factory="systems.reference_based:build_mixture",
    ),
    SystemSpec(
        name="oracle",
        title="Oracle ideal ratio mask",
        summary="Ideal ratio mask from the reference (validation only): an upper bound for masking systems.",
        sample_rate=16000,
        factory="systems.reference_based:build_oracle",
        needs_reference=True,
    ),
)


def list_systems() -> tuple[SystemSpec, ...]:
    return SYSTEMS


def get_system(name: str) -> SystemSpec:
    """Look a system up by name or alias ("2", "audiosep32k", "system2" all work where declared)."""
    key = str(name).strip().lower()
    for spec in SYSTEMS:
        if key == spec.name.lower() or key in (a.lower() for a in spec.aliases):
            return spec
    known = ", ".join(s.name for s in SYSTEMS)
    raise ConfigError(f"unknown system {name!r}; known systems: {known} (see `dcase9 systems`)")
