"""Reading checkpoint files safely and loading their weights completely.

Checkpoints are pickles, and unpickling can run arbitrary code. We never do that unless the user
says `trust=True` (`--trust-checkpoint` on the command line):

1. `torch.load(weights_only=True)`, with the few plain containers Lightning checkpoints hold mapped
   to inert stand-ins;
2. if the file references other globals (custom classes in `hyper_parameters`, say), a restricted
   unpickler that rebuilds tensors and plain containers and turns every other global into an inert
   `OpaqueObject` placeholder. No module is imported and no pickled callable is run, so the weights
   load while whatever else the file holds stays inert. The names replaced are reported.

A plain Python pickle (`pickle.dump`, not `torch.save`) has no such safe reading: it is refused
unless trusted. Weights are loaded only when every tensor is a finite number (`require_finite`):
a NaN or an infinity in a checkpoint (a training run that diverged) would otherwise surface as
NaN outputs blamed on the input.
"""

from __future__ import annotations

import collections
import fnmatch
import io
import pickle
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

from dcase9.errors import CheckpointError


T = TypeVar("T")

# How a user lets a checkpoint run its pickled code: the flag of `dcase9 infer`, `score` and `train`,
# the keyword of the Python API (`dcase9.api`), the key of a submission.yaml system's `parameters`.
TRUST_HINT = ("If you trust its source, pass --trust-checkpoint (Python: trust_checkpoint=True; submission.yaml: "
              "parameters.trust_checkpoint: true).")


class _AttributeDict(dict):
    """Inert stand-in for Lightning's AttributeDict (a plain dict subclass)."""


# Plain types Lightning (and argparse-based training scripts) put into checkpoints, mapped to
# inert stand-ins under the names they are pickled with.
_LIGHTNING_PLAIN_GLOBALS: list[tuple[Any, str]] = [
    (_AttributeDict, "lightning.fabric.utilities.data.AttributeDict"),
    (_AttributeDict, "lightning_fabric.utilities.data.AttributeDict"),
    (_AttributeDict, "pytorch_lightning.utilities.parsing.AttributeDict"),
    (_AttributeDict, "lightning.pytorch.utilities.parsing.AttributeDict"),
]


class OpaqueObject:
    """Placeholder for a pickled object whose class we refuse to import.

    It accepts any constructor arguments and state, keeps them for inspection, and does nothing else.
    """

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> OpaqueObject:
        obj = super().__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> OpaqueObject:
        return _opaque_class(f"{self.qualname}(...)")(*args)

    def __repr__(self) -> str:
        return f"<opaque {self.qualname}>"


def _opaque_class(qualname: str) -> type[OpaqueObject]:
    return type("Opaque", (OpaqueObject,), {"qualname": qualname})


_SAFE_BUILTINS = {"list", "dict", "set", "frozenset", "tuple", "int", "float", "str", "bytes",
                  "bool", "complex", "slice", "bytearray"}
_SAFE_TORCH_UTILS = {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3",
                     "_rebuild_parameter", "_rebuild_parameter_with_state",
                     "_rebuild_device_tensor_from_numpy", "_rebuild_meta_tensor_no_storage"}


class _RestrictedUnpickler(pickle.Unpickler):
    replaced: set[str]

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(__import__("builtins"), name)
        if module == "collections" and name in {"OrderedDict", "defaultdict", "deque"}:
            return getattr(collections, name)
        if module == "torch._utils" and name in _SAFE_TORCH_UTILS:
            return getattr(torch._utils, name)
        if module == "torch" and name in {"Size", "device"}:
            return getattr(torch, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module == "torch.nn.parameter" and name == "Parameter":
            return torch.nn.Parameter
        qualname = f"{module}.{name}"
        _RestrictedUnpickler.replaced.add(qualname)
        return _opaque_class(qualname)


class _RestrictedPickleModule:
    """Passed to torch.load as `pickle_module`: torch subclasses our Unpickler for storages."""

    Unpickler = _RestrictedUnpickler
    load = staticmethod(pickle.load)
    __name__ = "dcase9_restricted_pickle"


def read_checkpoint(path: str | Path, *, trust: bool = False) -> dict[str, Any]:
    """Read a torch checkpoint file (Lightning `.ckpt`, laion `.pt`, plain state dict) on the CPU, or a
    folder of `dcase9 export` (`dcase9.models.exported.read_export`: the same mapping, never unpickled).

    With `trust=False` (the default) no pickled code is executed; see the module docstring.
    Files in torch's zip format (everything `torch.save` wrote since PyTorch 1.6) are memory-mapped:
    a tensor's bytes are read when it is first used, so parts nobody uses (an optimizer state, the
    CLAP audio tower of a text-queried system) cost no reading or memory.
    """
    path = Path(path)
    if path.is_dir():  # a folder of `dcase9 export`: JSON and safetensors, nothing to unpickle
        from dcase9.models.exported import read_export

        return read_export(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    mmap = zipfile.is_zipfile(path)  # the legacy (pre-1.6) format cannot be mapped
    if not mmap and _is_plain_pickle(path):
        if not trust:
            raise CheckpointError(f"{path}: a plain Python pickle (pickle.dump), not a torch checkpoint (torch.save): "
                                  f"it cannot be read without running the code it may hold. {TRUST_HINT}")
        return _read_trusted_pickle(path)
    if trust:
        try:
            return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
        except Exception as exc:  # as below: a damaged file raises many types
            raise CheckpointError(f"{path}: not a readable torch checkpoint ({_first_line(exc)})") from exc
    try:
        with torch.serialization.safe_globals(_LIGHTNING_PLAIN_GLOBALS), warnings.catch_warnings():
            # torch warns of a protocol its reader may not support before failing with its own message
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc) and "global" not in str(exc).lower():
            # Not damage but something the weights-only reader does not take (e.g. a legacy file
            # pickled with protocol 4); torch's message would advise its own weights_only=False.
            raise CheckpointError(f"{path}: torch's weights-only reader cannot read it "
                                  f"({_weights_only_reason(str(exc))}). {TRUST_HINT}") from exc
        if "global" not in str(exc).lower():
            raise CheckpointError(f"{path}: not a readable torch checkpoint ({_first_line(exc)})") from exc
    except Exception as exc:  # torch raises many types on damaged files (IndexError, RuntimeError...)
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({_first_line(exc)})") from exc
    _RestrictedUnpickler.replaced = set()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap,
                         pickle_module=_RestrictedPickleModule)
    except Exception as exc:  # any failure here means the file is not a plain checkpoint
        raise CheckpointError(
            f"{path}: the checkpoint holds pickled objects that cannot be read without running "
            f"their code ({_first_line(exc)}). {TRUST_HINT}"
        ) from exc
    if _RestrictedUnpickler.replaced:
        warnings.warn(
            f"{path}: left {len(_RestrictedUnpickler.replaced)} pickled object type(s) inert instead "
            f"of importing them: {', '.join(sorted(_RestrictedUnpickler.replaced))}",
            stacklevel=2,
        )
    return obj


class _NoGlobalsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"global {module}.{name}")


def _is_plain_pickle(path: Path) -> bool:
    """A pickle stream (protocol 2 or later) that is not torch's legacy format, which starts with a
    pickled magic number: `torch.load` cannot read it either way. Read without any global, so no
    code runs; a plain pickle's first object stops at its first global."""
    with open(path, "rb") as handle:
        if handle.read(1) != pickle.PROTO:
            return False
        handle.seek(0)
        try:
            first = _NoGlobalsUnpickler(handle).load()
        except Exception:  # a global, a persistent id, or damage: not the legacy format's first object
            return True
    return first != torch.serialization.MAGIC_NUMBER


class _CpuPickleUnpickler(pickle.Unpickler):
    """Full unpickling (trusted files only), with the tensors' storages loaded onto the CPU: a plain
    pickle of tensors rebuilds each storage with `torch.load`, on the device it was saved from."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch.storage" and name == "_load_from_bytes":
            return lambda data: torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        return super().find_class(module, name)


def _read_trusted_pickle(path: Path) -> Any:
    with open(path, "rb") as handle:
        try:
            return _CpuPickleUnpickler(handle).load()
        except Exception as exc:  # a damaged pickle raises many types
            raise CheckpointError(f"{path}: not a readable pickle ({_first_line(exc)})") from exc


def _weights_only_reason(text: str) -> str:
    """What torch's weights-only reader objected to, without its advice to rerun `torch.load` with
    `weights_only=False` (a keyword the user does not control; `TRUST_HINT` says what they can do)."""
    text = text.split("WeightsUnpickler error:", 1)[-1].replace("Weights only load failed.", "")
    lines = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line]
    return lines[0] if lines else "no reason given"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def state_dict_of(checkpoint: Mapping[str, Any]) -> Mapping[str, torch.Tensor]:
    """The weights of a checkpoint: Lightning's `state_dict`, laion's `state_dict`/`model`, or the dict itself."""
    for key in ("state_dict", "model", "module"):
        inner = checkpoint.get(key) if isinstance(checkpoint, Mapping) else None
        if isinstance(inner, Mapping) and inner and all(isinstance(k, str) for k in inner):
            return inner
    if isinstance(checkpoint, Mapping) and any(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return checkpoint
    raise CheckpointError("the checkpoint holds no state dict (looked for 'state_dict', 'model', 'module')")


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under `prefix` (e.g. 'ss_model.'), with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def non_finite_keys(tensors: Mapping[str, Any]) -> list[str]:
    """The keys of the tensors that hold a NaN or an infinity, in order: one pass over each
    floating-point tensor and no copy of it (integer tensors are always finite). Every reduction is
    queued before any is read, so tensors on an accelerator cost one synchronisation, not one each."""
    flags = [(key, torch.isfinite(value).all()) for key, value in tensors.items()
             if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex())
             and not value.is_meta]
    return [key for key, finite in flags if not bool(finite)]


def describe_non_finite(keys: list[str], total: int) -> str:
    """'3 of 40 tensors hold NaN or infinite values (a, b, c)': the first few keys and a count of the rest."""
    shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
    return f"{len(keys)} of {total} tensors hold NaN or infinite values ({shown})"


def require_finite(tensors: Mapping[str, Any], *, source: str) -> None:
    """Refuse weights that are not all finite numbers, naming `source` (the file), how many and which."""
    bad = non_finite_keys(tensors)
    if bad:
        raise CheckpointError(f"{source}: {describe_non_finite(bad, len(tensors))}. These weights are broken (by a "
                              "training run that diverged?); refusing to load them")


def load_weights(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *,
                 source: str, ignore: Iterable[str] = (), assign: bool = False) -> None:
    """Load `state_dict` into `module`, refusing any partial load.

    Keys matching a glob in `ignore` (e.g. fixed DFT tensors a checkpoint carries) are dropped
    first. Every other missing, unexpected or mis-shaped key is named in the error, and so are
    tensors with NaN or infinite values (`require_finite`).
    `assign=True` makes the given tensors the module's own (cast to the module's dtypes) instead of
    copying them: for modules built on the meta device (`empty_module`), which skips both the random
    initialisation and a copy of every weight.
    """
    ignore = tuple(ignore)
    wanted = module.state_dict()
    given = {k: v for k, v in state_dict.items()
             if not any(fnmatch.fnmatchcase(k, pattern) for pattern in ignore)}
    missing = sorted(k for k in wanted if k not in given)
    unexpected = sorted(k for k in given if k not in wanted)
    misshaped = sorted(f"{k}: checkpoint {tuple(given[k].shape)}, model {tuple(wanted[k].shape)}"
                       for k in wanted if k in given and tuple(given[k].shape) != tuple(wanted[k].shape))
    if missing or unexpected or misshaped:
        lines = [f"{source}: the weights do not fit the model; refusing a partial load."]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                shown = keys[:20] + ([f"... and {len(keys) - 20} more"] if len(keys) > 20 else [])
                lines.append(f"  {len(keys)} {title} key(s): " + "; ".join(shown))
        raise CheckpointError("\n".join(lines))
    require_finite(given, source=source)
    if assign:
        given = {k: v if v.dtype == wanted[k].dtype else v.to(wanted[k].dtype) for k, v in given.items()}
    module.load_state_dict(given, strict=True, assign=assign)
    if assign:
        left = [name for name, t in (*module.named_parameters(), *module.named_buffers()) if t.is_meta]
        if left:
            raise CheckpointError(f"{source}: nothing loaded into {', '.join(left[:5])} (built empty, not in the "
                                  "state dict)")


def empty_module(build: Callable[[], T]) -> T:
    """`build()` on the meta device: the module's structure without allocating or initialising its
    weights. Fill it with `load_weights(..., assign=True)`."""
    with torch.device("meta"):
        return build()
