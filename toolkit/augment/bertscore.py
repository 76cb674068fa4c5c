"""BERTScore F1 of candidate captions against the original, as the `bert-score` package defines it.

We use the package's own functions (`get_model`, `bert_cos_score_idf`, its default model per
language and default layer per model), idf weighting off and baseline rescaling off by default
(seed 000 reports raw scores around 0.85). Two things differ from calling `bert_score.score`, both
to keep the package's intended scores under transformers 5:

* RoBERTa and GPT-2 tokenisers. The package asks for a leading space (`add_prefix_space=True`) in
  `tokenizer.encode`, which transformers 5 ignores, so the first word loses its "Ġ" and the scores
  drift. We hand the package a tokenizer created with `add_prefix_space=True`, and check it.
* Tokenizers without a `model_max_length` report a huge sentinel that the package passes on as the
  truncation length, which overflows in the Rust tokenizer. We cap it at the model's position limit
  (512 for roberta-large, as transformers 4 set it).

Empty candidates or references also crash the package under transformers 5; the pipeline filters
them out before scoring and `score` refuses them.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcase9.devices import resolve_device
from dcase9.augment.config import BertScoreConfig
from dcase9.errors import ConfigError
from dcase9.lazy import require

_HUGE = 1_000_000


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float


def default_layer(model: str) -> int | None:
    """bert-score's layer for `model` (17 for roberta-large), or None if it has none."""
    utils = require("bert_score.utils", extra="augment", purpose="BERTScore selection")
    return utils.model2layers.get(model)


def _is_byte_level(tokenizer: Any) -> bool:
    """The same test bert-score applies before it asks for a prefix space."""
    from transformers import GPT2Tokenizer, RobertaTokenizer

    return isinstance(tokenizer, (GPT2Tokenizer, RobertaTokenizer))


def load_tokenizer(source: str) -> Any:
    """The tokenizer bert-score would use, made to tokenise as the package intends."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, use_fast=False)
    if _is_byte_level(tokenizer):
        tokenizer = AutoTokenizer.from_pretrained(source, use_fast=False, add_prefix_space=True)
        probe = "sound"
        if tokenizer.encode(probe, add_special_tokens=False) != tokenizer.encode(" " + probe, add_special_tokens=False):
            raise ConfigError(f"{source}: cannot make this tokenizer add a prefix space; BERTScore would "
                              f"differ from the bert-score package's scores")
    return tokenizer


def _position_limit(model: Any) -> int:
    config = model.config
    limit = getattr(config, "max_position_embeddings", None) or 512
    if "roberta" in getattr(config, "model_type", "") or getattr(config, "model_type", "") in ("camembert",):
        limit -= (getattr(config, "pad_token_id", 1) or 1) + 1  # positions start after the padding index
    return min(limit, 512)


class BertScorer:
    """Loads the model once; `score(candidates, references)` returns one `Scores` per pair."""

    def __init__(self, config: BertScoreConfig):
        self.config = config
        utils = require("bert_score.utils", extra="augment", purpose="BERTScore selection")
        import torch
        from transformers.utils import logging as hf_logging

        self._utils, self._torch = utils, torch
        self.model_name = config.model
        if config.model_path is not None:
            path = Path(config.model_path)
            if not (path / "config.json").is_file():
                raise ConfigError(f"{path}: not a model folder (no config.json); --bertscore-model-path must "
                                  f"point at a saved transformers model such as a download of {config.model}")
            self.source = str(path)
        else:
            self.source = config.model
        layers = config.num_layers if config.num_layers is not None else utils.model2layers.get(config.model)
        if layers is None:
            raise ConfigError(f"bert-score has no default layer for '{config.model}'; choose one with "
                              f"--bertscore-layer")
        self.num_layers = int(layers)
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = load_tokenizer(self.source)
            self.model = utils.get_model(self.source, self.num_layers, False)
        except OSError as exc:
            raise ConfigError(
                f"cannot load the BERTScore model '{self.source}' ({exc}). Offline, point "
                f"--bertscore-model-path at a local copy (e.g. made with `hf download {config.model} "
                f"--local-dir DIR`), or fill the Hugging Face cache and set HF_HUB_OFFLINE=1") from exc
        except AssertionError as exc:  # the package checks the layer number with assert
            raise ConfigError(f"--bertscore-layer {self.num_layers} does not fit '{self.source}': {exc}") from exc
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        if self.tokenizer.model_max_length > _HUGE:
            self.tokenizer.model_max_length = _position_limit(self.model)
        self.device = str(resolve_device(config.device))
        self.model.to(self.device)
        self._baseline = self._load_baseline() if config.rescale_with_baseline else None

    @property
    def fingerprint(self) -> str:
        """Identifies how scores were computed; stored with every scored candidate."""
        return f"{self.model_name}/L{self.num_layers}" + ("/rescaled" if self._baseline is not None else "")

    def _load_baseline(self) -> tuple[float, float, float]:
        """The package's precomputed baseline (P, R, F) for this model, language and layer."""
        package_dir = Path(self._utils.__file__).parent
        path = package_dir / "rescale_baseline" / self.config.lang / f"{self.model_name}.tsv"
        if not path.is_file():
            raise ConfigError(f"bert-score has no rescaling baseline for '{self.model_name}' in language "
                              f"'{self.config.lang}' ({path} not found)")
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        by_layer = {row[0]: row for row in rows[1:] if row}  # header LAYER,P,R,F; one row per layer
        row = by_layer.get(str(self.num_layers))
        if row is None:
            raise ConfigError(f"{path}: no baseline for layer {self.num_layers}")
        return float(row[1]), float(row[2]), float(row[3])

    def token_ids(self, sentence: str) -> list[int]:
        """The ids the package embeds for `sentence` (with our tokenizer)."""
        return list(self._utils.sent_encode(self.tokenizer, sentence))

    def score(self, candidates: list[str], references: list[str]) -> list[Scores]:
        if len(candidates) != len(references):
            raise ValueError("candidates and references differ in number")
        if not candidates:
            return []
        for text in (*candidates, *references):
            if not text.strip():
                raise ValueError("BERTScore of an empty sentence is undefined; filter it out first")
        idf = defaultdict(lambda: 1.0)  # idf off, as bert_score.score(idf=False)
        idf[self.tokenizer.sep_token_id] = 0
        idf[self.tokenizer.cls_token_id] = 0
        preds = self._utils.bert_cos_score_idf(self.model, references, candidates, self.tokenizer, idf,
                                               verbose=False, device=self.device,
                                               batch_size=self.config.batch_size).cpu()
        if self._baseline is not None:
            base = self._torch.tensor(self._baseline)
            preds = (preds - base) / (1 - base)
        return [Scores(float(p), float(r), float(f)) for p, r, f in preds.tolist()]
