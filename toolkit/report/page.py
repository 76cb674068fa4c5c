"""The listening page's HTML: a fixed template, local script and style files, and the data as JSON.

Nothing on the page comes from the network. The data (captions, system names, folder names: all
user text) is embedded as JSON in a `<script type="application/json">` element with `<`, `>`, `&`
and the JavaScript line separators escaped, so no text can close the element; the script puts
it on the page with `textContent` only, never as HTML.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

from dcase9.files import write_text_atomic

ASSET_FILES = ("report.js", "report.css")
ASSETS_DIR = "assets"
PAGE = "index.html"

# No network at all: scripts, styles, images and audio from files only.
_POLICY = ("default-src 'none'; script-src 'self' file:; style-src 'self' file:; img-src 'self' file: data:; "
           "media-src 'self' file:")

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="assets/report.css">
</head>
<body>
<header>
<h1>{title}</h1>
<p id="subtitle"></p>
</header>
<main>
<noscript><p class="warning">This page needs JavaScript (it runs locally; nothing is fetched from the network).</p></noscript>
<section id="systems"></section>
<section id="comparison"></section>
<section id="clips"></section>
</main>
<script type="application/json" id="report-data">{data}</script>
<script src="assets/report.js"></script>
</body>
</html>
"""


def embed_json(data: Any) -> str:
    """JSON that is safe inside a <script> element: no '<', '>' or '&' (escaped as \\u003c etc.)."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def asset_text(name: str) -> str:
    return resources.files("dcase9.report").joinpath("assets", name).read_text(encoding="utf-8")


def write_page(out_dir: Path, title: str, data: dict[str, Any]) -> Path:
    """The assets first, then index.html (atomically, last: a page never points at missing assets)."""
    for name in ASSET_FILES:
        write_text_atomic(out_dir / ASSETS_DIR / name, asset_text(name))
    page = out_dir / PAGE
    write_text_atomic(page, _TEMPLATE.format(policy=_POLICY, title=html.escape(title), data=embed_json(data)))
    return page
