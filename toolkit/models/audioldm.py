"""AudioLDM's latent space: its mel front end, its VAE and vocoder, and its diffusion UNet as a prior.

System 3 (IRM-LDM) separates in the latent space of the text-to-audio model AudioLDM
(`cvssp/audioldm-s-full-v2`). This module holds the AudioLDM side of that system, loaded from the
real libraries: diffusers' `AutoencoderKL` (subfolder `vae`), transformers' `SpeechT5HifiGan`
(subfolder `vocoder`) and, for the optional LDM training term, diffusers' `UNet2DConditionModel`
(`unet`), its noise scheduler (`scheduler`) and AudioLDM's CLAP text tower (`text_encoder`,
`tokenizer`).

AudioLDM's conventions, from its code (`audioldm/audio/tools.py`, `audioldm/audio/stft.py`,
`audioldm/utils.py`) and diffusers' AudioLDM pipeline:

* waveform preparation (`normalize_wav`): remove the mean, scale the peak to 0.5, then zero-pad or
  crop to `target_length * hop` samples; 10 s of audio is handled as `target_length = 1024`
  frames = 163,840 samples (10.24 s);
* mel front end (`TacotronSTFT.mel_spectrogram`): 16 kHz, Hann window (periodic) of n_fft = 1024,
  hop 160, centred frames with reflect padding, STFT magnitude (power 1), 64 Slaney-normalised
  mel filters over 0-8 kHz, then log(clamp(x, 1e-5)); the 1025 frames of a 163,840-sample
  segment are cropped to 1024 (`_pad_spec`);
* the VAE takes the log-mel as a (batch, 1, frames, mels) image and down-samples it 4x in both
  axes: a 1024 x 64 mel becomes an 8 x 256 x 16 latent; the diffusion model works on the latent
  multiplied by the VAE's learnt `scaling_factor` (read from its config);
* the vocoder maps a (batch, frames, mels) log-mel to `hop` samples per frame (plus a few samples
  of the transposed convolutions' overhang, which are cropped).

We keep the diffusion-space convention: `AudioLdmCodec.analyse` returns `scaling_factor * mean`
of the VAE posterior (the posterior mean rather than a sample, so separation is deterministic)
and `decode_mel` divides by it again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dcase9.errors import CheckpointError
from dcase9.lazy import require
from dcase9.models.checkpoints import require_finite
from dcase9.models.clap import slaney_mel_filterbank

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import ClapTextModelWithProjection, PreTrainedTokenizerBase, SpeechT5HifiGan

__all__ = [
    "AUDIOLDM_HUB_REPO",
    "AudioLdmAnalysis",
    "AudioLdmCodec",
    "AudioLdmDiffusionPrior",
    "AudioLdmFrontEnd",
    "AudioLdmMel",
    "MelSettings",
    "PreparedSegments",
    "load_audioldm_diffusion_prior",
    "load_audioldm_vae",
    "load_audioldm_vocoder",
    "prepare_waveform",
]

AUDIOLDM_HUB_REPO = "cvssp/audioldm-s-full-v2"
_PURPOSE = "System 3 (IRM-LDM)"
# normalize_wav divides by (peak + 1e-8): the epsilon keeps silence finite.
_PEAK_EPSILON = 1e-8


# --------------------------------------------------------------------------------------------
# Front end


@dataclass(frozen=True)
class MelSettings:
    """AudioLDM's waveform preparation and log-mel front end (defaults: audioldm-s-full-v2)."""

    sample_rate: int = 16_000
    n_fft: int = 1024  # also the Hann window length
    hop_length: int = 160
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float = 8_000.0
    log_floor: float = 1e-5  # log(clamp(mel, 1e-5))
    peak: float = 0.5  # normalize_wav scales the peak to 0.5
    segment_frames: int = 1024  # AudioLDM's target_length for 10 s: 1024 frames = 10.24 s

    @property
    def segment_samples(self) -> int:
        return self.segment_frames * self.hop_length

    def validate(self) -> None:
        if self.n_fft < 2 or self.hop_length < 1 or self.segment_frames < 1:
            raise ValueError(f"invalid front end settings: {self}")
        if self.fmax > self.sample_rate / 2:
            raise ValueError(f"fmax {self.fmax} Hz is above the Nyquist frequency of {self.sample_rate} Hz")
        if self.segment_samples <= self.n_fft // 2:
            raise ValueError(f"a segment of {self.segment_samples} samples is too short to reflect-pad for "
                             f"n_fft {self.n_fft}")


def prepare_waveform(segments: Tensor, valid: Tensor | None = None, *, peak: float = 0.5
                     ) -> tuple[Tensor, Tensor]:
    """AudioLDM's `normalize_wav` per row: remove the mean, scale the peak to `peak`.

    `segments`: (rows, samples). `valid`: optional (rows, samples) bool mask of the samples that
    belong to the signal (the rest is zero padding added after the signal's end, which AudioLDM
    adds after normalising: it stays zero and takes no part in the mean). Returns the prepared
    segments and the per-row gain (rows, 1) with `prepared = (segments - mean) * gain`, so a model
    output at the prepared scale returns to the input's scale when divided by `gain`.
    """
    if valid is None:
        centred = segments - segments.mean(dim=-1, keepdim=True)
    else:
        weight = valid.to(segments.dtype)
        mean = (segments * weight).sum(-1, keepdim=True) / weight.sum(-1, keepdim=True).clamp_min(1.0)
        centred = (segments - mean) * weight
    gain = peak / (centred.abs().amax(dim=-1, keepdim=True) + _PEAK_EPSILON)
    return centred * gain, gain


class AudioLdmMel(nn.Module):
    """`(batch, samples)` waveforms -> `(batch, frames, n_mels)` log-mel, AudioLDM's definition.

    frames = samples // hop + 1 (centred frames). Slaney mel filters (librosa's default
    `librosa.filters.mel`, which AudioLDM uses) applied to the STFT magnitude, natural log of the
    result clamped at `log_floor`.
    """

    def __init__(self, settings: MelSettings = MelSettings()):
        super().__init__()
        settings.validate()
        self.settings = settings
        self.register_buffer("window", torch.hann_window(settings.n_fft, periodic=True, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("mel_filters", slaney_mel_filterbank(
            settings.sample_rate, settings.n_fft, settings.n_mels, settings.fmin, settings.fmax), persistent=False)

    def forward(self, waveforms: Tensor) -> Tensor:
        s = self.settings
        spectrum = torch.stft(waveforms.float(), n_fft=s.n_fft, hop_length=s.hop_length, win_length=s.n_fft,
                              window=self.window, center=True, pad_mode="reflect", return_complex=True)
        magnitude = spectrum.abs()  # (batch, freqs, frames), power 1
        mel = torch.matmul(magnitude.transpose(1, 2), self.mel_filters)  # (batch, frames, n_mels)
        return torch.log(torch.clamp(mel, min=s.log_floor))


@dataclass
class PreparedSegments:
    """A batch cut into AudioLDM segments, prepared and turned into log-mels.

    `mel`: (batch * segments, segment_frames, n_mels); `gain`: (batch * segments, 1) of
    `prepare_waveform`; `segments`: segments per batch item; `length`: samples per item.
    """

    mel: Tensor
    gain: Tensor
    segments: int
    length: int


class AudioLdmFrontEnd(nn.Module):
    """Waveforms of any length -> AudioLDM's log-mel segments, prepared as AudioLDM prepares a clip.

    The input is cut into consecutive segments of `settings.segment_samples` (the last one
    zero-padded at its end, as AudioLDM pads a short clip); each segment is prepared on its own
    (mean removed over its real samples, peak 0.5), and its `segment_frames + 1` centred frames are
    cropped to `segment_frames` (AudioLDM's `_pad_spec`).
    """

    def __init__(self, settings: MelSettings = MelSettings()):
        super().__init__()
        self.settings = settings
        self.mel = AudioLdmMel(settings)

    def forward(self, waveforms: Tensor) -> PreparedSegments:
        if waveforms.dim() != 2:
            raise ValueError(f"waveforms must be (batch, samples), got {tuple(waveforms.shape)}")
        batch, length = waveforms.shape
        if length < 1:
            raise ValueError("cannot process an empty signal")
        segment = self.settings.segment_samples
        count = max(1, math.ceil(length / segment))
        padded_length = count * segment
        padded = F.pad(waveforms.float(), (0, padded_length - length))
        valid = (torch.arange(padded_length, device=waveforms.device) < length).expand(batch, -1)
        prepared, gain = prepare_waveform(padded.reshape(batch * count, segment),
                                          valid.reshape(batch * count, segment), peak=self.settings.peak)
        mel = self.mel(prepared)[:, : self.settings.segment_frames]
        return PreparedSegments(mel=mel, gain=gain, segments=count, length=length)


# --------------------------------------------------------------------------------------------
# Loading the pretrained parts


def _read_config(folder: Path, filename: str, what: str) -> dict[str, Any]:
    path = folder / filename
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a folder; {what} is a folder holding {filename} and the weights "
                              f"(subfolder of {AUDIOLDM_HUB_REPO})")
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {filename}, so this is not a {what} folder "
                              f"(expected the layout of {AUDIOLDM_HUB_REPO})")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return config


def _frozen(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()


# Loaders call `.float()` after `from_pretrained` rather than passing a dtype: the keyword differs
# between library versions (`torch_dtype` / `dtype`), and half-precision weights are promoted either way.


def load_audioldm_vae(folder: str | Path) -> AutoencoderKL:
    """AudioLDM's VAE from a diffusers folder (`config.json` + weights), frozen, float32, in eval mode."""
    folder = Path(folder)
    config = _read_config(folder, "config.json", "diffusers AutoencoderKL")
    if config.get("in_channels") != 1 or config.get("out_channels") != 1:
        raise CheckpointError(f"{folder}: the VAE must map 1-channel mel images (in/out_channels 1), its config "
                              f"says {config.get('in_channels')}/{config.get('out_channels')}")
    diffusers = require("diffusers", extra="ldm", purpose=_PURPOSE)
    try:
        vae = diffusers.AutoencoderKL.from_pretrained(folder, local_files_only=True).float()
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{folder}: cannot load the AudioLDM VAE ({exc})") from exc
    require_finite(vae.state_dict(), source=str(folder))
    return _frozen(vae)


def load_audioldm_vocoder(folder: str | Path, settings: MelSettings = MelSettings()) -> SpeechT5HifiGan:
    """AudioLDM's HiFi-GAN vocoder from a transformers folder, frozen, float32, in eval mode."""
    folder = Path(folder)
    config = _read_config(folder, "config.json", "transformers SpeechT5HifiGan")
    problems = []
    if config.get("model_in_dim") != settings.n_mels:
        problems.append(f"model_in_dim {config.get('model_in_dim')} != {settings.n_mels} mel bands")
    if config.get("sampling_rate") != settings.sample_rate:
        problems.append(f"sampling_rate {config.get('sampling_rate')} != {settings.sample_rate}")
    rates = config.get("upsample_rates") or []
    if math.prod(rates) != settings.hop_length:
        problems.append(f"upsample_rates {rates} multiply to {math.prod(rates)}, not the hop {settings.hop_length}")
    if problems:
        raise CheckpointError(f"{folder}: this vocoder does not fit AudioLDM's front end: {'; '.join(problems)}")
    import transformers  # a core dependency of dcase9
    try:
        vocoder = transformers.SpeechT5HifiGan.from_pretrained(folder, local_files_only=True).float()
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{folder}: cannot load the AudioLDM vocoder ({exc})") from exc
    require_finite(vocoder.state_dict(), source=str(folder))
    return _frozen(vocoder)


# --------------------------------------------------------------------------------------------
# The latent path


@dataclass
class AudioLdmAnalysis:
    """A batch cut into AudioLDM segments and encoded.

    `latent`: (batch * segments, channels, frames / f, mels / f) in diffusion space;
    `gain`: (batch * segments, 1) of `prepare_waveform`; `segments`: segments per batch item;
    `length`: samples per item of the input.
    """

    latent: Tensor
    gain: Tensor
    segments: int
    length: int

    @property
    def batch(self) -> int:
        return self.latent.shape[0] // self.segments


class AudioLdmCodec(nn.Module):
    """The frozen AudioLDM path: waveform -> prepared segments -> log-mel -> VAE latent, and back
    through the VAE decoder and the vocoder.

    `analyse` cuts and prepares the input with `AudioLdmFrontEnd` (segments of 10.24 s, each
    with its mean removed and its peak at 0.5). `synthesise` undoes the preparation's gain per
    segment, so outputs are at the input's scale (`restore_gain=False` leaves them at AudioLDM's
    peak-0.5 scale), joins the segments and crops to the input length.
    The inference engine hands System 3 chunks of one segment (10.24 s) with cross-faded overlaps,
    so it never relies on the hard joins of longer inputs here.
    """

    def __init__(self, vae: AutoencoderKL, vocoder: SpeechT5HifiGan, settings: MelSettings = MelSettings()):
        super().__init__()
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        if settings.segment_frames % factor or settings.n_mels % factor:
            raise ValueError(f"the VAE down-samples {factor}x, which must divide the segment's "
                             f"{settings.segment_frames} frames and {settings.n_mels} mel bands")
        if vocoder.config.model_in_dim != settings.n_mels:
            raise ValueError(f"the vocoder takes {vocoder.config.model_in_dim} mel bands, the front end makes "
                             f"{settings.n_mels}")
        self.settings = settings
        self.front_end = AudioLdmFrontEnd(settings)
        self.vae = _frozen(vae)
        self.vocoder = _frozen(vocoder)
        self.scaling_factor = float(vae.config.scaling_factor)
        self.latent_channels = int(vae.config.latent_channels)

    def train(self, mode: bool = True) -> AudioLdmCodec:
        """The pretrained parts stay in eval mode: they are frozen."""
        super().train(mode)
        self.vae.eval()
        self.vocoder.eval()
        return self

    def analyse(self, waveforms: Tensor) -> AudioLdmAnalysis:
        """(batch, samples) -> segments prepared and encoded. No gradient flows: the VAE encoder is
        frozen and nothing before it is trained."""
        with torch.no_grad():
            prepared = self.front_end(waveforms)
            posterior = self.vae.encode(prepared.mel[:, None]).latent_dist
            latent = posterior.mode() * self.scaling_factor
        return AudioLdmAnalysis(latent=latent, gain=prepared.gain, segments=prepared.segments,
                                length=prepared.length)

    def decode_mel(self, latent: Tensor) -> Tensor:
        """Diffusion-space latent -> (rows, frames, n_mels) log-mel."""
        return self.vae.decode(latent / self.scaling_factor).sample[:, 0]

    def synthesise(self, latent: Tensor, analysis: AudioLdmAnalysis, *, restore_gain: bool = True) -> Tensor:
        """Latents of `analysis`'s segments (possibly masked) -> (batch, samples) waveforms. Differentiable
        with respect to `latent` (the decoder and vocoder are frozen, not detached)."""
        segment = self.settings.segment_samples
        waves = self.vocoder(self.decode_mel(latent))  # (rows, frames * hop + overhang)
        if waves.shape[-1] < segment:  # a vocoder whose kernels undershoot: pad, never misalign
            waves = F.pad(waves, (0, segment - waves.shape[-1]))
        waves = waves[:, :segment]
        if restore_gain:
            waves = waves / analysis.gain
        return waves.reshape(analysis.batch, analysis.segments * segment)[:, : analysis.length]

    def roundtrip(self, waveforms: Tensor, *, restore_gain: bool = True) -> Tensor:
        """The latent path without a mask: what the VAE + vocoder make of `waveforms` themselves."""
        analysis = self.analyse(waveforms)
        return self.synthesise(analysis.latent, analysis, restore_gain=restore_gain)


# --------------------------------------------------------------------------------------------
# The LDM term: AudioLDM's frozen UNet as a prior on predicted latents


class AudioLdmDiffusionPrior(nn.Module):
    """AudioLDM's denoising objective, evaluated on a latent we predict, with AudioLDM frozen.

    `loss(latent, captions)`: for each row, a timestep t ~ U{0, ..., T-1} and noise e ~ N(0, I);
    the latent is noised as the scheduler does in training, x_t = sqrt(abar_t) * latent +
    sqrt(1 - abar_t) * e, the frozen UNet predicts the noise from (x_t, t) conditioned the way
    AudioLDM conditions it (the L2-normalised `text_embeds` of AudioLDM's own CLAP text tower,
    passed as the UNet's class embedding), and the loss is the mean squared error between the
    prediction and e (or the velocity, for a v-prediction scheduler). Gradients reach `latent`
    only: the UNet, scheduler and text tower are frozen.
    """

    def __init__(self, unet: UNet2DConditionModel, scheduler: Any, text_encoder: ClapTextModelWithProjection,
                 tokenizer: PreTrainedTokenizerBase):
        super().__init__()
        self.unet = _frozen(unet)
        self.text_encoder = _frozen(text_encoder)
        self.scheduler = scheduler
        self.tokenizer = tokenizer
        self._text_cache: dict[str, Tensor] = {}

    def train(self, mode: bool = True) -> AudioLdmDiffusionPrior:
        super().train(mode)
        self.unet.eval()
        self.text_encoder.eval()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def embed_text(self, captions: Sequence[str]) -> Tensor:
        """AudioLDM's text condition: normalised CLAP `text_embeds`, (len(captions), dim); cached per caption."""
        new = [c for c in dict.fromkeys(captions) if c not in self._text_cache]
        if new:
            tokens = self.tokenizer(list(new), padding=True, truncation=True,
                                    max_length=self.tokenizer.model_max_length, return_tensors="pt")
            with torch.no_grad():
                output = self.text_encoder(input_ids=tokens["input_ids"].to(self.device),
                                           attention_mask=tokens["attention_mask"].to(self.device))
                embeds = F.normalize(output.text_embeds.float(), dim=-1)
            self._text_cache.update(zip(new, embeds, strict=True))
        return torch.stack([self._text_cache[c] for c in captions])

    def loss(self, latent: Tensor, captions: Sequence[str], *, generator: torch.Generator | None = None) -> Tensor:
        """`latent`: (rows, C, T, F) diffusion-space latents; `captions`: one per row."""
        if len(captions) != latent.shape[0]:
            raise ValueError(f"{latent.shape[0]} latents but {len(captions)} captions")
        condition = self.embed_text(captions).to(latent.device)
        steps = int(self.scheduler.config.num_train_timesteps)
        timesteps = torch.randint(0, steps, (latent.shape[0],), generator=generator,
                                  device="cpu" if generator is None else generator.device).to(latent.device)
        noise = torch.randn(latent.shape, generator=generator,
                            device="cpu" if generator is None else generator.device).to(latent)
        noisy = self.scheduler.add_noise(latent, noise, timesteps)
        prediction = self.unet(noisy, timesteps, encoder_hidden_states=None, class_labels=condition).sample
        kind = self.scheduler.config.prediction_type
        if kind == "epsilon":
            target = noise
        elif kind == "v_prediction":
            target = self.scheduler.get_velocity(latent, noise, timesteps)
        else:
            raise CheckpointError(f"the AudioLDM scheduler predicts {kind!r}; the LDM term supports epsilon and "
                                  "v_prediction")
        return F.mse_loss(prediction.float(), target.float())


def load_audioldm_diffusion_prior(root: str | Path) -> AudioLdmDiffusionPrior:
    """The LDM term's parts from an AudioLDM pipeline folder: `unet/`, `scheduler/`, `text_encoder/`,
    `tokenizer/` (the layout of cvssp/audioldm-s-full-v2)."""
    root = Path(root)
    unet_config = _read_config(root / "unet", "config.json", "diffusers UNet2DConditionModel")
    scheduler_config = _read_config(root / "scheduler", "scheduler_config.json", "diffusers scheduler")
    _read_config(root / "text_encoder", "config.json", "transformers ClapTextModelWithProjection")
    if unet_config.get("class_embed_type") != "simple_projection":
        raise CheckpointError(f"{root / 'unet'}: AudioLDM's UNet takes the text embedding as a projected class "
                              f"embedding (class_embed_type 'simple_projection'); this one has "
                              f"{unet_config.get('class_embed_type')!r}")
    diffusers = require("diffusers", extra="ldm", purpose=_PURPOSE)
    import transformers  # a core dependency of dcase9
    scheduler_class = getattr(diffusers, str(scheduler_config.get("_class_name")), None)
    if scheduler_class is None or not hasattr(scheduler_class, "add_noise"):
        raise CheckpointError(f"{root / 'scheduler'}: unknown scheduler class {scheduler_config.get('_class_name')!r}")
    try:
        unet = diffusers.UNet2DConditionModel.from_pretrained(root / "unet", local_files_only=True).float()
        scheduler = scheduler_class.from_config(scheduler_config)
        text_encoder = transformers.ClapTextModelWithProjection.from_pretrained(
            root / "text_encoder", local_files_only=True).float()
        tokenizer = transformers.AutoTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{root}: cannot load AudioLDM's UNet, scheduler or text encoder ({exc})") from exc
    require_finite(unet.state_dict(), source=str(root / "unet"))
    require_finite(text_encoder.state_dict(), source=str(root / "text_encoder"))
    return AudioLdmDiffusionPrior(unet, scheduler, text_encoder, tokenizer)
