"""Helpers for the listening-page tests: small evaluation sets, a stand-in ATS, reading the page's
embedded data, and driving the system Chromium (`chromium --headless --dump-dom`)."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import soundfile as sf

CHROMIUM = Path("/usr/bin/chromium")


def wav_bytes(samples: np.ndarray, subtype: str = "FLOAT") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(samples, dtype=np.float32), 16000, subtype=subtype, format="WAV")
    return buffer.getvalue()


def write_eval_synth(root: Path, n: int, samples: int = 400, seed: int = 0) -> Path:
    """An eval-synth folder with `n` short mixtures (official CSV name, file_name,query)."""
    rng = np.random.default_rng(seed)
    audio = root / "lass_evaluation_synth"
    audio.mkdir(parents=True)
    lines = ["file_name,query"]
    for k in range(n):
        (audio / f"synth-{k:04d}.wav").write_bytes(wav_bytes(rng.uniform(-0.5, 0.5, samples), "PCM_16"))
        lines.append(f"synth-{k:04d}.wav,\"sound number {k}, somewhere\"")
    (root / "lass_synthetic_evaluation.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_scaled_estimates(data: Path, files: Sequence[tuple[str, str]], out: Path, gain: float) -> Path:
    """Estimates `<id>.wav` that are the mixtures times `gain` (files: (id, mixture file name))."""
    out.mkdir(parents=True)
    for clip, name in files:
        samples, _ = sf.read(data / "lass_evaluation_synth" / name, dtype="float32")
        (out / f"{clip}.wav").write_bytes(wav_bytes(samples * gain))
    return out


def stand_in_ats(specs: Sequence[Any], estimates: Sequence[np.ndarray], device: Any) -> list[float]:
    """A reference-free per-clip score in [0, 1] under the name 'ats' (the page only reads the
    column; real ATS needs CLAP weights, tested in test_ats.py)."""
    return [float(np.clip(np.sqrt(np.mean(e.astype(np.float64) ** 2)) * 3.0, 0.0, 1.0)) for e in estimates]


def page_data(page_dir: Path) -> dict[str, Any]:
    text = (page_dir / "index.html").read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S)
    assert match is not None, "no embedded data"
    return json.loads(match.group(1))


def local_file(page_dir: Path, url: str) -> Path:
    """The file a relative (or file://) URL on the page points at."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    assert not parts.scheme and not parts.netloc, f"not a local URL: {url}"
    return (page_dir / unquote(parts.path)).resolve()


def row_files(page_dir: Path, data: dict[str, Any], row: dict[str, Any]) -> dict[str, Path]:
    """Every audio file the page plays for one row, from the embedded data."""
    files = {"mixture": local_file(page_dir, data["audio"]["mixture"] + row.get("mix", row["f"] + ".wav"))}
    if data["audio"]["reference"]:
        files["reference"] = local_file(page_dir, data["audio"]["reference"] + row["f"] + ".wav")
    for k, system in enumerate(data["systems"]):
        files[f"system-{k + 1}"] = local_file(page_dir, system["base"] + row["f"] + ".wav")
    return files


# --------------------------------------------------------------------------------------------
# The browser


class PageDom(HTMLParser):
    """What a dumped DOM shows: clip rows (data-id), audio and image sources, and some texts."""

    def __init__(self, text: str):
        super().__init__()
        self.clip_ids: list[str] = []
        self.audio: list[dict[str, str]] = []
        self.images: list[str] = []
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.title = ""
        self._in: str | None = None
        self.status = ""
        self.captions: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attributes))
        if tag == "tr" and attributes.get("class") == "clip":
            self.clip_ids.append(attributes["data-id"])
        elif tag == "audio":
            self.audio.append(attributes)
        elif tag == "img":
            self.images.append(attributes.get("src", ""))
        elif tag == "title":
            self._in = "title"
        elif tag == "p" and attributes.get("id") == "status":
            self._in = "status"
        elif tag == "td" and attributes.get("class") == "caption":
            self._in = "caption"
            self.captions.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"title", "p", "td"}:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "title":
            self.title += data
        elif self._in == "status":
            self.status += data
        elif self._in == "caption":
            self.captions[-1] += data


def chromium_dump(url: str, profile: Path, budget_ms: int = 5000) -> str:
    """The DOM after the page's scripts ran, from headless Chromium (no network, fresh profile)."""
    shutil.rmtree(profile, ignore_errors=True)
    result = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio",
         f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
        capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout
