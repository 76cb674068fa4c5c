"""The layers of the code and what may import what, read from the source (README: Layout).

Every import counts: at module level, inside functions, and under `if TYPE_CHECKING:`, because each
one is a dependency someone reading or changing the code must follow. A module belongs to the layer
of the longest prefix in `LAYERS` that names it; a layer may import itself and the layers in
`MAY_IMPORT`, nothing else; and no module reaches itself again through its imports (no cycles).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Folder -> the package it is installed as (pyproject.toml: one import namespace, dcase9).
PACKAGES = {"toolkit": "dcase9", "systems": "dcase9.systems", "submission": "dcase9.submission"}

# Layer -> the modules and packages in it (a package covers its submodules; the root package `dcase9`
# is only its own __init__, so a new module anywhere must be placed here by name).
ROOT_PACKAGE = "dcase9"
LAYERS: dict[str, tuple[str, ...]] = {
    # What everything uses: errors, typed YAML, atomic files, lazy imports, the allocator, the version, the
    # device rule, progress bars.
    "foundation": ("dcase9.errors", "dcase9.config", "dcase9.files", "dcase9.lazy", "dcase9.allocator",
                   "dcase9.version", "dcase9.devices", "dcase9.progress"),
    # Formats and signals: data sets, audio, metrics, the weight registry, DCASE9_HOME and the checksums kept
    # there, what `dcase9 env` reports.
    "data": ("dcase9.data", "dcase9.audio", "dcase9.metrics", "dcase9.hub", "dcase9.home", "dcase9.weights",
             "dcase9.environment"),
    # Networks and their checkpoints (CLAP, ResUNet30, AudioLDM, IRM-LDM).
    "models": ("dcase9.models",),
    # What runs models and data: inference engine, output folders, scoring, ATS, the listening report, caption
    # augmentation, training, exporting a trained system.
    "pipelines": ("dcase9.engine", "dcase9.outputs", "dcase9.scoring", "dcase9.ats", "dcase9.report",
                  "dcase9.augment", "dcase9.training", "dcase9.recordings", "dcase9.export",
                  "dcase9.suite"),
    # One module per system, on the library.
    "systems": ("dcase9.systems",),
    # DCASE submission packaging and checks, on the library.
    "submission": ("dcase9.submission",),
    # What users call: the package's face (`import dcase9`: its verbs, lazily), the Python API, the command
    # line, the demo; they compose all of the above.
    "application": (ROOT_PACKAGE, "dcase9.api", "dcase9.cli", "dcase9.demo"),
}
LIBRARY = ("foundation", "data", "models", "pipelines")
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    "foundation": (),
    "data": ("foundation",),
    "models": ("foundation", "data"),
    "pipelines": ("foundation", "data", "models"),
    "systems": LIBRARY,
    "submission": LIBRARY,
    "application": (*LIBRARY, "systems", "submission"),
}


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = (package, *path.relative_to(ROOT / folder).with_suffix("").parts)
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = modules()


def imported(name: str, path: Path) -> set[str]:
    """First-party modules `name` imports, anywhere in its source (functions and TYPE_CHECKING too)."""
    result = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            # `from a import b` imports the module a.b when there is one, else names of a.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        result |= {t for t in targets if t.split(".")[0] == "dcase9"}
    return result - {name}


GRAPH = {name: imported(name, path) for name, path in MODULES.items()}


def layer_of(module: str) -> str:
    best, length = None, -1
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            covers = module == prefix or (prefix != ROOT_PACKAGE and module.startswith(prefix + "."))
            if covers and len(prefix) > length:
                best, length = layer, len(prefix)
    assert best is not None, f"{module} is in no layer; add it to LAYERS"
    return best


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        layer_of(module)
    # ... by name: a module nobody placed is not swept into a layer by the root package's name.
    for unplaced in ("dcase9.brand_new", "dcase9.brand_new.part"):
        with pytest.raises(AssertionError, match="is in no layer"):
            layer_of(unplaced)


def test_layers_import_only_what_they_may() -> None:
    wrong = []
    for module, targets in sorted(GRAPH.items()):
        layer = layer_of(module)
        for target in sorted(targets):
            other = layer_of(target)
            if other != layer and other not in MAY_IMPORT[layer]:
                wrong.append(f"{module} ({layer}) imports {target} ({other})")
    assert not wrong, "\n".join(wrong)


def test_models_never_import_training_and_the_library_no_application() -> None:
    """Spelled out, as the README states them (the layers above imply both)."""
    for module, targets in GRAPH.items():
        if module.startswith("dcase9.models"):
            assert not any(t.startswith("dcase9.training") for t in targets), module
        if layer_of(module) in LIBRARY:
            assert not any(t.startswith(("dcase9.systems", "dcase9.submission")) for t in targets), module
            assert not any(layer_of(t) == "application" for t in targets), module


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in GRAPH:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    assert cycles() == []


def test_the_readme_shows_these_layers() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):]
    for layer, allowed in MAY_IMPORT.items():
        line = f"{layer}: may import " + (", ".join(allowed) if allowed else "nothing of ours")
        assert line in " ".join(layout.split()), f"README's layout lacks: {line}"
