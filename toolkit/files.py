"""Files the toolkit writes: atomic outputs, folders replaced as a unit, durable append-only logs, a
folder lock, sha256, and the checks that keep an output away from the inputs it is made from.

Everything the toolkit writes goes to a hidden temporary file in the destination folder first
(`.<name>.<random>.part`, created like any new file: 0666 less the umask), is flushed to disk, and
is then renamed over the destination, which is atomic on POSIX and Windows file systems. An
interrupted run leaves at most `.part` files, which `remove_partial_files` clears on the next run.
This is the toolkit's one atomic writer: `atomic_output` for writers that want a path, and
`write_bytes_atomic`, `write_text_atomic`, `write_json_atomic` for contents in memory.

A report folder (`staged_folder`) is written as a whole into a hidden sibling folder that then
takes the place of the previous one, so a reader sees the old complete report or the new one.
A disk that fills up while a file is written is a `DiskFullError` naming that file.

Logs (`JsonlAppender`, `read_jsonl`) grow one durable record at a time; a record a hard kill cut
short is dropped on the next read. `exclusive_lock` keeps two commands from writing into one
folder at once. `check_no_overlap` refuses an output that is, contains or lies inside an input.

Names that are two files here can be one file elsewhere: macOS and Windows file systems ignore
letter case by default, and macOS does not tell Unicode's composed and decomposed forms apart (NFC
`café` and NFD `café`). `name_fold`, `colliding_names` and `name_collision` find such names in a
list (data sets, zip entries); `names_collide_on_disk` asks the disk of a folder itself.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import stat
import tempfile
import unicodedata
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dcase9.errors import ConfigError, DataError, DiskFullError

PARTIAL_SUFFIX = ".part"
# `.<name>.<8 hex digits>.part`: the only names `remove_partial_files` deletes (a user's `.x.part` stays).
_PARTIAL_NAME = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}" + re.escape(PARTIAL_SUFFIX) + "$")
_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_is_full(exc: BaseException, folder: Path) -> bool:
    """Whether `exc`, raised while writing into `folder`, means the file system is out of space.

    OSError says so by its errno. Writers that hide it (libsndfile's "System error.", torch's
    "PytorchStreamWriter failed writing file") are judged by the file system: no block left for us.
    """
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno in _FULL
    if not isinstance(exc, Exception):
        return False  # an interrupt
    try:
        return os.statvfs(folder).f_bavail == 0
    except (OSError, AttributeError):  # no statvfs (Windows)
        return False


@contextmanager
def naming_a_full_disk(path: str | Path) -> Iterator[None]:
    """Turn "no space left" while the block writes `path` into a `DiskFullError` that names `path`."""
    try:
        yield
    except DiskFullError:
        raise
    except BaseException as exc:
        if disk_is_full(exc, Path(path).parent):
            raise DiskFullError(path) from exc
        raise


@contextmanager
def atomic_output(path: str | Path, before_replace: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it over `path` if the block succeeds.

    Whatever happens in the block (an error, Ctrl-C, a full disk: `DiskFullError` naming `path`), the
    temporary file is removed and `path` keeps its previous contents. `before_replace(tmp)` runs on
    the finished, durable temporary file just before the rename (a ledger records it there).
    """
    with atomic_outputs([Path(path)], before_replace) as (tmp_path,):
        yield tmp_path


@contextmanager
def atomic_outputs(paths: Sequence[Path],
                   before_replace: Callable[[Path], None] | None = None) -> Iterator[list[Path]]:
    """`atomic_output` for files that belong together (a run's outputs and its summary): one temporary
    path per file; only when the block has written them all are they renamed into place, one right
    after the other. A failure, Ctrl-C or a full disk while they are written keeps every previous file."""
    tmp_paths = [path.parent / f".{path.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}" for path in paths]
    try:
        for path, tmp_path in zip(paths, tmp_paths, strict=True):
            with naming_a_full_disk(path):
                path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # not mkstemp's 0600
        yield tmp_paths
        for path, tmp_path in zip(paths, tmp_paths, strict=True):
            with naming_a_full_disk(path):
                with open(tmp_path, "rb+") as fh:
                    os.fsync(fh.fileno())
                if before_replace is not None:
                    before_replace(tmp_path)
        for path, tmp_path in zip(paths, tmp_paths, strict=True):
            os.replace(tmp_path, path)
    except BaseException as exc:
        # A writer in the block that filled the disk (libsndfile, torch, matplotlib) names no file: with
        # one path it is that one; a block writing several names the file itself (`naming_a_full_disk`).
        if len(paths) == 1 and not isinstance(exc, DiskFullError) and disk_is_full(exc, paths[0].parent):
            raise DiskFullError(paths[0]) from exc
        raise
    finally:
        for tmp_path in tmp_paths:
            tmp_path.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def finite_or_none(value: Any) -> Any:
    """The value with every NaN or infinity replaced by None (JSON null), in nested dicts and lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def json_text(payload: Any) -> str:
    """Strict JSON as dcase9 writes it (a NaN or infinity becomes null: `NaN` is not JSON, and strict
    readers refuse it), indented, UTF-8 text."""
    return json.dumps(finite_or_none(payload), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json_atomic(path: str | Path, payload: Any) -> None:
    write_text_atomic(path, json_text(payload))


def write_files_atomic(contents: Mapping[Path, bytes]) -> None:
    """Files that belong together, written with `atomic_outputs`: all new, or all as they were."""
    paths = list(contents)
    with atomic_outputs(paths) as tmp_paths:
        for path, tmp_path in zip(paths, tmp_paths, strict=True):
            with naming_a_full_disk(path):
                tmp_path.write_bytes(contents[path])


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes, read in chunks (the one file digest of the toolkit)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    """The sha256 of a text's UTF-8 bytes (identities of runs and requests, seeds)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def remove_partial_files(folder: str | Path, name: str | None = None) -> int:
    """Delete what interrupted atomic writes left in `folder` (temporary files, and staging folders of
    `staged_folder`), only of `name` when given; returns how many. Only names of our own pattern go."""
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for leftover in folder.iterdir():
        match = _PARTIAL_NAME.match(leftover.name)
        if match is None or (name is not None and match["name"] != name):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        removed += 1
    return removed


@dataclass
class JsonlContents:
    """Records of a JSONL log, the byte offset where each one ends, and the length of the intact part."""

    records: list[dict[str, Any]]
    ends: list[int]
    intact: int


def read_jsonl(path: Path) -> JsonlContents:
    """Read a JSONL log written by `JsonlAppender`.

    A last line without its newline is what a hard kill during a write leaves: it is ignored (and
    `intact` stops before it). A bad line anywhere else is damage we will not guess about.
    """
    contents = JsonlContents([], [], 0)
    if not path.exists():
        return contents
    raw = path.read_bytes()
    offset = 0
    line_number = 0
    while offset < len(raw):
        line_number += 1
        newline = raw.find(b"\n", offset)
        if newline < 0:
            break  # torn tail
        line, offset = raw[offset:newline + 1], newline + 1
        stripped = line.strip()
        if stripped:
            try:
                record = json.loads(stripped)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DataError(f"damaged log record ({exc}); move the file away to start over",
                                file=path, row=line_number) from exc
            if not isinstance(record, dict):
                raise DataError("damaged log record (not an object)", file=path, row=line_number)
            contents.records.append(record)
            contents.ends.append(offset)
        contents.intact = offset
    return contents


class JsonlAppender:
    """Append-only JSONL log; each call writes whole lines with one `write` and makes them durable.

    Opening truncates the file to `keep_bytes` (dropping a torn tail found by `read_jsonl`), so the next
    record never lands behind half a line.
    """

    def __init__(self, path: Path, keep_bytes: int | None = None):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if keep_bytes is not None and os.fstat(self._fd).st_size != keep_bytes:
            os.ftruncate(self._fd, keep_bytes)
            os.fsync(self._fd)

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        payload = b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in records)
        if not payload:
            return
        view = memoryview(payload)
        with naming_a_full_disk(self.path):
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def require_folder(path: str | Path, purpose: str) -> None:
    """Refuse an output folder that is an existing file (before any work is done)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path} is a file, not a folder; give a folder for {purpose}")


T = TypeVar("T")


def name_fold(name: str) -> str:
    """A name as a case-insensitive, normalisation-insensitive file system compares it (Unicode's
    canonical caseless match: decomposed, case folded, decomposed again)."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())


def name_collision(first: str, second: str) -> str | None:
    """How two different names become one name elsewhere ("letter case", "Unicode normalisation
    (NFC/NFD)" or both), or None if they stay two."""
    if first == second or name_fold(first) != name_fold(second):
        return None
    if unicodedata.normalize("NFC", first) == unicodedata.normalize("NFC", second):
        return "Unicode normalisation (NFC/NFD)"
    if first.casefold() == second.casefold():
        return "letter case"
    return "letter case and Unicode normalisation (NFC/NFD)"


def colliding_names(items: Iterable[T], name_of: Callable[[T], str]) -> list[tuple[T, T]]:
    """(first, later) for each item whose name differs from an earlier item's name but folds to the
    same (`name_fold`); each such name is paired once, with the first item of its fold. Equal names
    are not pairs: callers treat exact repeats their own way."""
    first_of: dict[str, T] = {}
    paired: set[str] = set()
    pairs = []
    for item in items:
        name = name_of(item)
        first = first_of.setdefault(name_fold(name), item)
        if name_of(first) != name and name not in paired:
            paired.add(name)
            pairs.append((first, item))
    return pairs


def names_collide_on_disk(folder: Path, first: str, second: str) -> bool:
    """Whether the file system holding `folder` takes the file names `first` and `second` for one file
    (a case-insensitive or normalising disk): a file created as `first` in a fresh hidden folder
    there is looked up as `second`, then the folder is removed."""
    probe = Path(tempfile.mkdtemp(prefix=".dcase9-names-", dir=folder))
    try:
        (probe / first).touch()
        return (probe / second).exists()
    finally:
        shutil.rmtree(probe, ignore_errors=True)


LOCK_NAME = ".dcase9.lock"


@contextmanager
def exclusive_lock(folder: Path, command: str) -> Iterator[None]:
    """Refuse to run two commands that write into `folder` at the same time (`command` names ours).

    The lock is an advisory `flock` on `folder/.dcase9.lock`, which holds the holder's command and
    process id for the message the second one gets. The file is removed on release, so a finished or
    refused run leaves nothing behind; a lock file that a killed process left is simply taken over
    (the kernel dropped its lock). Where `fcntl` is missing (Windows) nothing is locked.
    """
    require_folder(folder, "the outputs")
    with new_folder(folder):
        yield from _locked(folder, command)


@contextmanager
def new_folder(folder: Path, *, discard_on_error: Callable[[], bool] | None = None) -> Iterator[None]:
    """Create `folder` (and its parents) for the block; if the block leaves it empty, remove what was made,
    so a refused run leaves no empty --out folder behind. `discard_on_error()`: asked when the block
    fails; if true, a folder this call created goes with what the block wrote into it (nothing else can
    be in it: a run refused before it produced anything worth keeping)."""
    made = []
    for parent in [folder, *folder.parents]:
        if parent.exists():
            break
        made.append(parent)
    with naming_a_full_disk(folder):
        folder.mkdir(parents=True, exist_ok=True)
    failed = True
    try:
        yield
        failed = False
    finally:
        if failed and made and discard_on_error is not None and discard_on_error():
            shutil.rmtree(folder, ignore_errors=True)
        for path in made:  # deepest first; stops at the first that holds something
            try:
                path.rmdir()
            except OSError:
                break


def _locked(folder: Path, command: str) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip()
            os.close(fd)
            raise ConfigError(f"{folder}: another dcase9 command ({holder or 'unknown'}) is writing to this "
                              "folder; wait for it to finish, or use another folder") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file between our open and our lock: take the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"dcase9 {command}, process {os.getpid()}".encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # while still locked: a waiting process then opens a new file
        os.close(fd)


# -- folders written as a unit ---------------------------------------------------------------------


@contextmanager
def staged_folder(out: str | Path, *, ours: Collection[str], purpose: str,
                  carry: Collection[str] = ()) -> Iterator[Path]:
    """Write the folder `out` as a unit: the block fills a new hidden folder next to it, which then
    takes `out`'s place; yields that new folder.

    A reader of `out` sees the previous complete folder until the new one is complete, then the new
    one. An error, Ctrl-C or SIGTERM in the block (or a full disk) leaves the previous folder as it
    was and removes the new one. `out` may hold only entries named in `ours` (what the command writes
    there): a folder with anything else in it is the user's and is refused before any work, so
    replacing it never deletes a file this command did not write. The entries named in `carry` (say,
    audio a page reuses) are linked into the new folder (hard links: no copy; a copy where the file
    system has none), so the block finds them there. A hard kill between the two renames of the swap
    leaves the previous folder under a hidden name; the next call puts it back first.
    """
    out = _real(out)  # a link to a folder: the folder it points to is replaced
    require_folder(out, purpose)
    _restore_swapped_out(out)
    remove_partial_files(out.parent, out.name)  # staging folders a hard kill left
    if out.is_dir():
        foreign = sorted(e.name for e in out.iterdir() if e.name not in ours)
        if foreign:
            listed = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise ConfigError(f"{out} holds files that are not part of {purpose} ({listed}); it is replaced as a "
                              "whole on every run, so give a new or empty folder")
    token = secrets.token_hex(4)
    staging = out.parent / f".{out.name}.{token}{PARTIAL_SUFFIX}"
    with naming_a_full_disk(staging):
        staging.mkdir(parents=True)
    try:
        for name in carry:
            if (out / name).exists():
                _link_tree(out / name, staging / name)
        try:
            yield staging
        except DiskFullError as exc:  # name the file the user asked for, not its staging copy
            if staging in exc.path.parents:
                raise DiskFullError(out / exc.path.relative_to(staging)) from exc
            raise
        _swap_in(staging, out, token)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _swapped_out_name(out: Path, token: str) -> Path:
    return out.parent / f".{out.name}.{token}.previous"


def _restore_swapped_out(out: Path) -> None:
    if out.exists() or not out.parent.is_dir():
        return
    pattern = re.compile(r"^\." + re.escape(out.name) + r"\.[0-9a-f]{8}\.previous$")
    previous = [p for p in out.parent.iterdir() if pattern.match(p.name) and p.is_dir()]
    if len(previous) == 1:
        os.rename(previous[0], out)


def _swap_in(staging: Path, out: Path, token: str) -> None:
    if not out.exists():
        os.rename(staging, out)
        return
    previous = _swapped_out_name(out, token)
    os.rename(out, previous)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(previous, out)
        raise
    shutil.rmtree(previous, ignore_errors=True)  # only entries named in `ours` (checked before the work)


def _link_tree(source: Path, target: Path) -> None:
    if source.is_dir() and not source.is_symlink():
        target.mkdir(parents=True, exist_ok=True)
        for entry in source.iterdir():
            _link_tree(entry, target / entry.name)
        return
    with naming_a_full_disk(target):
        try:
            os.link(source, target, follow_symlinks=False)
        except OSError:
            shutil.copy2(source, target, follow_symlinks=False)


# -- inputs and outputs ----------------------------------------------------------------------------


def describe_non_file(path: str | Path) -> str | None:
    """None when `path` is a regular file (or a link to one); else what it is, for a message that says
    so instead of "not found" (a folder, a named pipe or a device would also hang or flood a reader)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "file not found" if not os.path.islink(path) else "a link to a file that does not exist"
    except NotADirectoryError:
        return "file not found (a part of the path is a file, not a folder)"
    except PermissionError:
        return "cannot be read (permission denied)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO), not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a regular file"
    return "not a regular file"


def require_file(path: str | Path, purpose: str) -> Path:
    """`path` if it is a regular file; else a ConfigError saying what it is instead (exit 2)."""
    problem = describe_non_file(path)
    if problem is not None:
        raise ConfigError(f"{path} ({purpose}): {problem}")
    return Path(path)


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def check_no_overlap(outputs: Mapping[str, str | Path | None], inputs: Mapping[str, str | Path | None]) -> None:
    """Refuse (exit 2, before anything is written) an output that is, contains or lies inside an input.

    `outputs` and `inputs` map a label ("--out", "the data set") to a path (None: not given). Paths
    are compared after following links, so a link to an input is that input. Writing there could
    replace or delete what the command reads.
    """
    for out_label, out in outputs.items():
        if out is None:
            continue
        real_out = _real(out)
        overlaps = []  # (specificity, relation, label, path): the most telling one is named
        for in_label, source in inputs.items():
            if source is None:
                continue
            real_in = _real(source)
            if real_out == real_in:
                overlaps.append((2, len(real_in.parts), "is", in_label, source))
            elif real_in in real_out.parents:
                overlaps.append((1, len(real_in.parts), "lies inside", in_label, source))
            elif real_out in real_in.parents:
                overlaps.append((0, -len(real_in.parts), "contains", in_label, source))
        if overlaps:
            _, _, relation, in_label, source = max(overlaps, key=lambda o: (o[0], o[1]))
            raise ConfigError(f"{out_label} {out} {relation} {in_label} {source}: writing there could replace or "
                              "delete what this command reads; choose an output outside it")
