"""Finding secrets in package entries: values of secret-looking environment variables, and key formats.

Besides an entry's bytes as they are, a PDF is searched where text hides in a PDF: inside its
compressed (FlateDecode) streams, which is how pdflatex writes every page, decompressed with a
bound; in its string operands, decoded (escapes, hex strings, UTF-16 text strings with a byte
order mark) and joined within a TJ array (where kerning splits words); and as UTF-16 text. Zip
comments and extra fields are searched by the checker with `scan`.

A hit names the variable or the key format and where it lies, never the secret itself.
"""

from __future__ import annotations

import fnmatch
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from dcase9.submission.profile import SecretRules

PDF_MAGIC = b"%PDF-"
# Decompression bounds per PDF: a page's text is kilobytes; images may be megabytes.
PDF_STREAM_LIMIT = 64 * 2**20  # decompressed bytes searched per stream
PDF_TOTAL_LIMIT = 256 * 2**20  # decompressed bytes searched per file
_CHUNK = 2**20  # compressed bytes fed to the decompressor at a time

_STREAM = re.compile(rb"stream\r?\n")
_STRING_START = re.compile(rb"\(|<(?!<)|\[|\]")
_LITERAL_STOP = re.compile(rb"[\\()]")
_HEX = re.compile(rb"[0-9A-Fa-f\s]*")
_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("f"): b"\f",
            ord("("): b"(", ord(")"): b")", ord("\\"): b"\\"}


@dataclass(frozen=True)
class SecretHit:
    what: str  # "the value of environment variable OPENAI_API_KEY" / "text in the openai-api-key format"
    offset: int  # byte offset in what was searched (the entry's bytes, unless `where` says otherwise)
    where: str = ""  # "" for the entry's bytes, else e.g. "in a compressed PDF stream at byte 1234"


@dataclass
class EntryScan:
    hits: list[SecretHit]
    limits: list[str]  # parts that were not searched completely, and why


class SecretScanner:
    def __init__(self, rules: SecretRules, environ: Mapping[str, str]):
        names = [n.lower() for n in rules.environment_names]
        self.environment: list[tuple[str, bytes]] = sorted(
            (name, value.encode("utf-8", "surrogateescape")) for name, value in environ.items()
            if len(value) >= rules.min_value_length and any(fnmatch.fnmatchcase(name.lower(), p) for p in names))
        self.patterns = [(name, re.compile(pattern.encode())) for name, pattern in rules.patterns.items()]

    def scan(self, data: bytes, where: str = "") -> list[SecretHit]:
        """Secrets in `data` as it is: one hit per variable or format, at its first place."""
        hits = []
        for name, value in self.environment:
            at = data.find(value)
            if at >= 0:
                hits.append(SecretHit(f"the value of environment variable {name}", at, where))
        for name, pattern in self.patterns:
            found = pattern.search(data)
            if found:
                hits.append(SecretHit(f"text in the {name} format", found.start(), where))
        return hits

    def scan_entry(self, data: bytes) -> EntryScan:
        """`scan` of the bytes, and for a PDF of every place text hides in it (see the module).

        One hit per secret: where it is first found (the bytes, then the decoded views in order).
        """
        hits = self.scan(data)
        limits: list[str] = []
        if data.startswith(PDF_MAGIC):
            for view, where in _pdf_views(data, limits):
                hits += self.scan(view, where)
        seen: set[str] = set()
        unique = []
        for hit in hits:
            if hit.what not in seen:
                seen.add(hit.what)
                unique.append(hit)
        return EntryScan(unique, limits)


def line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


# --------------------------------------------------------------------------------------------
# Where text hides in a PDF


def _pdf_views(data: bytes, limits: list[str]) -> Iterator[tuple[bytes, str]]:
    """Decoded views of a PDF: the strings outside its streams, its UTF-16 text, then each
    decompressed stream with its own strings and UTF-16 text."""
    streams = list(_streams(data))
    outside, at = [], 0
    for start, body in streams:
        outside.append(data[at:start])
        at = start + len(body)
    outside.append(data[at:])
    yield from _text_views(b"\n".join(outside), "")
    if b"\x00" in data:
        yield data.replace(b"\x00", b""), "in UTF-16 text"
    budget = PDF_TOTAL_LIMIT
    for start, stream in streams:
        if budget <= 0:
            limits.append(f"streams after byte {start} were not decompressed: the file's streams exceed "
                          f"{PDF_TOTAL_LIMIT:,} bytes decompressed")
            return
        inflated, complete = _inflate(stream, min(PDF_STREAM_LIMIT, budget))
        if inflated is None:
            continue  # not a FlateDecode stream (an image in another filter, or damaged)
        budget -= len(inflated)
        if not complete:
            limits.append(f"the stream at byte {start} decompresses to more than {len(inflated):,} bytes; "
                          "only those were searched")
        where = f" in a compressed PDF stream at byte {start}"
        yield inflated, where.strip()
        if _looks_textual(inflated):
            yield from _text_views(inflated, where)
        elif b"\x00" in inflated:
            yield inflated.replace(b"\x00", b""), "in UTF-16 text" + where


def _looks_textual(data: bytes) -> bool:
    """Mostly printable ASCII at its start: a content or object stream, not an image or a font."""
    head = data[:4096]
    printable = sum(1 for byte in head if 32 <= byte < 127 or byte in (9, 10, 13))
    return bool(head) and printable >= 0.85 * len(head)


def _text_views(data: bytes, where: str) -> Iterator[tuple[bytes, str]]:
    strings = pdf_strings(data)
    if strings:
        yield strings, "in a PDF text string" + where
    if b"\x00" in data and where:
        yield data.replace(b"\x00", b""), "in UTF-16 text" + where


def _streams(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(offset, raw bytes) of each `stream ... endstream` body."""
    at = 0
    while True:
        found = _STREAM.search(data, at)
        if found is None:
            return
        end = data.find(b"endstream", found.end())
        if end < 0:
            return
        yield found.end(), data[found.end():end]
        at = end + len(b"endstream")


def _inflate(stream: bytes, limit: int) -> tuple[bytes | None, bool]:
    """The zlib-decompressed stream, at most `limit` bytes, and whether that is all of it.

    None when the stream is not zlib data. Memory stays within `limit` whatever the stream holds.
    """
    decompressor = zlib.decompressobj()
    out = bytearray()
    try:
        for at in range(0, len(stream), _CHUNK):
            pending = stream[at:at + _CHUNK]
            while pending:
                out += decompressor.decompress(pending, limit - len(out) + 1)
                if len(out) > limit:
                    return bytes(out[:limit]), False
                pending = decompressor.unconsumed_tail
            if decompressor.eof:
                break
    except zlib.error:
        return (bytes(out), True) if out else (None, True)
    return bytes(out), True


def _decode_text_string(raw: bytes) -> bytes:
    """A PDF text string as UTF-8 when it is UTF-16 with a byte order mark, else as it is."""
    if raw.startswith(b"\xfe\xff"):
        return raw[2:].decode("utf-16-be", "replace").encode("utf-8")
    if raw.startswith(b"\xff\xfe"):
        return raw[2:].decode("utf-16-le", "replace").encode("utf-8")
    return raw


def _literal(data: bytes, at: int) -> tuple[bytes, int]:
    """The literal string starting after its '(' at `at`: (decoded bytes, offset after its ')')."""
    out = bytearray()
    depth = 1
    while True:
        found = _LITERAL_STOP.search(data, at)
        if found is None:
            out += data[at:]
            return bytes(out), len(data)
        out += data[at:found.start()]
        at = found.end()
        char = found.group()
        if char == b"(":
            depth += 1
            out += char
        elif char == b")":
            depth -= 1
            if depth == 0:
                return bytes(out), at
            out += char
        else:  # backslash escape
            if at >= len(data):
                return bytes(out), at
            code = data[at]
            if code in _ESCAPES:
                out += _ESCAPES[code]
                at += 1
            elif 0x30 <= code <= 0x37:  # up to three octal digits
                digits = re.match(rb"[0-7]{1,3}", data[at:at + 3])
                assert digits is not None
                out.append(int(digits.group(), 8) & 0xFF)
                at += len(digits.group())
            elif code in (0x0A, 0x0D):  # a line continuation
                at += 2 if data[at:at + 2] == b"\r\n" else 1
            else:
                at += 1  # an unknown escape stands for the character itself
                out.append(code)


def pdf_strings(data: bytes) -> bytes:
    """Every string operand of PDF syntax, decoded, one per line; the strings of one array (a TJ
    operand, where kerning splits words) are joined without a separator."""
    lines: list[bytes] = []
    array: list[bytes] | None = None
    at = 0
    while True:
        found = _STRING_START.search(data, at)
        if found is None:
            break
        token = found.group()
        at = found.end()
        if token == b"[":
            if array is not None:
                lines.append(b"".join(array))
            array = []
            continue
        if token == b"]":
            if array is not None:
                lines.append(b"".join(array))
                array = None
            continue
        if token == b"(":
            raw, at = _literal(data, at)
        else:  # a hex string
            digits = _HEX.match(data, at)
            assert digits is not None
            if data[digits.end():digits.end() + 1] != b">":
                continue  # not a hex string after all
            hexes = re.sub(rb"\s", b"", digits.group())
            at = digits.end() + 1
            raw = bytes.fromhex((hexes + b"0" * (len(hexes) % 2)).decode("ascii"))
        text = _decode_text_string(raw)
        if array is not None:
            array.append(text)
        else:
            lines.append(text)
    if array:
        lines.append(b"".join(array))
    return b"\n".join(line for line in lines if line)
