"""The one-page PDF writer behind the demo's technical report and the package tests' reports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dcase9.submission.pdf import one_page_pdf, write_one_page_pdf


def objects_at_xref_offsets(pdf: bytes) -> list[bytes]:
    """What the cross-reference table points at (each must be `N 0 obj`), via startxref."""
    startxref = int(re.search(rb"startxref\n(\d+)\n%%EOF\n$", pdf).group(1))
    assert pdf[startxref:].startswith(b"xref\n")
    table = pdf[startxref:].split(b"trailer")[0].splitlines()
    count = int(table[1].split()[1])
    entries = table[2:2 + count]
    assert entries[0] == b"0000000000 65535 f "
    return [pdf[int(entry[:10]):int(entry[:10]) + 12] for entry in entries[1:]]


def test_structure_offsets_and_escaping(tmp_path: Path) -> None:
    pdf = one_page_pdf("A (tricky) title \\ with escapes", ["First paragraph. " * 20, "", "Caf\u00e9 \u2192 done"],
                       author="Jane Smith")
    assert pdf.startswith(b"%PDF-1.4\n") and pdf.endswith(b"%%EOF\n")
    starts = objects_at_xref_offsets(pdf)
    assert [s.split(b"\n")[0] for s in starts] == [b"%d 0 obj" % n for n in range(1, len(starts) + 1)]
    assert b"/Count 1" in pdf and b"/MediaBox [0 0 595 842]" in pdf
    assert b"(A \\(tricky\\) title \\\\ with escapes)" in pdf
    assert b"(Caf\xe9 ? done)" in pdf  # Latin-1 kept, other characters replaced
    assert b"/Author (Jane Smith)" in pdf
    length = int(re.search(rb"/Length (\d+) >>\nstream\n", pdf).group(1))
    stream = pdf.split(b"stream\n", 1)[1]
    assert stream[length:].startswith(b"\nendstream")
    # Long paragraphs are wrapped into lines of at most 95 characters: title, 4 + 1 + 1 body lines.
    assert pdf.count(b") Tj T*") == 1 + 4 + 1 + 1
    path = write_one_page_pdf(tmp_path / "sub" / "report.pdf", "Title", ["Body."])
    assert path.read_bytes() == one_page_pdf("Title", ["Body."])


def test_text_beyond_one_page_is_refused() -> None:
    with pytest.raises(ValueError, match="one page"):
        one_page_pdf("Title", ["line"] * 80)
