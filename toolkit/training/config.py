"""The typed training configuration, the presets, and how a run's configuration is assembled.

A run's configuration is built in layers, each overriding the one before:

1. a preset (`toolkit/training/presets/<name>.yaml`, chosen with `--preset`, or by the config
   file's `extends:` key, else `baseline`); a preset may itself `extends:` another one;
2. a YAML file (`--config FILE`);
3. command-line flags (`--steps`, `--batch-size`, ...) and `--set key.path=value` assignments.

Mappings merge key by key; lists and scalars replace; a layer that names another `model.kind`
replaces the whole `model` section (one family's options mean nothing to another). Relative paths are taken from the current
working directory and stored absolute, so that the configuration saved with a run (`config.yaml`,
and inside every checkpoint) means the same thing when the run is resumed from elsewhere.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from dcase9.config import StrictModel, deep_merge, load_yaml_text, parse_model, read_yaml
from dcase9.errors import ConfigError
from dcase9.hub import HUB_SCHEME
from dcase9.models.clap import ClapArchitecture
from dcase9.weights import TOKENIZER_WEIGHT

PRESET_PACKAGE = "dcase9.training.presets"

# Our engine's precision names, accepted next to Lightning's own strings.
PRECISION_ALIASES = {"fp32": "32-true", "32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed",
                     "16": "16-mixed"}
LIGHTNING_PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")

# query_encoder.source values that are not files or registry names.
QUERY_SOURCE_AUTO = "auto"
QUERY_SOURCE_RANDOM = "random"
TINY_TOKENIZER = "tiny"
DEMO_TOKENIZER = "tiny-demo"  # the tiny tokenizer plus one token per word of the demo captions


class DatafileSpec(StrictModel):
    """One caption-audio file in the baseline's format `{"data": [{"wav": ..., "caption": ...}]}`.

    `weight` is how many times the file counts per epoch: 2 doubles its share (each of its items is
    drawn twice per epoch), 0.5 draws a random half of it each epoch. Relative `wav` paths are
    looked up under `audio_root` when given, else next to the JSON file, then in the working
    directory.
    """

    path: str
    weight: float = Field(1.0, gt=0)
    audio_root: str | None = None


class DataConfig(StrictModel):
    datafiles: list[DatafileSpec] = []
    sample_rate: int = Field(16000, gt=0)  # the model's rate; clips are resampled to it
    segment_seconds: float = Field(10.0, gt=0)
    min_clip_seconds: float = Field(0.5, ge=0)  # shorter clips are skipped (and another one drawn)
    batch_size: int = Field(16, ge=2)  # per device; the mixer takes interferers from the same batch
    num_workers: int = Field(4, ge=0)
    max_failed_draws: int = Field(100, ge=1)  # consecutive unusable clips before the run gives up

    @field_validator("datafiles", mode="before")
    @classmethod
    def _paths_as_specs(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"path": item} if isinstance(item, str) else item for item in value]
        return value


class MixingConfig(StrictModel):
    """The baseline's SegmentMixer (see dcase9.training.mixing)."""

    max_mix_num: int = Field(2, ge=2)  # sources per mixture, target included
    lower_db: int = -10
    higher_db: int = 10

    @model_validator(mode="after")
    def _ordered(self) -> MixingConfig:
        if self.lower_db > self.higher_db:
            raise ValueError(f"lower_db ({self.lower_db}) is above higher_db ({self.higher_db})")
        return self


class QueryEncoderConfig(StrictModel):
    """The frozen CLAP text encoder that turns captions into conditions.

    `source`: `auto` (the `query_encoder.model.*` weights of the `init` checkpoint when it has them,
    else the registry's laion CLAP file), a registry name, a file (laion `.pt` or Lightning `.ckpt`),
    or `random` (a random CLAP of `architecture`, seeded by `seed`: demos and tests only).
    `tokenizer`: a registry name, a folder with vocab.json + merges.txt, `tiny` (the tiny
    tokenizer of `dcase9.models.tiny`, written into the run folder) or `tiny-demo` (the same with
    one token per word of the demo captions).
    `training_dropout`: compute the training steps' conditions with the text tower's dropout active
    (RoBERTa's 0.1), as the official baseline and AudioSep trained: they pin Lightning 2.0.0, whose
    fit loop calls `train()` on the whole LightningModule and so undid the `eval()` their CLAP was
    built with (Lightning 2.2 and later keep submodules' modes). The presets that follow the
    baseline set it; off (the default, what runs saved without the key did) the conditions are
    those of inference. Validation and inference always run the encoder in eval mode. The dropout
    is drawn from a generator seeded by the run seed, the step and the rank, so resumed runs
    reproduce it.
    """

    source: str = QUERY_SOURCE_AUTO
    tokenizer: str = TOKENIZER_WEIGHT
    architecture: ClapArchitecture = ClapArchitecture()
    seed: int = 0
    training_dropout: bool = False


# The optimizer keeps its settings in float32 tensors: a larger value is an OverflowError deep in a step.
FLOAT32_MAX = 3.4028234663852886e38
Beta = Annotated[float, Field(ge=0, lt=1)]  # Adam's moment decay rates


class OptimizerConfig(StrictModel):
    name: Literal["adamw", "adam"] = "adamw"
    lr: float = Field(1e-3, ge=0)
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    amsgrad: bool = True

    @field_validator("lr", "eps", "weight_decay")
    @classmethod
    def _fits_float32(cls, value: float) -> float:
        if value > FLOAT32_MAX:
            raise ValueError(f"{value:g} is more than a float32 holds ({FLOAT32_MAX:.3g}), where the optimizer keeps it")
        return value


class ScheduleConfig(StrictModel):
    """Learning-rate multiplier per optimizer step (see dcase9.training.schedules)."""

    kind: Literal["constant_warm_up", "linear_warm_up", "constant"] = "constant_warm_up"
    warm_up_steps: int = Field(10000, ge=0)
    reduce_lr_steps: int = Field(1_000_000, ge=1)  # linear_warm_up only: x0.9 every this many steps


class TrainerConfig(StrictModel):
    """How Lightning runs the training (devices, precision, length)."""

    max_steps: int | None = Field(200_000, ge=1)
    max_epochs: float | None = Field(None, gt=0)  # epochs of the weighted training list; sets max_steps
    accelerator: str = "auto"  # auto, cpu, gpu, cuda, mps
    devices: int | str | list[int] = "auto"
    num_nodes: int = Field(1, ge=1)
    strategy: str = "auto"  # auto: DDP when there is more than one process
    precision: str = "32-true"
    sync_batchnorm: bool = True
    gradient_clip_val: float | None = Field(None, gt=0)
    log_every_n_steps: int = Field(50, ge=1)
    progress_bar: bool = True

    @field_validator("precision")
    @classmethod
    def _known_precision(cls, value: str) -> str:
        value = PRECISION_ALIASES.get(str(value), str(value))
        if value not in LIGHTNING_PRECISIONS:
            raise ValueError(f"unknown precision {value!r}; use fp32, bf16, fp16 or one of "
                             f"{', '.join(LIGHTNING_PRECISIONS)}")
        return value

    @model_validator(mode="after")
    def _a_length(self) -> TrainerConfig:
        if self.max_steps is None and self.max_epochs is None:
            raise ValueError("set trainer.max_steps or trainer.max_epochs")
        return self


class ValidationConfig(StrictModel):
    """Periodic validation on a DCASE-format validation folder with the official metrics."""

    data: str | None = None  # folder; None: no validation
    every_steps: int | None = Field(10000, ge=1)
    limit: int | None = Field(None, ge=1)  # a fixed random subset of this many mixtures
    batch_size: int = Field(4, ge=1)
    sanity_steps: int = Field(1, ge=0)  # validation batches run before training, to fail early


class CheckpointConfig(StrictModel):
    every_steps: int | None = Field(20000, ge=1)  # step=<N>.ckpt (the baseline's cadence)
    last_every_steps: int = Field(1000, ge=1)  # last.ckpt, for resuming after a crash
    keep: int | None = Field(None, ge=1)  # keep only the newest N step checkpoints (None: all)


class ModelSection(BaseModel):
    """`kind` picks a trainable model family (dcase9.training.models); the other keys are its options."""

    model_config = {"extra": "allow"}

    kind: str = "resunet30"


class TrainConfig(StrictModel):
    description: str = ""
    system: str | None = None  # the `dcase9 infer --system` that loads the result
    seed: int = 1234
    data: DataConfig = DataConfig()
    mixing: MixingConfig = MixingConfig()
    model: ModelSection = ModelSection()
    query_encoder: QueryEncoderConfig = QueryEncoderConfig()
    loss: str | None = None  # None: the model family's own loss
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    trainer: TrainerConfig = TrainerConfig()
    validation: ValidationConfig = ValidationConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    init: str | None = None  # checkpoint file, registry name, or folder of `dcase9 export` (DIR, hf://owner/name)
    weights: dict[str, str] = {}  # registry name -> local file or folder (or hf://owner/name)
    offline: bool = False

    @model_validator(mode="after")
    def _known_model_and_loss(self) -> TrainConfig:
        from dcase9.training.models import LOSSES, model_kind

        kind = model_kind(self.model.kind)  # raises ValueError naming the known kinds
        try:
            kind.options.model_validate(self.model.model_extra or {})
        except ValidationError as exc:
            problems = "; ".join(f"model.{'.'.join(str(p) for p in e['loc'])}: "
                                 f"{'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
                                 for e in exc.errors())
            raise ValueError(f"invalid options for model kind '{self.model.kind}': {problems}") from None
        if self.loss is not None and self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; known: {', '.join(LOSSES)}")
        return self

    def model_options(self) -> StrictModel:
        """The model family's typed options (validated already)."""
        from dcase9.training.models import model_kind

        return model_kind(self.model.kind).options.model_validate(self.model.model_extra or {})

    def segment_samples(self) -> int:
        return int(round(self.data.segment_seconds * self.data.sample_rate))


# ------------------------------------------------------------------------------------------------
# Presets and assembly


def preset_names() -> list[str]:
    folder = resources.files(PRESET_PACKAGE)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_preset(name: str) -> dict[str, Any]:
    """A preset as a plain mapping, with its `extends:` chain resolved."""
    return _resolve_extends(_load_preset_file(name), seen=(name,))


def _load_preset_file(name: str) -> dict[str, Any]:
    resource = resources.files(PRESET_PACKAGE).joinpath(f"{name}.yaml")
    if not resource.is_file():
        raise ConfigError(f"unknown training preset {name!r}; known presets: {', '.join(preset_names())}")
    data = load_yaml_text(resource.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"preset {name!r} is not a mapping")
    return data


def _resolve_extends(data: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    data = dict(data)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if parent in seen:
        raise ConfigError(f"presets extend each other in a loop: {' -> '.join(seen + (parent,))}")
    return merge_layer(_resolve_extends(_load_preset_file(parent), seen + (parent,)), data)


def merge_layer(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """One configuration layer on top of the previous ones (see the module docstring)."""
    new_model, old_model = layer.get("model"), base.get("model")
    if isinstance(new_model, dict) and "kind" in new_model and isinstance(old_model, dict) \
            and new_model["kind"] != old_model.get("kind", ModelSection().kind):
        base = {**base, "model": {}}
    return deep_merge(base, layer)


def assemble_config(*, preset: str | None = None, config_file: str | Path | None = None,
                    overrides: list[dict[str, Any]] | None = None,
                    base: dict[str, Any] | None = None, cwd: Path | None = None) -> TrainConfig:
    """Build and validate a run's configuration from its layers (see the module docstring).

    `base` replaces the preset layer (a resumed run starts from its saved configuration).
    """
    source = "training configuration"
    file_layer: dict[str, Any] = {}
    if config_file is not None:
        loaded = read_yaml(config_file)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{config_file}: expected a mapping of settings")
        file_layer = dict(loaded or {})
        source = str(config_file)
    extends = file_layer.pop("extends", None)
    if base is not None:
        layers = dict(base)
    else:
        if preset is not None and extends is not None and preset != extends:
            raise ConfigError(f"--preset {preset} conflicts with `extends: {extends}` in {config_file}")
        layers = read_preset(preset or extends or "baseline")
    layers = merge_layer(layers, file_layer)
    for override in overrides or []:
        layers = merge_layer(layers, override)
    text = Path(config_file).read_text(encoding="utf-8") if config_file is not None else None
    config = parse_model(layers, TrainConfig, source=source, text=text)
    return absolutise_paths(config, cwd or Path.cwd())


def absolutise_paths(config: TrainConfig, cwd: Path) -> TrainConfig:
    """Relative file and folder paths made absolute against `cwd`; registry names stay names."""
    from dcase9.weights import weight_entries

    registry = set(weight_entries())

    def absolute(value: str) -> str:
        if value.startswith(HUB_SCHEME):  # a folder of `dcase9 export` on the Hub, named, not a path
            return value
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else (cwd / path).resolve())

    def file_or_name(value: str | None, keywords: tuple[str, ...] = ()) -> str | None:
        if value is None or value in keywords or value in registry:
            return value
        return absolute(value)

    updated = config.model_copy(deep=True)
    for spec in updated.data.datafiles:
        spec.path = absolute(spec.path)
        if spec.audio_root is not None:
            spec.audio_root = absolute(spec.audio_root)
    if updated.validation.data is not None:
        updated.validation.data = absolute(updated.validation.data)
    updated.init = file_or_name(updated.init)
    updated.query_encoder.source = file_or_name(updated.query_encoder.source,
                                                (QUERY_SOURCE_AUTO, QUERY_SOURCE_RANDOM))  # type: ignore[assignment]
    updated.query_encoder.tokenizer = file_or_name(updated.query_encoder.tokenizer,
                                                   (TINY_TOKENIZER, DEMO_TOKENIZER))  # type: ignore[assignment]
    updated.weights = {name: absolute(path) for name, path in updated.weights.items()}
    return updated


def config_as_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain types only (str, int, float, bool, None, lists, dicts): safe in a weights-only checkpoint."""
    data = config.model_dump(mode="json")
    data["model"] = {"kind": config.model.kind, **config.model_options().model_dump(mode="json")}
    return data


def dump_train_config(config: TrainConfig) -> str:
    return yaml.safe_dump(config_as_dict(config), sort_keys=False, allow_unicode=True)
