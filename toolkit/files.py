"""Files the toolkit writes: atomic outputs, durable append-only logs, a folder lock, and sha256.

Everything the toolkit writes goes to a hidden temporary file in the destination folder first
(`.<name>.<random>.part`, created like any new file: 0666 less the umask), is flushed to disk, and
is then renamed over the destination, which is atomic on POSIX and Windows file systems. An
interrupted run leaves at most `.part` files, which `remove_partial_files` clears on the next run.
This is the toolkit's one atomic writer: `atomic_output` for writers that want a path, and
`write_bytes_atomic`, `write_text_atomic`, `write_json_atomic` for contents in memory.

Logs (`JsonlAppender`, `read_jsonl`) grow one durable record at a time; a record a hard kill cut
short is dropped on the next read. `exclusive_lock` keeps two commands from writing into one
folder at once.

Names that are two files here can be one file elsewhere: macOS and Windows file systems ignore
letter case by default, and macOS does not tell Unicode's composed and decomposed forms apart (NFC
`café` and NFD `café`). `name_fold`, `colliding_names` and `name_collision` find such names in a
list (data sets, zip entries); `names_collide_on_disk` asks the disk of a folder itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dcase9.errors import ConfigError, DataError

PARTIAL_SUFFIX = ".part"


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it over `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.parent / f".{path.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
    os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # not mkstemp's 0600
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


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


def remove_partial_files(folder: str | Path) -> int:
    """Delete temporary files an interrupted write left in `folder`; returns how many."""
    removed = 0
    for leftover in Path(folder).glob(f".*{PARTIAL_SUFFIX}"):
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
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "JsonlAppender":
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
    folder.mkdir(parents=True, exist_ok=True)
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
