"""Text-queried ResUNet30 systems: the DCASE baseline, AudioSep-32K, and the baseline retrained on
augmented captions (Systems 1 and 4).

All share one architecture — a CLAP text embedding conditions a ResUNet30 that masks the
mixture's STFT — and differ only in data: the checkpoint, the model's sample rate and STFT size.
A checkpoint in the official Lightning layout holds the separation net under `ss_model.` and its
CLAP query encoder under `query_encoder.model.`; both are read from the one file. A checkpoint
without the query encoder gets the standalone laion CLAP file instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import copy

import torch
from torch import nn

from dcase9.systems.base import BuildContext, SystemSpec
from dcase9.config import StrictModel, parse_model
from dcase9.errors import CheckpointError
from dcase9.models.checkpoints import state_dict_of, strip_prefix
from dcase9.models.clap import ClapArchitecture, ClapEncoder, audio_query_embedding, find_laion_prefix, \
    load_roberta_bpe, read_laion_clap_weights
from dcase9.models.resunet import ResUNet30, ResUNet30Config, inference_form, load_resunet30
from dcase9.weights import CLAP_WEIGHT, TOKENIZER_WEIGHT

__all__ = ["ClapArchitecture", "TextQueriedConfig", "TextQueriedResUNet", "build", "load_query_encoder"]


class TextQueriedConfig(StrictModel):
    """Per-system settings (`--system-config FILE` overrides any of them).

    `channels` / `pools` describe a non-official U-Net width and depth (small models trained with
    `dcase9 train`, whose checkpoints carry these settings); None means the official net.
    """

    n_fft: int
    hop_length: int
    channels: list[int] | None = None
    pools: list[tuple[int, int]] | None = None
    clap: ClapArchitecture = ClapArchitecture()
    query_encoder_prefix: str | None = None  # found automatically ("query_encoder.model." officially)


class TextQueriedResUNet(nn.Module):
    """A SeparationModel: CLAP text embedding -> ResUNet30 mask on the mixture at the model's rate.

    An ordinary module: `resunet` and `clap` are its submodules, trainable, and its state dict is the
    whole model's. In eval mode on the CPU it separates with a private copy of `resunet` in its inference
    form (batch norms folded: `inference_form`), and with `compile_network()` a compiled copy; the copy is
    made again when the weights change (an optimizer step, `load_state_dict`) or move to another device.
    """

    def __init__(self, sample_rate: int, resunet: ResUNet30, clap: ClapEncoder, *, fold_on_cpu: bool = True):
        super().__init__()
        self.sample_rate = sample_rate
        self.resunet = resunet
        self.clap = clap
        self.fold_on_cpu = fold_on_cpu  # False: run `resunet` as it is (a reference's own loop, emulated)
        self._compile = False
        # Not submodules: they are derived from `resunet`, never saved, never trained.
        object.__setattr__(self, "_runner", None)
        object.__setattr__(self, "_runner_key", None)

    def encode_queries(self, queries: Sequence[str]) -> torch.Tensor:
        return self.clap.encode_text(list(queries))

    def encode_audio_query(self, waveform: Any, sample_rate: int) -> torch.Tensor:
        """An audio example (mono float32 at `sample_rate`) as a query, as AudioSep embeds it
        (`dcase9.models.clap.query`); needs the CLAP audio tower (`load_separator(audio_queries=True)`)."""
        return audio_query_embedding(self.clap, waveform, sample_rate)

    def compile_network(self) -> None:
        """`torch.compile` the U-Net body (the STFT, masks and ISTFT stay eager) of the copy inference runs.
        On 2 CPU cores it is no faster per clip than the eager inference form (1.56-1.59 s against
        1.51-1.52 s) and costs a compilation of 24-36 s (5-6 s when Inductor's cache is warm); not
        measured on GPUs. Outputs equal the eager ones to float32 round-off, not bit for bit. See
        BENCHMARKS.md."""
        self._compile = True

    def _inference_net(self) -> nn.Module:
        """The net `separate` runs: `resunet` itself, or its private copy for inference (see the class)."""
        first = next(self.resunet.parameters())
        fold = self.fold_on_cpu and not self.training and first.device.type == "cpu"  # fewer passes (BENCHMARKS.md)
        if self.training or not (fold or self._compile):
            return self.resunet
        tensors = [*self.resunet.parameters(), *self.resunet.buffers()]
        key = (fold, self._compile, first.device, tuple((t.data_ptr(), t._version) for t in tensors))
        if key != self._runner_key:
            runner = copy.deepcopy(self.resunet)
            if fold:
                inference_form(runner)
            if self._compile:
                runner.base = torch.compile(runner.base)  # type: ignore[assignment]
            object.__setattr__(self, "_runner", runner)
            object.__setattr__(self, "_runner_key", key)
        return self._runner  # type: ignore[return-value]

    def separate(self, mixture: torch.Tensor, conditions: torch.Tensor | None,
                 reference: torch.Tensor | None = None) -> torch.Tensor:
        if conditions is None:
            raise ValueError("a text-queried system needs query embeddings")
        return self._inference_net()(mixture[:, None, :], conditions.to(mixture.device))[:, 0, :]


class QueryEncoderSettings(Protocol):
    """What `load_query_encoder` reads from a system's config (TextQueriedConfig, IrmLdmConfig)."""

    clap: ClapArchitecture
    query_encoder_prefix: str | None


def load_query_encoder(weights: dict[str, torch.Tensor], config: QueryEncoderSettings, context: BuildContext,
                       source: str) -> ClapEncoder:
    """The CLAP query encoder stored next to the separation net, or the standalone laion file: its text
    tower only (a text query needs nothing else), built without importing transformers; with
    `context.query_towers == "both"` the audio tower too (audio examples as queries)."""
    tokenizer = load_roberta_bpe(context.weight(TOKENIZER_WEIGHT))
    try:
        prefix = config.query_encoder_prefix or find_laion_prefix(weights, source=source)
        laion = strip_prefix(weights, prefix)
        clap_source = f"{source} ({prefix}*)"
    except CheckpointError:
        clap_path = context.weight(CLAP_WEIGHT)
        laion = read_laion_clap_weights(clap_path, trust=context.trust_checkpoint)
        clap_source = str(clap_path)
    return ClapEncoder.from_laion_weights(laion, tokenizer=tokenizer, spec=config.clap, source=clap_source,
                                          device=context.device, towers=context.query_towers)  # type: ignore[arg-type]


def build(spec: SystemSpec, context: BuildContext) -> TextQueriedResUNet:
    config = parse_model(context.options, TextQueriedConfig, source=f"system '{spec.name}' configuration")
    checkpoint_path = context.weight(spec.weights[0])
    weights: dict[str, Any] = dict(state_dict_of(context.read_checkpoint(checkpoint_path)))
    try:
        resunet = load_resunet30(weights, ResUNet30Config(
            spec.sample_rate, config.n_fft, config.hop_length,
            channels=tuple(config.channels) if config.channels is not None else None,
            pools=tuple(tuple(p) for p in config.pools) if config.pools is not None else None))
    except CheckpointError as exc:  # the weights were given in memory: name their file
        raise CheckpointError(f"{checkpoint_path}: {exc}") from None
    clap = load_query_encoder(weights, config, context, str(checkpoint_path))
    del weights  # the checkpoint may hold optimizer state; free it before inference
    return TextQueriedResUNet(spec.sample_rate, resunet, clap).to(context.device).eval()
