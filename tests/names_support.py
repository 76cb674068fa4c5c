"""Inputs for the hostile cases of names that collide elsewhere (tests/test_hostile.py, issue 21):
names that are two files on Linux and one on a macOS or Windows disk."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import yaml

CAFE_NFC = unicodedata.normalize("NFC", "café")  # é as one code point
CAFE_NFD = unicodedata.normalize("NFD", "café")  # e, then a combining acute accent


def beside(entry: str, stem: str) -> str:
    """The name of the output `<stem>.wav` in the folder of the zip entry `entry`."""
    return f"{entry.rsplit('/', 1)[0]}/{stem}.wav"


def rename_mixtures(data: Path, renames: dict[str, str]) -> Path:
    """The evaluation set `data` with mixture files renamed (old id -> new id), in its audio folder and
    its CSV."""
    csv = next(data.glob("*.csv"))
    text = csv.read_text(encoding="utf-8")
    for old, new in renames.items():
        audio = next(data.rglob(f"{old}.wav"))
        audio.rename(audio.with_name(f"{new}.wav"))
        text = text.replace(f"{old}.wav,", f"{new}.wav,")
    csv.write_text(text, encoding="utf-8")
    return data


def cafe_set(data: Path) -> Path:
    """The demo evaluation set `data` with its mixtures 1 and 2 renamed to NFC and NFD `café`."""
    return rename_mixtures(data, {"demo-real-case-1": CAFE_NFC, "demo-real-case-2": CAFE_NFD})


def package_data(config: Path, data: dict[str, Path]) -> None:
    """Point submission.yaml's data at `data` (subset -> evaluation set) and its first system's
    estimates at the mixtures themselves (named `<id>.wav`, as `dcase9 infer` names estimates)."""
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    document["data"] = {subset: str(folder) for subset, folder in data.items()}
    document["systems"][0]["estimates"] = {subset: str(next(p for p in folder.iterdir() if p.is_dir()))
                                           for subset, folder in data.items()}
    config.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")


def nothing_packaged(w: Any) -> None:
    """The check of a refused `package` case (`tests/test_hostile.py`): no zip was written."""
    assert not (w.root / "out.zip").exists()
