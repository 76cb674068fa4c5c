"""The baseline's caption-audio JSON files: `{"data": [{"wav": ..., "caption": ..., ...}, ...]}`.

The training data (`dcase9 train --data`) and the inputs and outputs of `dcase9 augment` share this
format (Clotho, FSD50K, WavCaps as the baseline distributes them); rows may carry more fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dcase9.errors import DataError


def read_caption_rows(path: Path, *, what: str = "caption file") -> list[dict[str, Any]]:
    """The rows of a caption file, each checked to have non-empty string `wav` and `caption`.

    Every problem is a `DataError` naming the file and the item (`data[3].caption`); `what` names
    the file's role in the message ("training datafile").
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read the {what} ({exc.strerror or exc})", file=path) from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", file=path) from exc
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise DataError('expected an object {"data": [{"wav": ..., "caption": ...}, ...]}', file=path)
    rows = document["data"]
    if not rows:
        raise DataError("the 'data' list is empty", file=path)
    for position, row in enumerate(rows):
        where = f"data[{position}]"
        if not isinstance(row, dict):
            raise DataError("each item must be an object with 'wav' and 'caption'", file=path, field=where)
        for key in ("wav", "caption"):
            value = row.get(key)
            if not isinstance(value, str) or not value.strip():
                raise DataError("missing, or not a non-empty string", file=path, field=f"{where}.{key}")
    return rows
