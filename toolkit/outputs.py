"""Output folders of `infer` and `mix`: what is in them, what it was computed from, who writes them.

This module owns their layout; the engine, `mix`, `score`, `report` and `package` find files
through it (`estimate_path`, `estimate_files`, `mix_paths`, `run_identity`). An output folder holds
the outputs (`<id>.wav`, or `mixtures/<id>.wav` + `references/<id>.wav` and `mixtures.csv`) and
two files that describe them:

- `dcase9-run.json`, the manifest: the run's identity (system, weights' sha256, options), the data
  set (its kind and CSV), settings, versions, and at the end what was written, kept or left out;
- `dcase9-outputs.jsonl`, the ledger: one record per output, appended durably right after the
  output is renamed into place. A record says what the output was computed from (its `source`: the
  query, the SNR and the names, sizes and modification times of the input files) and what was
  written (each file's size and modification time, the number of samples).

A record is appended before its file is renamed into place (the rename keeps the size and
modification time recorded), so every output file in the folder is one the ledger vouches for,
even after a hard kill; an output of several files (`mix`) is complete when its record lists them all.

Only a file the ledger vouches for (listed in the latest record of its output, and still of the
recorded size and modification time) is ever deleted. A file at an output's name that the ledger
does not vouch for (written by hand or by another tool, or edited since) is never deleted or
written over: the run is refused before anything is touched (exit 2, naming it), and the user
moves it away. A symbolic link at an output's name is replaced (its target is left alone).

On a re-run an existing output is kept only when its ledger record's source equals the current
one, its files are vouched for, and each reads as mono at the data set's rate (16 kHz; AudioSep's benchmarks
32 kHz) with the recorded number of samples.
Every other output of the planned mixtures is stale (edited query, replaced input) and is deleted
before the run starts, then computed again, so the folder never holds an output that does not
match the manifest, even after an interruption. Inputs are identified by size and modification
time, not by content: a data set copied without keeping modification times (`cp -p`, `rsync -a`
keep them) is computed again, which costs time but is never wrong.

Two mixtures whose outputs would be one file on the folder's disk (ids that differ only by letter
case or Unicode normalisation, on a macOS or Windows disk) are refused before anything is written:
the second output would replace the first, and scoring would read one estimate for both. The disk
itself is asked (`names_collide_on_disk`); where it keeps the names apart, `validate` still warns.

A folder holds the outputs of one run identity and one data set: another system or data set is
refused (exit 2) unless `--overwrite`, which recomputes everything and first deletes every output
the ledger vouches for, whatever `--limit` says (so no output of the previous run stays under the
new manifest). An unreadable manifest or ledger is refused the same way. One command at a time
writes a folder (`dcase9.files.exclusive_lock`). `vouched_outputs` tells readers (`score`,
`package`) which outputs of a folder its ledger vouches for.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf

from dcase9.audio import SAMPLE_RATE
from dcase9.data.formats import DataSet, MixtureSpec, SetKind, is_safe_name, output_name_too_long
from dcase9.errors import Dcase9Error, DataError
from dcase9.files import (JsonlAppender, colliding_names, exclusive_lock, name_collision, names_collide_on_disk,
                          read_jsonl, remove_partial_files, sha256_text, write_json_atomic, write_text_atomic)

MANIFEST_NAME = "dcase9-run.json"
LEDGER_NAME = "dcase9-outputs.jsonl"
ESTIMATE_SUFFIX = ".wav"
MIX_INDEX_NAME = "mixtures.csv"
MIX_FOLDERS = ("mixtures", "references")


def estimate_path(folder: str | Path, output_id: str) -> Path:
    """Where an estimates folder (`infer`) holds the estimate of mixture `output_id`: `<id>.wav`."""
    return Path(folder) / f"{output_id}{ESTIMATE_SUFFIX}"


def estimate_files(folder: str | Path) -> dict[str, Path]:
    """The files of an estimates folder that are named like estimates, by mixture id (the manifest and
    the ledger are not)."""
    return {p.stem: p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() == ESTIMATE_SUFFIX}


def mix_paths(folder: str | Path, output_id: str) -> list[Path]:
    """The mixture and reference a `mix` folder holds for `output_id`."""
    return [Path(folder) / part / f"{output_id}.wav" for part in MIX_FOLDERS]


def run_manifest(folder: str | Path) -> dict[str, Any] | None:
    """An output folder's manifest; None when it has none or it cannot be read."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def run_identity(folder: str | Path) -> dict[str, Any] | None:
    """The run identity (system, weights, options) of an output folder's manifest; None when it has no
    manifest or it cannot be read."""
    identity = (run_manifest(folder) or {}).get("identity")
    return identity if isinstance(identity, dict) else None


def run_key(identity: dict[str, Any]) -> str:
    """The short digest of a run identity that every ledger record carries."""
    return sha256_text(json.dumps(identity, sort_keys=True, default=str))[:16]


def unvouched_estimates(folder: str | Path, found: dict[str, Path]) -> dict[str, str] | None:
    """Which estimate files of an `infer` folder (`found`: id -> path) its ledger does not vouch for,
    with the reason: written by another run than the manifest's (a folder that mixes runs), or changed
    since. None when the folder has no dcase9 manifest: estimates made by other tools are taken as
    they are."""
    folder = Path(folder)
    identity = run_identity(folder)
    if identity is None:
        if (folder / MANIFEST_NAME).exists():
            return {i: f"{MANIFEST_NAME} cannot be read, so nothing here is vouched for" for i in found}
        return None
    try:
        records = read_jsonl(folder / LEDGER_NAME).records
    except (DataError, OSError):
        return {i: f"{LEDGER_NAME} cannot be read, so nothing here is vouched for" for i in found}
    latest = {r.get("id"): r for r in records if isinstance(r.get("files"), dict)}
    key = run_key(identity)
    system = identity.get("system", "?")
    problems = {}
    for output_id, path in found.items():
        record = latest.get(output_id)
        if record is None or record.get("run") != key:
            problems[output_id] = (f"{path.name} was not written by the run this folder's manifest describes "
                                   f"(system {system}): a leftover of another run")
        elif record["files"].get(path.name) != file_identity(path):
            problems[output_id] = (f"{path.name} has changed since dcase9 wrote it (to score edited estimates, "
                                   "copy the .wav files into a folder of their own)")
    return problems


@dataclass
class Problem:
    """A mixture left out of a run: its id and why (the message names the file)."""

    id: str
    message: str


def file_identity(path: Path) -> dict[str, int] | None:
    """Size and modification time of a file, or None when it cannot be reached."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def source_of(dataset: DataSet, spec: MixtureSpec) -> dict[str, Any]:
    """What the output of `spec` is computed from (compared as a whole on re-runs)."""
    inputs = {}
    for path in dataset.files_of(spec):
        try:
            name = str(path.relative_to(dataset.root))
        except ValueError:
            name = str(path)
        inputs[name] = file_identity(path)
    source: dict[str, Any] = {"query": spec.query, "inputs": inputs}
    if dataset.kind is SetKind.VALIDATION:
        source.update(source=spec.source, noise=spec.noise, snr=spec.snr)
    else:
        source["file"] = spec.file
    return source


def dataset_identity(dataset: DataSet) -> dict[str, str]:
    return {"kind": dataset.kind.value, "csv": str(Path(dataset.csv_path).resolve())}


def _same_dataset(previous: dict[str, Any], current: dict[str, str]) -> bool:
    csv = previous.get("csv")
    return previous.get("kind") == current["kind"] and isinstance(csv, str) and \
        str(Path(csv).resolve()) == current["csv"]


class OutputSources(ABC):
    """What the outputs of a folder are computed from, as `OutputFolder` needs to know it: the items
    (each with an `.id`, the output's name in the ledger), what each one's output is computed from
    (`source_of`, compared as a whole on re-runs), and how the manifest describes them all (under
    `manifest_key`; a folder that holds outputs of other inputs is refused unless `accepts` them).

    `DataSetSources` is a data set's (`infer`, `mix`: one folder, one data set); `dcase9.recordings`
    has the recordings' of `dcase9 separate` (a folder gathers the outputs of any recordings).
    """

    manifest_key = "inputs"
    # Whether `items` are every output the folder may hold (a data set's mixtures): outputs of other
    # ids are then orphans (reported); else they are outputs of earlier runs, kept as they are.
    closed = False

    def __init__(self, items: Sequence[Any]):
        self.items = items

    @abstractmethod
    def source_of(self, item: Any) -> dict[str, Any]:
        """What `item`'s output is computed from (its ledger record's source)."""

    def manifest_entry(self) -> dict[str, Any]:
        """What the manifest says of the inputs (`accepts` compares it with the next run's)."""
        return {}

    def accepts(self, previous: Any) -> str | None:
        """None when a folder whose manifest says `previous` of its inputs may take these outputs too;
        else why not."""
        return None

    def is_output_id(self, output_id: str) -> bool:
        """Whether `output_id` names an output of this kind (ledger records of other names are ignored:
        a hand-made ledger cannot make the run delete a file elsewhere)."""
        return is_safe_name(output_id)

    def collision(self, first: Any, later: Any, first_name: str, later_name: str, root: Path) -> DataError:
        return DataError(f"outputs {later.id!r} and {first.id!r} differ only by {name_collision(first.id, later.id)}, "
                         f"and the disk of {root} takes {later_name!r} and {first_name!r} for one file")


class DataSetSources(OutputSources):
    """An evaluation set's mixtures as the sources of `infer`'s and `mix`'s outputs."""

    manifest_key = "dataset"
    closed = True

    def __init__(self, dataset: DataSet):
        super().__init__(dataset.mixtures)
        self.dataset = dataset

    def source_of(self, item: MixtureSpec) -> dict[str, Any]:
        return source_of(self.dataset, item)

    def manifest_entry(self) -> dict[str, Any]:
        return {**dataset_identity(self.dataset), "root": str(Path(self.dataset.root).resolve()),
                "mixtures": len(self.dataset.mixtures)}

    def accepts(self, previous: Any) -> str | None:
        current = dataset_identity(self.dataset)
        if isinstance(previous, dict) and _same_dataset(previous, current):
            return None
        described = (f"the {previous.get('kind')} set {previous.get('csv')}" if isinstance(previous, dict)
                     else "an unnamed data set")
        return (f"holds outputs for {described}; this run is for the {current['kind']} set {current['csv']} (one "
                "folder holds one data set's outputs; --overwrite deletes the other set's outputs listed in its "
                "ledger)")

    def collision(self, first: MixtureSpec, later: MixtureSpec, first_name: str, later_name: str,
                  root: Path) -> DataError:
        return DataError(f"mixture id {later.id!r} and {first.id!r} of row {first.row} differ only by "
                         f"{name_collision(first.id, later.id)}, and the disk of {root} takes "
                         f"{later_name!r} and {first_name!r} for one file: one output would replace the "
                         "other. Rename one of the mixtures, or write to a disk that tells them apart",
                         file=self.dataset.csv_path, row=later.row)


class OutputFolder:
    """One run's hold on an output folder: lock, manifest and ledger checks, resume planning.

    Use as a context manager (`with OutputFolder(...) as folder:`): entering takes the lock and
    refuses another system, another data set or an unreadable manifest/ledger; `plan` says which
    mixtures need work (deleting their stale outputs); `record` logs an output once written.
    `sources`: a data set (`infer`, `mix`), or the `OutputSources` of other outputs (`separate`).
    """

    def __init__(self, root: str | Path, command: str, sources: DataSet | OutputSources, identity: dict[str, Any], *,
                 overwrite: bool, outputs_of: Callable[[str], Sequence[Path]]):
        self.root = Path(root)
        self.command, self.identity, self.overwrite = command, identity, overwrite
        self.inputs = sources if isinstance(sources, OutputSources) else DataSetSources(sources)
        self.outputs_of = outputs_of
        # In every ledger record: outputs of another identity are never reused, even without a manifest.
        self.run_key = run_key(identity)
        self.manifest_path = self.root / MANIFEST_NAME
        self.ledger_path = self.root / LEDGER_NAME
        self.records: dict[str, dict[str, Any]] = {}
        self.sources: dict[str, dict[str, Any]] = {}
        self.orphans: list[str] = []
        self._pending: dict[str, dict[str, Any]] = {}  # files of an output written by this run so far
        self.recomputed: dict[str, str] = {}  # existing outputs planned again, and why
        self._appender: JsonlAppender | None = None
        self._lock = threading.Lock()
        self._stack = ExitStack()

    # -- entering: checks ------------------------------------------------------------------------

    def __enter__(self) -> OutputFolder:
        self._stack.enter_context(exclusive_lock(self.root, self.command))
        try:
            self._check_colliding_outputs()
            self._check_previous_run()
            self._open_ledger()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._appender is not None:
                self._appender.close()
        finally:
            self._stack.close()

    def _refuse(self, what: str) -> Dcase9Error:
        return Dcase9Error(f"{what}. Use another --out folder, or --overwrite to recompute every output in "
                           f"{self.root}")

    def _check_previous_run(self) -> None:
        previous = self._read_manifest()
        if previous is None or self.overwrite:
            return
        before = previous.get("identity")
        if before != self.identity:
            before = before if isinstance(before, dict) else {}
            changed = sorted(k for k in set(before) | set(self.identity) if before.get(k) != self.identity.get(k))
            raise self._refuse(f"{self.root} holds outputs of another run (differs in: {', '.join(changed)})")
        refused = self.inputs.accepts(previous.get(self.inputs.manifest_key))
        if refused is not None:
            raise self._refuse(f"{self.root} {refused}")

    def _check_colliding_outputs(self) -> None:
        for first, later in colliding_names(self.inputs.items, lambda item: item.id):
            first_name, later_name = self.outputs_of(first.id)[0].name, self.outputs_of(later.id)[0].name
            if names_collide_on_disk(self.root, first_name, later_name):
                raise self.inputs.collision(first, later, first_name, later_name, self.root)

    def _read_manifest(self) -> dict[str, Any] | None:
        path = self.manifest_path
        if not path.exists() and not path.is_symlink():
            return None
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(manifest, dict) or not isinstance(manifest.get("identity"), dict):
                raise ValueError("no 'identity' object in it")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            if self.overwrite:
                return None
            raise self._refuse(f"{path}: unreadable run manifest ({exc}); it says which system and data set "
                               "the outputs here belong to, so they cannot be resumed") from None
        return manifest

    def _open_ledger(self) -> None:
        try:
            records = read_jsonl(self.ledger_path).records
        except (DataError, OSError) as exc:
            if not self.overwrite:
                reason = f"line {exc.row}: {exc.message}" if isinstance(exc, DataError) else str(exc)
                raise self._refuse(f"{self.ledger_path}: unreadable output ledger ({reason}); it says what each "
                                   "output was computed from, so they cannot be resumed") from None
            records = []
        # Only records of outputs this command would write: a hand-made ledger cannot point elsewhere.
        self.records = {r["id"]: r for r in records if isinstance(r.get("id"), str)
                        and self.inputs.is_output_id(r["id"]) and isinstance(r.get("files"), dict)}

    # -- planning and recording ------------------------------------------------------------------

    def plan(self, mixtures: Sequence[MixtureSpec]) -> list[MixtureSpec]:
        """The mixtures whose outputs must be computed. Before returning, their stale outputs (and with
        `--overwrite` every output the ledger vouches for) are deleted; a file at a planned output's
        name that the ledger does not vouch for refuses the run, before anything is deleted."""
        for folder in {path.parent for m in mixtures for path in self.outputs_of(m.id)}:
            remove_partial_files(folder)  # what an interrupted write left
        todo, delete, foreign = [], [], []
        for spec in mixtures:
            source = self.sources[spec.id] = self.inputs.source_of(spec)
            if output_name_too_long(spec.id):  # no such file can exist; the loader names the row
                todo.append(spec)
                continue
            if self.overwrite or not self.is_current(spec.id, source):
                todo.append(spec)
                stale = False
                for path in self.outputs_of(spec.id):
                    if path.is_symlink() or self.vouches_for(spec.id, path):
                        delete.append(path)
                        stale = True
                    elif path.exists():
                        foreign.append(path)
                if stale:
                    self.recomputed[spec.id] = self._why_stale(spec.id, source)
        if foreign:
            listed = ", ".join(str(p) for p in foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3
                                                               else "")
            raise Dcase9Error(f"{listed}: not written by dcase9 in this folder, or changed since (its ledger "
                              f"{self.ledger_path.name} does not vouch for {'them' if len(foreign) > 1 else 'it'}); "
                              "dcase9 never deletes or overwrites such a file: move it away, or choose another "
                              "--out")
        planned = {spec.id for spec in mixtures}
        if self.overwrite:  # everything of the previous run goes, whatever --limit plans
            delete += [path for output_id in self.records if output_id not in planned
                       for path in self.outputs_of(output_id) if self.vouches_for(output_id, path)]
        for path in delete:
            path.unlink()
        for spec in todo:
            self.records.pop(spec.id, None)
        if self.overwrite:
            self.records = {}
        known = {item.id for item in self.inputs.items}
        self.orphans = sorted(i for i in self.records if self.inputs.closed and i not in known
                              and any(self.vouches_for(i, path) for path in self.outputs_of(i)))
        # Compacted: the latest record per output, rewritten atomically; then appended to.
        write_text_atomic(self.ledger_path,
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records.values()))
        self._appender = JsonlAppender(self.ledger_path)
        return todo

    def _why_stale(self, output_id: str, source: dict[str, Any]) -> str:
        """Why an existing output is computed again (said by `infer`, kept in the manifest)."""
        if self.overwrite:
            return "--overwrite"
        record = self.records.get(output_id) or {}
        before = record.get("source") or {}
        if record.get("run") != self.run_key:
            return "written by another run"
        if before.get("query") != source.get("query"):
            return "its query changed"
        if before.get("inputs") != source.get("inputs"):
            return "an input file changed"
        if before != source:
            return "its row changed"
        return "its file no longer reads as it was written"

    def vouches_for(self, output_id: str, path: Path) -> bool:
        """Whether the ledger vouches for the file `path` of output `output_id`: listed in the latest
        record and still of the recorded size and modification time (a regular file, not a link)."""
        record = self.records.get(output_id)
        if record is None or path.is_symlink() or not path.is_file():
            return False
        recorded = record["files"].get(self._name(path))
        return recorded is not None and file_identity(path) == recorded

    def is_current(self, output_id: str, source: dict[str, Any]) -> bool:
        record = self.records.get(output_id)
        if record is None or record.get("run") != self.run_key or record.get("source") != source:
            return False
        for path in self.outputs_of(output_id):
            if not self.vouches_for(output_id, path):
                return False
            try:
                info = sf.info(str(path))
            except (sf.LibsndfileError, RuntimeError, OSError):
                return False
            expected = (record.get("rate", SAMPLE_RATE), record.get("channels", 1), record.get("samples"))
            if (info.samplerate, info.channels, info.frames) != expected or info.frames == 0:
                return False
        return True

    def record_file(self, output_id: str, path: Path, written: Path, samples: int, *, rate: int = SAMPLE_RATE,
                    channels: int = 1) -> None:
        """Log the file `path` of output `output_id` before it is renamed into place; `written` is its
        finished temporary file (the rename keeps its size and modification time), of `samples` frames
        of `channels` at `rate` (checked on re-runs). Safe to call from writer threads; pass it as
        `write_wav`'s `before_replace`."""
        identity = file_identity(written)
        with self._lock:
            assert self._appender is not None, "record_file() before plan()"
            pending = self._pending.setdefault(output_id, {})
            pending[self._name(path)] = identity
            entry = {"id": output_id, "run": self.run_key, "source": self.sources[output_id], "files": dict(pending),
                     "samples": samples}
            if (rate, channels) != (SAMPLE_RATE, 1):  # 16 kHz mono: what infer and mix write for DCASE sets
                entry.update(rate=rate, channels=channels)
            self._appender.append([entry])
            self.records[output_id] = entry

    def finished(self, mixtures: Sequence[MixtureSpec]) -> list[MixtureSpec]:
        """The planned mixtures whose outputs are now current (kept or written in full by this run)."""
        done = []
        for spec in mixtures:
            record = self.records.get(spec.id, {})
            if spec.id in self.sources and record.get("source") == self.sources[spec.id] \
                    and record.get("run") == self.run_key \
                    and all(self._name(path) in record["files"] for path in self.outputs_of(spec.id)):
                done.append(spec)
        return done

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json_atomic(self.manifest_path, {"identity": self.identity,
                                               self.inputs.manifest_key: self.inputs.manifest_entry(), **manifest,
                                               "ledger": LEDGER_NAME, "orphans": self.orphans})

    def _name(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()
