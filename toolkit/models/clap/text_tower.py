"""CLAP's RoBERTa text tower in plain PyTorch, for text queries without transformers' modelling code.

Importing transformers' CLAP modelling module costs about 3 s of `dcase9 infer`'s start-up on two
cores (it pulls in most of transformers, torch.distributed, scipy.optimize, ...), more than
building and loading the tower itself. A text query needs only RoBERTa's encoder, its pooler and
CLAP's projection, which are a few standard layers; this module builds them under transformers'
`ClapModel` parameter names (`text_model.*`, `text_projection.*`), so the same laion weights load
through the same key mapping, and computes what transformers' eval-mode forward pass computes:

* embeddings: word + token type (always type 0) + position, then layer norm. Positions count the
  non-padding tokens from `pad_token_id + 1` on; padding tokens get position `pad_token_id`;
* `num_hidden_layers` post-norm transformer layers: multi-head self-attention (softmax over
  scaled dot products, padding keys masked) -> dense -> residual -> layer norm, then dense -> GELU (erf) -> dense -> residual ->
  layer norm;
* pooler: dense + tanh on the first token (`<s>`); projection: linear -> activation -> linear.

Dropout is absent (inference only). The sizes come from a `TextTowerConfig` or any object with
the same attribute names, such as transformers' `ClapTextConfig` (this module never imports
transformers). `tests/test_clap.py` checks the outputs against transformers' `ClapModel`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ClapProjection", "RobertaTextModel", "TextModelOutput", "TextTowerConfig"]


@dataclass(frozen=True)
class TextTowerConfig:
    """CLAP's text tower: RoBERTa's sizes and its projection, under `ClapTextConfig`'s attribute names.

    Defaults are roberta-base and `music_speech_audioset_epoch_15_esc_89.98.pt`'s 512-d projection.
    """

    vocab_size: int = 50_265
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5  # roberta-base's value; ClapTextConfig's default (1e-12) is BERT's
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2
    projection_dim: int = 512
    projection_hidden_act: str = "relu"

    def encoder_settings(self) -> dict[str, Any]:
        """The RoBERTa part as keyword arguments of transformers' `ClapTextConfig` (the projection is
        `ClapConfig`'s own argument)."""
        settings = asdict(self)
        del settings["projection_dim"], settings["projection_hidden_act"]
        return settings

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh}


def _activation(name: str) -> Any:
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unsupported activation {name!r} (supported: {', '.join(_ACTIVATIONS)})") from None


class TextModelOutput(NamedTuple):
    """What `RobertaTextModel` returns, under the field names of transformers' output."""

    last_hidden_state: Tensor
    pooler_output: Tensor


class _Table(nn.Embedding):
    """An embedding table initialised from U(-sqrt 3, sqrt 3) (the variance of PyTorch's default N(0, 1)).

    Its values come from a checkpoint; the initialisation only matters for random stand-ins. Not
    the default normal initialisation: on the meta device (how `empty_clap_model` builds) that one
    runs a Python decomposition that imports torch._dynamo, 1.5 s of start-up.
    """

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.weight, -3 ** 0.5, 3 ** 0.5)
        if self.padding_idx is not None:
            with torch.no_grad():
                self.weight[self.padding_idx].zero_()


class _Embeddings(nn.Module):
    def __init__(self, config: Any) -> None:
        super().__init__()
        hidden, pad = config.hidden_size, config.pad_token_id
        self.pad_token_id = pad
        self.word_embeddings = _Table(config.vocab_size, hidden, padding_idx=pad)
        self.position_embeddings = _Table(config.max_position_embeddings, hidden, padding_idx=pad)
        self.token_type_embeddings = _Table(config.type_vocab_size, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        # Saved in the official checkpoints (and in transformers' state dict): 0..max-1, and zeros.
        # Always made on the CPU (a few hundred integers): `arange` on the meta device would import
        # torch's symbolic-shapes machinery (0.3 s).
        positions = torch.arange(config.max_position_embeddings, device="cpu").expand((1, -1))
        self.register_buffer("position_ids", positions)
        self.register_buffer("token_type_ids", torch.zeros(positions.shape, dtype=torch.long, device="cpu"))

    def forward(self, input_ids: Tensor) -> Tensor:
        real = input_ids.ne(self.pad_token_id).int()
        positions = (torch.cumsum(real, dim=1).type_as(real) * real).long() + self.pad_token_id
        token_types = self.token_type_ids[:, :input_ids.shape[1]].expand_as(input_ids)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_types)
        return self.LayerNorm(x + self.position_embeddings(positions))


class _SelfAttention(nn.Module):
    def __init__(self, config: Any) -> None:
        super().__init__()
        hidden, heads = config.hidden_size, config.num_attention_heads
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not a multiple of the {heads} attention heads")
        self.heads, self.head_size = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        batch, length, hidden = x.shape

        def heads(t: Tensor) -> Tensor:  # (B, L, H) -> (B, heads, L, head_size)
            return t.view(batch, length, self.heads, self.head_size).transpose(1, 2)

        query, key, value = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        # Spelled out rather than F.scaled_dot_product_attention: the same operations in the same
        # order as transformers' eager attention (what its ClapModel runs), hence the same embeddings.
        scores = torch.matmul(query, key.transpose(2, 3)) * self.head_size ** -0.5
        if mask is not None:
            scores = scores + mask
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        return torch.matmul(weights, value).transpose(1, 2).reshape(batch, length, hidden)


class _DenseResidualNorm(nn.Module):
    """dense -> + residual -> layer norm (the `output` parts of a transformer layer)."""

    def __init__(self, inputs: int, config: Any) -> None:
        super().__init__()
        self.dense = nn.Linear(inputs, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, config: Any) -> None:
        super().__init__()
        self.self = _SelfAttention(config)
        self.output = _DenseResidualNorm(config.hidden_size, config)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        return self.output(self.self(x, mask), x)


class _Intermediate(nn.Module):
    def __init__(self, config: Any) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = _activation(config.hidden_act)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.dense(x))


class _Layer(nn.Module):
    def __init__(self, config: Any) -> None:
        super().__init__()
        self.attention = _Attention(config)
        self.intermediate = _Intermediate(config)
        self.output = _DenseResidualNorm(config.intermediate_size, config)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class _Encoder(nn.Module):
    def __init__(self, config: Any) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        for layer in self.layer:
            x = layer(x, mask)
        return x


class _Pooler(nn.Module):
    def __init__(self, config: Any) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.dense(x[:, 0]))


class RobertaTextModel(nn.Module):
    """RoBERTa encoder + pooler with transformers' `ClapTextModel` parameter names (module docstring)."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        if config.hidden_act != "gelu":
            raise ValueError(f"the text tower's hidden_act must be 'gelu' (RoBERTa's), got {config.hidden_act!r}")
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)
        self.pooler = _Pooler(config)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> TextModelOutput:
        """input_ids, attention_mask: (batch, tokens); mask 1 for real tokens, 0 for padding."""
        embedded = self.embeddings(input_ids)
        mask = None  # additive, over the keys: 0 for real tokens, the dtype's minimum for padding
        if attention_mask is not None and not bool(attention_mask.all()):
            padding = ~attention_mask.bool()[:, None, None, :]
            mask = torch.zeros(padding.shape, dtype=embedded.dtype, device=embedded.device)
            mask = mask.masked_fill(padding, torch.finfo(embedded.dtype).min)
        hidden = self.encoder(embedded, mask)
        return TextModelOutput(hidden, self.pooler(hidden))


class ClapProjection(nn.Module):
    """CLAP's projection into the joint space: linear -> activation -> linear (`linear1`, `linear2`)."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.linear1 = nn.Linear(config.hidden_size, config.projection_dim)
        self.activation = _activation(config.projection_hidden_act)
        self.linear2 = nn.Linear(config.projection_dim, config.projection_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.activation(self.linear1(x)))
