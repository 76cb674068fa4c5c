"""Loading the RoBERTa BPE tokenizer CLAP's text tower was trained with, from a folder or the Hub cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.errors import CheckpointError
from toolkit.hub import offline_requested

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DEFAULT_TOKENIZER = "roberta-base"
MAX_TEXT_TOKENS = 512  # the reference tokenizes with truncation at max_length=512

REQUIRED_TOKENIZER_FILES = ("vocab.json", "merges.txt")  # what a RoBERTa BPE tokenizer needs at least
# Every file of a tokenizer folder that loading reads (downloads fetch these; checkpoints may carry them).
TOKENIZER_FOLDER_FILES = (*REQUIRED_TOKENIZER_FILES, "tokenizer.json", "tokenizer_config.json",
                          "special_tokens_map.json")


def load_roberta_tokenizer(name_or_path: str | Path = DEFAULT_TOKENIZER, *,
                           offline: bool | None = None) -> PreTrainedTokenizerBase:
    """The RoBERTa BPE tokenizer CLAP's text tower was trained with: a Hub id or a local folder.

    The folder (or Hub repository) must hold `vocab.json` and `merges.txt`, as roberta-base does.
    Without a `tokenizer.json` (the cache the reference's slow `RobertaTokenizer` leaves), the fast
    tokenizer is built from those two files and checked to give the slow tokenizer's ids
    (`toolkit.models.roberta_bpe`). `offline` (default: `DCASE9_OFFLINE` or `HF_HUB_OFFLINE`, as for every weight)
    forbids downloads; a Hub id then resolves from the local Hugging Face cache only. We resolve the
    files ourselves because transformers 5 silently builds an empty tokenizer (special tokens only)
    when they are missing.
    """
    from transformers import RobertaTokenizerFast

    folder = Path(name_or_path)
    if not folder.is_dir():
        folder = _tokenizer_snapshot(str(name_or_path), offline=offline_requested() if offline is None else offline)
    missing = [f for f in REQUIRED_TOKENIZER_FILES if not (folder / f).is_file()]
    if missing:
        raise CheckpointError(f"tokenizer folder {folder} lacks {', '.join(missing)} (a RoBERTa BPE tokenizer "
                              f"needs {' and '.join(REQUIRED_TOKENIZER_FILES)})")
    tokenizer = RobertaTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    vocabulary_size = len(json.loads((folder / "vocab.json").read_text(encoding="utf-8")))
    if len(tokenizer) < vocabulary_size:
        raise CheckpointError(f"the tokenizer read from {folder} has {len(tokenizer)} tokens, its vocab.json "
                              f"{vocabulary_size}")
    if not (folder / "tokenizer.json").is_file():
        from toolkit.models.roberta_bpe import check_against_slow_bpe

        check_against_slow_bpe(tokenizer, folder)
    return tokenizer


def _tokenizer_snapshot(repo_id: str, *, offline: bool) -> Path:
    """The local folder of a Hub tokenizer: from the cache, or downloaded unless `offline`."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return Path(snapshot_download(repo_id, local_files_only=offline, allow_patterns=list(TOKENIZER_FOLDER_FILES)))
    except (OSError, ValueError, HfHubHTTPError) as exc:
        how = "downloads are off (offline mode)" if offline else "it could not be downloaded"
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            f"the CLAP text tokenizer '{repo_id}' is not in the local Hugging Face cache and {how}. "
            f"On a machine with internet access run\n"
            f"    hf download {repo_id} {' '.join(REQUIRED_TOKENIZER_FILES)} --local-dir roberta-base-tokenizer\n"
            f"then copy that folder here and pass it with --weight roberta-base-tokenizer=DIR (Python: "
            f"tokenizer=DIR, or weights={{'roberta-base-tokenizer': DIR}}). "
            f"({type(exc).__name__}: {detail})"
        ) from exc
