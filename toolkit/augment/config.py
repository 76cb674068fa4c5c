"""Typed settings of a caption-augmentation run (`dcase9 augment`).

A run is described by one `AugmentConfig`. The command line builds it from its options, an optional
YAML file (`--config`) and the `config.yaml` an earlier run left in the output folder; it is saved
back there so that re-running the command (or `--reselect`) knows what the logs belong to.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from dcase9.config import StrictModel

#: Hub id of the local LLM used by seed 000 (Phi-2), the default of the `hf` backend.
DEFAULT_HF_MODEL = "microsoft/phi-2"
#: bert-score's model for English (`lang="en"`); its default layer (17) comes from the package.
DEFAULT_BERTSCORE_MODEL = "roberta-large"
#: Phi-2's instruction format; `{prompt}` is replaced by the rendered prompt.
PHI2_PROMPT_FORMAT = "Instruct: {prompt}\nOutput:"


def normalise_dataset_name(name: str) -> str:
    """'WavCaps_AudioSet' and 'wavcaps audioset' both become 'wavcaps-audioset'."""
    return re.sub(r"[\s_]+", "-", name.strip().lower())


class InputSpec(StrictModel):
    """One caption file in the baseline's training format and the dataset it comes from."""

    captions: Path
    dataset: str = Field(min_length=1, description="Name used in reports and to pick the DDP.")

    @field_validator("dataset")
    @classmethod
    def _normalise(cls, value: str) -> str:
        return normalise_dataset_name(value)


class BackendConfig(StrictModel):
    """Which LLM answers the prompts, and how it is called."""

    kind: Literal["hf", "openai"] = "hf"
    model: str | None = Field(
        default=None,
        description="hf: hub id or local folder (default microsoft/phi-2); openai: model name (required).")
    # OpenAI API and OpenAI-compatible servers (vLLM, llama.cpp, Ollama).
    base_url: str | None = None
    api_key_env: str = Field(default="OPENAI_API_KEY",
                             description="Name of the environment variable holding the key (never the key).")
    concurrency: int = Field(default=8, ge=1, le=1024)
    requests_per_minute: float | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=60.0, gt=0,
                             description="Seconds one attempt may take in all: connect, wait, read the whole answer.")
    max_retries: int = Field(default=4, ge=0, description="The openai client's own retries (429, 5xx, timeouts).")
    retry_attempts: int = Field(default=3, ge=0,
                                description="Our retries after the client gives up on a retryable error.")
    retry_backoff_s: float = Field(default=2.0, ge=0, description="First wait of our retries; doubles, at most 60 s.")
    max_consecutive_failures: int = Field(default=20, ge=1,
                                          description="Stop the run after this many failed requests in a row.")
    # Local transformers causal LM.
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    batch_size: int = Field(default=8, ge=1)
    prompt_format: str = PHI2_PROMPT_FORMAT
    trust_remote_code: bool = False

    @field_validator("prompt_format")
    @classmethod
    def _has_prompt(cls, value: str) -> str:
        if "{prompt}" not in value:
            raise ValueError("must contain '{prompt}'")
        return value

    def resolved_model(self) -> str:
        if self.model:
            return self.model
        if self.kind == "hf":
            return DEFAULT_HF_MODEL
        raise ValueError("the openai backend needs a model name (--model)")

    def fingerprint(self) -> dict[str, str]:
        """What decides the answers (part of each request's identity); endpoints and speed settings are not."""
        out = {"kind": self.kind, "model": self.resolved_model()}
        if self.kind == "hf":
            out["prompt_format"] = self.prompt_format
        return out


class SamplingConfig(StrictModel):
    """Sampling settings. Each request gets its own seed derived from `seed` and the request."""

    temperature: float = Field(default=0.8, ge=0, le=2)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_new_tokens: int = Field(default=256, ge=8)
    seed: int = Field(default=0, ge=0)


class FilterConfig(StrictModel):
    """Rule-based filtering of parsed candidates (before BERTScore)."""

    min_words: int = Field(default=3, ge=1, description="Fewer words: 'incomplete'.")
    max_words: int = Field(default=40, ge=1, description="More words: 'too_long'.")

    @model_validator(mode="after")
    def _ordered(self) -> FilterConfig:
        if self.max_words < self.min_words:
            raise ValueError("max_words must be >= min_words")
        return self


class BertScoreConfig(StrictModel):
    """Selection of candidates by BERTScore F1 against the original caption (seed 000)."""

    model: str = Field(default=DEFAULT_BERTSCORE_MODEL,
                       description="Model name as bert-score knows it (picks the default layer and baseline).")
    model_path: Path | None = Field(default=None, description="Local folder with that model, for offline use.")
    num_layers: int | None = Field(default=None, ge=0,
                                      description="Layer whose embeddings are compared; default from bert-score.")
    threshold: float | None = Field(
        default=None, ge=0, le=1,
        description="Applies to every prompt; None: each prompt's own selection_threshold (DDPs and DIP 0.7, "
                    "seed 000; gpt4-keywords none, seed 003).")
    batch_size: int = Field(default=64, ge=1)
    device: str = "auto"
    rescale_with_baseline: bool = False
    lang: str = "en"


class AugmentConfig(StrictModel):
    """Everything a run needs; saved as OUT_DIR/config.yaml."""

    inputs: list[InputSpec] = Field(min_length=1)
    tags: list[Path] = Field(default_factory=list, description="JSON/CSV files mapping clips to labels.")
    prompts: list[str] = Field(default_factory=lambda: ["ddp"], min_length=1,
                               description="'ddp' (per dataset), a prompt id, or a prompt YAML file.")
    prompt_dirs: list[Path] = Field(default_factory=list)
    n_captions: int | None = Field(default=None, ge=1, le=20,
                                      description="Captions asked per request; default from each prompt.")
    backend: BackendConfig = Field(default_factory=BackendConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    filters: FilterConfig = Field(default_factory=FilterConfig)
    bertscore: BertScoreConfig = Field(default_factory=BertScoreConfig)

    @model_validator(mode="after")
    def _openai_needs_model(self) -> AugmentConfig:
        if self.backend.kind == "openai" and not self.backend.model:
            raise ValueError("backend.model: the openai backend needs a model name (--model)")
        return self

    def input_paths(self) -> dict[str, Path | None]:
        """What a run reads, by label (for `dcase9.files.check_no_overlap`)."""
        paths: dict[str, Path | None] = {f"inputs[{k}].captions": spec.captions for k, spec in enumerate(self.inputs)}
        paths.update({f"tags[{k}]": path for k, path in enumerate(self.tags)})
        paths.update({f"prompt_dirs[{k}]": path for k, path in enumerate(self.prompt_dirs)})
        paths.update({f"prompts[{k}]": Path(p) for k, p in enumerate(self.prompts) if p.endswith((".yaml", ".yml"))})
        paths["bertscore.model_path"] = self.bertscore.model_path
        return paths

    def resolve_paths(self, base: Path) -> AugmentConfig:
        """Make relative paths absolute against `base` (the folder of the file they were read from)."""

        def fix(path: Path) -> Path:
            return path if path.is_absolute() else (base / path).resolve()

        data = self.model_copy(deep=True)
        for spec in data.inputs:
            spec.captions = fix(spec.captions)
        data.tags = [fix(p) for p in data.tags]
        data.prompt_dirs = [fix(p) for p in data.prompt_dirs]
        data.prompts = [str(fix(Path(p))) if p.endswith((".yaml", ".yml")) else p for p in data.prompts]
        if data.bertscore.model_path is not None:
            data.bertscore.model_path = fix(data.bertscore.model_path)
        return data
