"""CLAP query embeddings for separation: an audio example of the sound wanted, as AudioSep embeds it, and a
text and an example together.

An audio example (`audio_query_embedding`) takes the steps of AudioSep's `CLAP_Encoder._get_audio_embed`
(`get_query_embed(modality="audio")`), which takes 32 kHz audio only: the example at 32 kHz (a file is
read as `librosa.load(path, sr=32000, mono=True)` would read it: the mean over channels, soxr HQ), then
torchaudio's `functional.resample` to CLAP's rate (48 kHz: Hann-windowed sinc, 6 zero crossings, roll-off
0.99: `dcase9.audio.sinc_resample`), laion's `repeatpad` to one 10 s clip (tiled a whole number of times,
then zero-padded), the HTSAT audio tower, its projection and L2 normalisation. An example longer than
10 s: AudioSep crops a random 10 s (`data_truncating="fusion"` in a model without fusion ends in a random
crop), which no run could repeat; we take the normalised mean of the embeddings of consecutive 10 s clips
(`ClapEncoder.encode_audio`, as ATS does), the same for examples up to 10 s.

A text and an example together (`combine_query_embeddings`): the normalised sum of the two unit
embeddings, their normalised mean: the unit vector halfway between them in CLAP's joint space. Both
kinds of query are unit vectors of that space, the only conditions the separation nets ever saw (the
released AudioSep and baseline checkpoints were trained on text queries, `use_text_ratio: 1.0`; AudioSep's
"hybird" training modality takes the text or the audio embedding of a clip at random, never a mix), and
the mean keeps that norm, is as close to one as to the other (neither dominates), and keeps what they
share (the sound described and heard) while halving what each has alone (the wording, the example's
background). AudioSep's own hybrid, a random choice per call, would make a run unrepeatable.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dcase9.audio import resample_hq, sinc_resample
from dcase9.models.clap.encoder import ClapEncoder

AUDIOSEP_QUERY_RATE = 32000  # CLAP_Encoder(sampling_rate=32000): the only rate its audio queries take
# An audio example is a clip of the sound wanted: CLAP looks at 10 s of it at a time. Longer than this is
# not an example (and would be held whole in memory).
MAX_AUDIO_QUERY_SECONDS = 600.0


@torch.no_grad()
def audio_query_embedding(encoder: ClapEncoder, waveform: np.ndarray, sample_rate: int) -> torch.Tensor:
    """The unit `(embedding_dim,)` CLAP embedding of a mono float32 example at `sample_rate`, as AudioSep's
    `get_query_embed(modality="audio")` computes it (module docstring), on the encoder's device."""
    at_32k = resample_hq(np.ascontiguousarray(waveform, dtype=np.float32), sample_rate, AUDIOSEP_QUERY_RATE)
    batch = torch.from_numpy(at_32k)[None].to(encoder.device)
    return encoder.encode_audio(sinc_resample(batch, AUDIOSEP_QUERY_RATE, encoder.sample_rate))[0]


def combine_query_embeddings(text: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """A text and an audio example as one query: the normalised mean of their unit embeddings."""
    return F.normalize(F.normalize(text, dim=-1) + F.normalize(audio.to(text.device), dim=-1), dim=-1)
