"""A minimal one-page PDF writer: a title and a few paragraphs of plain text.

Enough for a technical-report stand-in (the demo's package, the tests' packages); real reports
come from LaTeX or a word processor. The output is a valid PDF 1.4 file: catalog, one A4 page,
its content stream, the standard Helvetica fonts (no embedding), an info dictionary, and a
cross-reference table with exact offsets. Text is Latin-1; other characters become '?'.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from dcase9.files import write_bytes_atomic

PAGE_SIZE = (595, 842)  # A4 in points
_MARGIN = 56
_TITLE_SIZE, _TITLE_LEADING = 16, 22
_BODY_SIZE, _BODY_LEADING = 10, 14
_BODY_CHARACTERS = 95  # per line: Helvetica 10 pt averages about 5 pt a character on 483 pt


def _pdf_string(text: str) -> bytes:
    """A PDF literal string: Latin-1, with backslash and parentheses escaped."""
    data = text.encode("latin-1", "replace")
    return b"(" + data.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _wrap(paragraphs: Sequence[str], width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in paragraphs:
        lines += textwrap.wrap(" ".join(paragraph.split()), width) or [""]
    return lines


def one_page_pdf(title: str, paragraphs: Sequence[str] = (), *, author: str | None = None) -> bytes:
    """A one-page PDF: `title` in bold, then each paragraph wrapped to the page width (an empty
    string is a blank line). Raises ValueError when the text does not fit on the page."""
    width, height = PAGE_SIZE
    titles = _wrap([title], _BODY_CHARACTERS * _BODY_SIZE // _TITLE_SIZE)
    body = _wrap(paragraphs, _BODY_CHARACTERS)
    if len(titles) * _TITLE_LEADING + (len(body) + 1) * _BODY_LEADING > height - 2 * _MARGIN:
        raise ValueError(f"the text does not fit on one page ({len(body)} lines)")
    ops = [b"BT", b"/F2 %d Tf %d TL %d %d Td" % (_TITLE_SIZE, _TITLE_LEADING, _MARGIN, height - _MARGIN)]
    ops += [_pdf_string(line) + b" Tj T*" for line in titles]
    ops.append(b"/F1 %d Tf %d TL T*" % (_BODY_SIZE, _BODY_LEADING))
    ops += [_pdf_string(line) + b" Tj T*" for line in body]
    ops.append(b"ET")
    content = b"\n".join(ops)
    info = b"<< /Title " + _pdf_string(title) + (b" /Author " + _pdf_string(author) if author else b"") + \
        b" /Producer (dcase9) >>"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R /F2 6 0 R >> >> >>" % (width, height),
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
        info,
    ]
    out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"  # the comment's high bytes mark the file as binary
    offsets = []
    for number, body_bytes in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body_bytes + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, len(objects), xref)
    return out


def write_one_page_pdf(path: str | Path, title: str, paragraphs: Sequence[str] = (), *,
                       author: str | None = None) -> Path:
    """`one_page_pdf` written to `path` (atomically); returns the path."""
    path = Path(path)
    data = one_page_pdf(title, paragraphs, author=author)
    write_bytes_atomic(path, data)
    return path
