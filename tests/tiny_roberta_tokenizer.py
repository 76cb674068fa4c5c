"""The tiny RoBERTa-format tokenizer of the tests, now living in `dcase9.models.tiny`.

Kept as a module of its own because `tests/fixtures/make_clap_laion_fixture.py` imports it by this
name from another Python environment (with tests/ on sys.path, and this repository installed there
without its dependencies: `pip install --no-deps -e .`); `dcase9.models.tiny` needs only the standard
library at import time.
"""

from __future__ import annotations

from pathlib import Path

try:
    from dcase9.models.tiny import (MASK_TOKEN, MERGES, SPECIAL_TOKENS, byte_symbols, vocabulary,
                                    write_tiny_roberta_tokenizer)
except ImportError as exc:  # another Python environment without the package
    raise ImportError(f"this needs the package dcase9 in this Python environment: "
                      f"pip install --no-deps -e {Path(__file__).resolve().parents[1]}") from exc

__all__ = ["MASK_TOKEN", "MERGES", "SPECIAL_TOKENS", "byte_symbols", "vocabulary", "write_tiny_roberta_tokenizer"]
