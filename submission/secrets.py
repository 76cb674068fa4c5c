"""Finding secrets in package entries: values of secret-looking environment variables, and key formats.

A hit names the variable or the key format and where it lies, never the secret itself.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass

from submission.profile import SecretRules


@dataclass(frozen=True)
class SecretHit:
    what: str  # "the value of environment variable OPENAI_API_KEY" / "text in the openai-api-key format"
    offset: int  # byte offset in the entry


class SecretScanner:
    def __init__(self, rules: SecretRules, environ: Mapping[str, str]):
        names = [n.lower() for n in rules.environment_names]
        self.environment: list[tuple[str, bytes]] = sorted(
            (name, value.encode("utf-8", "surrogateescape")) for name, value in environ.items()
            if len(value) >= rules.min_value_length and any(fnmatch.fnmatchcase(name.lower(), p) for p in names))
        self.patterns = [(name, re.compile(pattern.encode())) for name, pattern in rules.patterns.items()]

    def scan(self, data: bytes) -> list[SecretHit]:
        hits = []
        for name, value in self.environment:
            at = data.find(value)
            if at >= 0:
                hits.append(SecretHit(f"the value of environment variable {name}", at))
        for name, pattern in self.patterns:
            found = pattern.search(data)
            if found:
                hits.append(SecretHit(f"text in the {name} format", found.start()))
        return hits


def line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1
