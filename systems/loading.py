"""Building a system's separator: weights from the registry or the user, options in layers, the model
on its device, wrapped in the engine's `Separator`.

    from systems.loading import load_separator
    separator = load_separator("baseline", checkpoint="baseline.ckpt")
    estimate = separator.separate(mixture_16k, "a dog barks")

`toolkit.api.load_separator` is the same with the engine's settings as keywords; `api.separate` and
`dcase9 infer` run the result over a data set's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from systems.base import BuildContext, build_model
from systems.catalog import get_system
from toolkit.config import deep_merge
from toolkit.engine import EngineOptions, Separator, resolve_device
from toolkit.errors import Dcase9Error
from toolkit.weights import WeightResolver


def load_separator(system: str, *, checkpoint: str | Path | None = None,
                   weights: dict[str, str | Path] | None = None, options: dict[str, Any] | None = None,
                   engine: EngineOptions | None = None, offline: bool = False,
                   trust_checkpoint: bool = False) -> Separator:
    """The registered `system`, built and ready to separate.

    `checkpoint` replaces the system's main weights (its first registry entry); `weights` maps any
    registry name to a local file or folder; `options` override the system's typed configuration
    (e.g. `{"n_fft": 1024}`, merged key by key over its defaults); `engine` holds the device,
    precision, batch size, chunking and resampling; `offline` forbids downloads; `trust_checkpoint`
    lets checkpoints run the pickled code they contain.
    """
    spec = get_system(system)
    engine = engine or EngineOptions()
    engine.check()
    explicit = {name: Path(path) for name, path in (weights or {}).items()}
    if checkpoint is not None:
        if not spec.weights:
            raise Dcase9Error(f"system '{spec.name}' uses no checkpoint")
        explicit[spec.weights[0]] = Path(checkpoint)
    resolver = WeightResolver(explicit, offline=offline, progress=engine.progress)
    merged = deep_merge(spec.options, options or {})
    device = resolve_device(engine.device)  # an unusable device is refused before anything loads
    context = BuildContext(device=device, options=merged, weight=resolver, trust_checkpoint=trust_checkpoint)
    try:
        model = build_model(spec, context)
    finally:
        context.checkpoints.clear()  # what the model did not take (optimizer state, ...) is freed now
    identity = {"system": spec.name, "weights": resolver.identity(), "options": merged}
    settings = {"weights": {name: str(r.path) for name, r in resolver.resolved.items()}}
    return Separator(model, system=spec.name, options=engine, segment_seconds=spec.segment_seconds,
                     needs_reference=spec.needs_reference, identity=identity, settings=settings)
