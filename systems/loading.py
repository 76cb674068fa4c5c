"""Building a system's separator: weights from the registry or the user, options in layers (the
system's defaults, then what a `dcase9 train` checkpoint says about itself, then the user's), the
model on its device, wrapped in the engine's `Separator`.

    from dcase9.systems.loading import load_separator
    separator = load_separator("baseline", checkpoint="baseline.ckpt")
    estimate = separator.separate(mixture, "a dog barks", sample_rate=16000)

`dcase9.api.load_separator` is the same with the engine's settings as keywords; `api.infer` and
`dcase9 infer` run the result over a data set's folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dcase9.systems.base import BuildContext, SystemSpec, build_model, weights_needed
from dcase9.systems.catalog import get_system
from dcase9.config import deep_merge
from dcase9.devices import resolve_device
from dcase9.engine import EngineOptions, Separator
from dcase9.errors import CheckpointError, ConfigError, Dcase9Error
from dcase9.hub import HubReference, checkpoint_location
from dcase9.models.checkpoints import state_dict_of
from dcase9.models.clap import find_laion_prefix
from dcase9.models.description import ENTRY, CheckpointDescription, describe_checkpoint
from dcase9.models.exported import is_export_folder
from dcase9.weights import TOKENIZER_WEIGHT, WeightResolver, weight_entry


def load_separator(system: str, *, checkpoint: str | Path | HubReference | None = None,
                   weights: dict[str, str | Path | HubReference] | None = None,
                   system_options: dict[str, Any] | None = None,
                   engine: EngineOptions | None = None, offline: bool = False,
                   trust_checkpoint: bool = False, audio_queries: bool = False) -> Separator:
    """The registered `system`, built and ready to separate.

    `checkpoint` replaces the system's main weights (its first registry entry): a checkpoint file, a
    folder of `dcase9 export`, or such a folder on the Hugging Face Hub (`hf://owner/name[@revision]`,
    through the cache and offline rules of the registry); `weights` maps any registry name to a local
    file or folder (or `hf://...`); `system_options` override the system's typed configuration
    (e.g. `{"n_fft": 1024}`, merged key by key over its defaults); `engine` holds the device,
    precision, batch size, chunking and resampling; `offline` forbids downloads; `trust_checkpoint`
    lets checkpoints run the pickled code they contain; `audio_queries` builds the CLAP audio tower too, for
    audio examples as queries (text queries need the text tower alone, which starts faster).

    A checkpoint written by `dcase9 train` describes itself (`dcase9.models.description`): its
    system options lie between the system's defaults and `system_options`, and the tokenizer it carries
    is used unless `weights` names one. Such a checkpoint loads only as a system that builds the
    same model at the same rate as the one it was trained for (baseline, 1 and 4 are one model).
    """
    spec = get_system(system)
    engine = engine or EngineOptions()
    engine.check()
    explicit = {name: checkpoint_location(path) for name, path in (weights or {}).items()}
    if checkpoint is not None:
        if not spec.weights:
            raise Dcase9Error(f"system '{spec.name}' uses no checkpoint")
        explicit[spec.weights[0]] = checkpoint_location(checkpoint)
    resolver = WeightResolver(explicit, offline=offline, progress=engine.progress,
                              roles={spec.weights[0]: "checkpoint"} if spec.weights else None)
    device = resolve_device(engine.device)  # an unusable device is refused before anything loads
    resolver.require(explicit)  # every path given is there, before anything is read
    context = BuildContext(device=device, options={}, weight=resolver, trust_checkpoint=trust_checkpoint,
                           query_towers="both" if audio_queries else "text")
    try:
        described = describe_given_checkpoint(spec, context, explicit)
        if described is not None and described.tokenizer_files and TOKENIZER_WEIGHT in spec.weights:
            resolver.embed(TOKENIZER_WEIGHT, described.tokenizer_files, f"{described.source} ({ENTRY}.tokenizer_files)")
        context.options = deep_merge(deep_merge(spec.options, described.options if described else {}),
                                     system_options or {})
        # Every registry weight the factory will ask for, checked at once before any is read or downloaded:
        # after the given checkpoint, which may be another system's, carry the tokenizer or lack a CLAP.
        resolver.require(registry_weights_needed(spec, context, explicit))
        model = build_model(spec, context)
        if described is not None:
            check_referenced_query_encoder(described, resolver)
    finally:
        context.checkpoints.clear()  # what the model did not take (optimizer state, ...) is freed now
        resolver.close()  # the embedded tokenizer is loaded by now
    identity = {"system": spec.name, "weights": resolver.identity(), "options": context.options}
    # The checkpoint a run used, by path (reports name a trained system by it; not in the identity, so
    # folders made before resume as they did).
    settings = {"weights": resolver.locations(), "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None}
    return Separator(model, system=spec.name, options=engine, segment_seconds=spec.segment_seconds,
                     needs_reference=spec.needs_reference, identity=identity, settings=settings)


def check_referenced_query_encoder(described: CheckpointDescription, resolver: WeightResolver) -> None:
    """An export whose query encoder is a registry weight was compared with one file of it: refuse
    another file under that name (`--weight NAME=...`), whose tensors may differ."""
    resolved = resolver.resolved.get(described.query_encoder_weight or "")
    expected = described.query_encoder_sha256
    if resolved is not None and resolved.sha256 and expected and resolved.sha256 != expected:
        raise CheckpointError(f"{described.source}: its query encoder is the registry's "
                              f"'{described.query_encoder_weight}' with sha256 {expected}, but {resolved.path} "
                              f"(sha256 {resolved.sha256}) was given for it; pass that file, or none")


def registry_weights_needed(spec: SystemSpec, context: BuildContext,
                            explicit: Mapping[str, Path | HubReference]) -> list[str]:
    """The registry weights the factory will ask for under the context's options (`weights_needed`), and,
    when the main checkpoint is given (read already, through `context`) without a CLAP query encoder, the
    optional weights (the standalone CLAP), as the factory decides (`query_encoder_prefix`, else laion's
    keys). A tokenizer the checkpoint carries is embedded by then. Nothing for a given checkpoint that
    cannot be read as one: the factory says what is wrong with it first."""
    needed = list(weights_needed(spec, context.options))
    main = spec.weights[0] if spec.weights else None
    if main is None or main not in explicit or main not in needed:
        return needed
    path = context.weight(main)
    if path.is_dir() and not is_export_folder(path):  # the folder weight a system takes (3-roundtrip's VAE), or
        return needed if weight_entry(main).kind == "folder" else []  # a mistake the factory names first
    try:
        weights = state_dict_of(context.read_checkpoint(path))
    except CheckpointError:
        return []
    if spec.optional_weights and not holds_query_encoder(weights, context.options.get("query_encoder_prefix")):
        needed += spec.optional_weights
    return needed


def holds_query_encoder(weights: Mapping[str, Any], prefix: str | None) -> bool:
    """Whether a checkpoint's state dict holds CLAP weights, under `prefix` or laion's keys."""
    if prefix:
        return any(key.startswith(prefix) for key in weights)
    try:
        find_laion_prefix(weights)
    except CheckpointError:
        return False
    return True


def describe_given_checkpoint(spec: SystemSpec, context: BuildContext,
                              explicit: dict[str, Path | HubReference]) -> CheckpointDescription | None:
    """What the user's checkpoint (`--checkpoint`, or `--weight` for the system's main weights) says
    about itself, read once through `context` (the factory reuses it); None for registry checkpoints
    and checkpoints made elsewhere."""
    if not spec.weights or spec.weights[0] not in explicit:
        return None
    path = context.weight(spec.weights[0])
    if path.is_dir() and not is_export_folder(path):  # a folder of weights (3-roundtrip's VAE), not a checkpoint
        return None
    try:
        checkpoint = context.read_checkpoint(path)
    except CheckpointError:  # not a torch checkpoint: the factory reads the file its own way, or says why not
        return None
    described = describe_checkpoint(checkpoint, str(path))
    if described is None or described.system is None:
        return described
    said = f"{path} was trained for system '{described.system}' (its {ENTRY} entry)"
    try:
        trained = get_system(described.system)
    except ConfigError:
        raise ConfigError(f"{said}, which is not a registered system (see `dcase9 systems`)") from None
    if (trained.factory, trained.sample_rate) != (spec.factory, spec.sample_rate):
        raise ConfigError(f"{said}, a model system '{spec.name}' does not build: infer with "
                          f"--system {trained.name}")
    return described
