"""Files of the augmentation run: caption files in, tags (logs and outputs are written by `dcase9.files`).

Caption files use the DCASE 2024 Task 9 baseline's training format::

    {"data": [{"wav": "path/to/clip.wav", "caption": "A dog barks."}, ...]}

Items may carry other fields; they are kept. An item may also carry its own labels in a `tags`
field (a list of strings, or one comma-separated string).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcase9.data.captions import read_caption_rows
from dcase9.errors import DataError


@dataclass(frozen=True)
class CaptionItem:
    """One row of a caption file (one caption of one clip)."""

    source: int  # index of the input file
    position: int  # index in that file's "data" list
    dataset: str
    wav: str
    caption: str
    fields: Mapping[str, Any]  # the row as read, all fields
    tags: tuple[str, ...] = ()


def read_caption_file(path: Path, *, source: int, dataset: str) -> list[CaptionItem]:
    """Read and check a baseline-format caption file; every problem names the file and the item."""
    items = []
    for position, row in enumerate(read_caption_rows(path)):
        tags: tuple[str, ...] = ()
        if "tags" in row:
            tags = _parse_labels(row["tags"], file=path, field=f"data[{position}].tags")
        items.append(CaptionItem(source=source, position=position, dataset=dataset, wav=row["wav"],
                                 caption=" ".join(row["caption"].split()), fields=row, tags=tags))
    return items


def _parse_labels(value: Any, *, file: Path, field: str, row: int | None = None) -> tuple[str, ...]:
    """Labels as a tuple of display strings: 'Respiratory_sounds' becomes 'Respiratory sounds'."""
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        parts = value
    else:
        raise DataError("labels must be a list of strings or a comma-separated string", file=file, row=row,
                        field=field)
    labels = []
    for part in parts:
        label = " ".join(part.replace("_", " ").split())
        if label and label not in labels:
            labels.append(label)
    return tuple(labels)


_CSV_KEY_COLUMNS = ("wav", "fname", "file", "filename", "id", "clip_id")
_CSV_LABEL_COLUMNS = ("labels", "tags", "keywords")


@dataclass
class TagIndex:
    """Labels per clip, looked up by the item's wav path, its file name, or its stem (FSD50K clip id)."""

    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add_file(self, path: Path) -> None:
        if path.suffix.lower() == ".csv":
            self._add_csv(path)
        elif path.suffix.lower() == ".json":
            self._add_json(path)
        else:
            raise DataError("tags files must be .json (clip -> labels) or .csv (FSD50K ground truth)", file=path)

    def _add_json(self, path: Path) -> None:
        try:
            mapping = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DataError(f"cannot read ({exc.strerror or exc})", file=path) from exc
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON (line {exc.lineno}: {exc.msg})", file=path) from exc
        if not isinstance(mapping, dict):
            raise DataError('expected an object {"clip or wav path": ["label", ...]}', file=path)
        for key, value in mapping.items():
            self.labels[str(key)] = _parse_labels(value, file=path, field=str(key))

    def _add_csv(self, path: Path) -> None:
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                columns = [c.strip().lower() for c in (reader.fieldnames or [])]
                key_col = next((c for c in _CSV_KEY_COLUMNS if c in columns), None)
                label_col = next((c for c in _CSV_LABEL_COLUMNS if c in columns), None)
                if key_col is None or label_col is None:
                    raise DataError(f"the header needs a clip column ({', '.join(_CSV_KEY_COLUMNS)}) and a "
                                    f"labels column ({', '.join(_CSV_LABEL_COLUMNS)}); found {columns}",
                                    file=path, row=1)
                original = {c.strip().lower(): c for c in reader.fieldnames or []}
                for line_number, record in enumerate(reader, start=2):
                    key = (record.get(original[key_col]) or "").strip()
                    if not key:
                        raise DataError("empty clip id", file=path, row=line_number, field=key_col)
                    self.labels[key] = _parse_labels(record.get(original[label_col]) or "", file=path,
                                                     row=line_number, field=label_col)
        except OSError as exc:
            raise DataError(f"cannot read ({exc.strerror or exc})", file=path) from exc
        except csv.Error as exc:
            raise DataError(f"invalid CSV ({exc})", file=path) from exc

    def lookup(self, wav: str) -> tuple[str, ...] | None:
        for key in (wav, Path(wav).name, Path(wav).stem):
            if key in self.labels:
                return self.labels[key]
        return None
