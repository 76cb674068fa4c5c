"""The tiny RoBERTa-format tokenizer of the tests, now living in `toolkit.models.tiny`.

Kept as a module of its own because `tests/fixtures/make_clap_laion_fixture.py` imports it by this
name from another Python environment (with tests/ on sys.path); `toolkit.models.tiny` needs only
the standard library at import time.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import toolkit.models.tiny  # noqa: F401
except ImportError:  # imported with only tests/ on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toolkit.models.tiny import (MASK_TOKEN, MERGES, SPECIAL_TOKENS, byte_symbols, vocabulary,  # noqa: E402
                                 write_tiny_roberta_tokenizer)

__all__ = ["MASK_TOKEN", "MERGES", "SPECIAL_TOKENS", "byte_symbols", "vocabulary", "write_tiny_roberta_tokenizer"]
