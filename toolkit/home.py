"""dcase9's own folder, `DCASE9_HOME` (default ~/.cache/dcase9), and the checksums it keeps there.

- `dcase9_home()`: the folder; downloaded weights live in `DCASE9_HOME/weights/`.
- `file_sha256(path)`: a file's sha256, remembered in `DCASE9_HOME/sha256/` while the file's size,
  modification time and inode are unchanged (hashing a 2 GB checkpoint takes seconds). Nothing is
  ever written next to the file itself: it may be a user's checkpoint or sit in the Hugging Face cache.
- `verify_download(...)`: a downloaded file checked against what its source states (the registry's
  sha256, the sha256 the Hub reports, ...) and against the sha256 recorded at its first download
  (`DCASE9_HOME/verified/<name>.json`); the first download is recorded there, so a file changed in a
  cache later is refused.

A `DCASE9_HOME` that cannot be written (a read-only home) only costs the memory: sums are
recomputed and first downloads are checked against their source alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from dcase9.errors import CheckpointError, ConfigError
from dcase9.files import describe_non_file, sha256_file, sha256_text, write_json_atomic

MEMO_FOLDER = "sha256"
RECORDS_FOLDER = "verified"
# A folder's list of its files' sums, in `sha256sum`'s format (`sha256sum -c` checks it): what a folder of
# `dcase9 export` carries (`dcase9.models.exported`); it identifies the folder.
CHECKSUMS_FILE = "checksums.sha256"
_CHUNK = 1 << 20


def dcase9_home() -> Path:
    """dcase9's own cache folder: `$DCASE9_HOME`, else ~/.cache/dcase9. A `DCASE9_HOME` that exists but is
    not a folder is refused here, where every use of it starts (weights there could never be found)."""
    configured = os.environ.get("DCASE9_HOME")
    home = Path(configured or Path.home() / ".cache" / "dcase9")
    if configured and home.exists() and not home.is_dir():
        what = "a file" if home.is_file() else (describe_non_file(home) or "something else")
        raise ConfigError(f"DCASE9_HOME={configured} is {what}, not a folder: point it at a folder (dcase9 keeps "
                          "downloaded weights under DCASE9_HOME/weights), or unset it")
    return home


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_quietly(path: Path, payload: Any) -> None:
    try:
        write_json_atomic(path, payload)
    except OSError:  # a read-only home: the sum is computed again next time, the record is not kept
        pass


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered under DCASE9_HOME while its size, mtime and inode are unchanged."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    stamp = f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}"
    memo = dcase9_home() / MEMO_FOLDER / f"{sha256_text(str(resolved))[:32]}.json"
    cached = _read_json(memo)
    if isinstance(cached, dict) and cached.get("path") == str(resolved) and cached.get("stamp") == stamp \
            and isinstance(cached.get("sha256"), str):
        return cached["sha256"]
    value = sha256_file(resolved)
    _write_quietly(memo, {"path": str(resolved), "stamp": stamp, "sha256": value})
    return value


def folder_identity(folder: Path) -> str | None:
    """The sha256 of a folder's `CHECKSUMS_FILE` (it names every file's sum): what identifies a folder of
    `dcase9 export` in run manifests; None for a folder without one."""
    listing = Path(folder) / CHECKSUMS_FILE
    return file_sha256(listing) if listing.is_file() else None


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file's content (what the Hub reports for a file not stored with LFS)."""
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(f"blob {Path(path).stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def records_path(name: str) -> Path:
    """Where the first-download records of weight (or Hub repository) `name` are kept."""
    return dcase9_home() / RECORDS_FOLDER / (re.sub(r"[^A-Za-z0-9._-]+", "--", name) + ".json")


def _records(name: str) -> dict[str, Any]:
    records = _read_json(records_path(name))
    return records if isinstance(records, dict) and isinstance(records.get("files"), dict) else {"files": {}}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def reject_download(name: str, key: str, sha256: str, reason: str) -> None:
    """Remember that the file with `sha256` failed its check as file `key` of `name` (`reason`): a copy
    left in a cache (the Hugging Face cache keeps what it downloaded) is refused at later uses."""
    records = _records(name)
    entry = records["files"].setdefault(key, {})
    entry.setdefault("rejected", {})[sha256] = {"reason": reason, "when": _now()}
    _write_quietly(records_path(name), records)


def verify_download(path: Path, *, name: str, key: str, expected: str | None, stated_by: str,
                    mismatch_advice: str) -> str:
    """The sha256 of `path` (file `key` of the weight or repository `name`), checked first against
    `expected` (what `stated_by` states: "the registry", ...; None: nothing is stated) and then against
    the record of its first download, which is written when there is none. A file that failed a check
    before, a mismatch, or a file changed since its first download raises `CheckpointError` naming the
    file, the sums and `mismatch_advice`."""
    actual = file_sha256(path)
    where = records_path(name)
    records = _records(name)
    entry = records["files"].get(key)
    entry = entry if isinstance(entry, dict) else {}
    rejected = entry.get("rejected") if isinstance(entry.get("rejected"), dict) else {}
    if actual in rejected:
        reason = rejected[actual].get("reason", "") if isinstance(rejected[actual], dict) else ""
        raise CheckpointError(f"{path}: this file (sha256 {actual}) failed its check when it was downloaded for "
                              f"'{name}' ({key}: {reason}). {mismatch_advice}")
    if expected is not None and actual != expected.lower():
        reason = f"{stated_by} states sha256 {expected.lower()}"
        reject_download(name, key, actual, reason)
        raise CheckpointError(f"{path}: sha256 {actual} does not match {stated_by}'s {expected.lower()} for "
                              f"'{name}' ({key}). {mismatch_advice}")
    if isinstance(entry.get("sha256"), str):
        if entry["sha256"] != actual:
            raise CheckpointError(f"{path}: sha256 {actual} is not the {entry['sha256']} recorded when '{name}' "
                                  f"({key}) was first downloaded ({entry.get('recorded', 'earlier')}, record "
                                  f"{where}): the file changed since. {mismatch_advice}")
        return actual
    entry.update({"sha256": actual, "size": path.stat().st_size,
                  "checked_against": stated_by if expected is not None else None, "recorded": _now()})
    records["files"][key] = entry
    _write_quietly(where, records)
    return actual


def has_record(name: str, key: str) -> bool:
    """Whether the first download of file `key` of `name` was recorded."""
    entry = _records(name)["files"].get(key)
    return isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
