"""laion CLAP (HTSAT audio tower, RoBERTa text tower) on transformers' `ClapModel`.

CLAP serves twice in Task 9: its text embedding is the query that conditions the separation
networks of the baseline and AudioSep, and the audio-text cosine similarity of its embeddings is
the ATS metric. Both must equal what the laion code vendored in the baseline computes, so this
module loads laion-format weights (the standalone `music_speech_audioset_epoch_15_esc_89.98.pt`,
or the `query_encoder.model.*` part of the baseline / AudioSep Lightning checkpoints), renames
their keys for transformers' `ClapModel`, and reproduces laion's input pipeline:

- text: RoBERTa BPE tokens (truncated at 512) -> RoBERTa pooler output (dense + tanh on <s>)
  -> Linear, ReLU, Linear -> L2 normalisation;
- audio (48 kHz, 10 s clips): laion's `repeatpad` for shorter inputs (the clip tiled a whole
  number of times, then zero-padded) -> the log-mel that laion computes inside HTSAT (Hann STFT,
  reflect-padded centre frames, power 2, Slaney mel filters, 10 log10(max(x, 1e-10)), no top_db)
  -> bn0 -> mel-to-image folding -> Swin -> average pooling -> Linear, ReLU, Linear -> L2 norm.
  transformers' `ClapFeatureExtractor` is not used: we compute laion's front end in torch.

Inputs longer than one clip: laion picks a random 10 s crop (non-fusion models). We instead take
consecutive clips starting at 0, L, 2L, ... with the last one aligned to the end of the signal
(it overlaps its predecessor, so every clip holds real audio and nothing is padded), and return
the normalised mean of their normalised embeddings.

    encoder = ClapEncoder.from_laion_checkpoint("music_speech_audioset_epoch_15_esc_89.98.pt")
    queries = encoder.encode_text(["a dog barking"])            # (1, 512), unit norm
    ats = (encoder.encode_audio(separated_48k) * queries).sum(-1)  # cosine similarity

Modules, one job each: `laion_keys` (laion <-> transformers key names, reading laion weights from
their files), `frontend` (HTSAT's log-mel and clip handling, the stored front end's check),
`tokenizer` (the RoBERTa tokenizer, from a folder or the Hub cache; on transformers, or on the
`tokenizers` library alone for text queries), `architecture` (`ClapSpec`,
`ClapArchitecture`), `encoder` (`ClapEncoder`, building the model empty and loading weights),
`text_tower` (the text tower alone in plain PyTorch, under `ClapModel`'s names, for text queries:
it spares `dcase9 infer` the import of transformers' modelling code), `query` (audio examples as
queries, as AudioSep embeds them, and a text and an example together). The names below are the
package's interface.
"""

from dcase9.models.clap.architecture import ClapArchitecture, ClapSpec, laion_clap_spec
from dcase9.models.clap.encoder import (CLAP_TOWERS, ClapEncoder, ClapTextTower, ClapTowers, build_clap_model,
                                         empty_clap_model, load_laion_weights)
from dcase9.models.clap.frontend import (HtsatLogMel, LogMelSettings, check_front_end, clip_starts, repeat_pad,
                                          slaney_mel_filterbank)
from dcase9.models.clap.query import (AUDIOSEP_QUERY_RATE, MAX_AUDIO_QUERY_SECONDS, audio_query_embedding,
                                       combine_query_embeddings)
from dcase9.models.clap.laion_keys import (LAION_KEYS_DROPPED, find_laion_prefix, laion_clap_weights_of,
                                            laion_to_transformers, read_laion_clap_weights, transformers_to_laion)
from dcase9.models.clap.text_tower import TextTowerConfig
from dcase9.models.clap.tokenizer import (DEFAULT_TOKENIZER, MAX_TEXT_TOKENS, TOKENIZER_FOLDER_FILES, RobertaBpe,
                                           load_roberta_bpe,
                                           load_roberta_tokenizer)

__all__ = [
    "AUDIOSEP_QUERY_RATE", "MAX_AUDIO_QUERY_SECONDS", "audio_query_embedding", "combine_query_embeddings",
    "CLAP_TOWERS", "DEFAULT_TOKENIZER", "LAION_KEYS_DROPPED", "MAX_TEXT_TOKENS", "ClapArchitecture", "ClapEncoder",
    "ClapSpec", "ClapTextTower", "ClapTowers", "HtsatLogMel", "LogMelSettings", "RobertaBpe", "TOKENIZER_FOLDER_FILES",
    "TextTowerConfig", "build_clap_model", "check_front_end", "clip_starts", "empty_clap_model", "find_laion_prefix",
    "laion_clap_spec", "laion_clap_weights_of", "laion_to_transformers", "load_laion_weights", "load_roberta_bpe", "load_roberta_tokenizer",
    "read_laion_clap_weights", "repeat_pad", "slaney_mel_filterbank", "transformers_to_laion",
]
