"""Loading the RoBERTa BPE tokenizer CLAP's text tower was trained with, from a folder or the Hub cache:
as transformers' `RobertaTokenizerFast` (`load_roberta_tokenizer`), or as `RobertaBpe`, the same
tokenizer on the `tokenizers` library alone, for text queries (`load_roberta_bpe`: importing
transformers costs about 1 s of `dcase9 infer`'s start-up)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcase9.errors import CheckpointError
from dcase9.hub import offline_requested

if TYPE_CHECKING:
    import torch
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
    (`dcase9.models.roberta_bpe`). `offline` (default: `DCASE9_OFFLINE` or `HF_HUB_OFFLINE`, as for every weight)
    forbids downloads; a Hub id then resolves from the local Hugging Face cache only. We resolve the
    files ourselves because transformers 5 silently builds an empty tokenizer (special tokens only)
    when they are missing.
    """
    from transformers import RobertaTokenizerFast

    folder = _tokenizer_folder(name_or_path, offline)
    return _checked(RobertaTokenizerFast.from_pretrained(str(folder), local_files_only=True), folder)


def load_roberta_bpe(name_or_path: str | Path = DEFAULT_TOKENIZER, *, offline: bool | None = None) -> RobertaBpe:
    """`load_roberta_tokenizer`'s tokenizer (same folders, same checks, same ids) as a `RobertaBpe`,
    without importing transformers."""
    folder = _tokenizer_folder(name_or_path, offline)
    return _checked(RobertaBpe.from_folder(folder), folder)


class RobertaBpe:
    """RoBERTa's byte-level BPE tokenizer on the `tokenizers` library: the pipeline transformers'
    `RobertaTokenizerFast` runs (its backend is a `tokenizers.Tokenizer`: from the folder's
    `tokenizer.json`, or built from `vocab.json` and `merges.txt` as below), without transformers.

    It does one thing, what `ClapEncoder.encode_text` asks of a tokenizer: a batch of texts ->
    `{"input_ids", "attention_mask"}` tensors, each text wrapped in `<s>` ... `</s>`, truncated at
    `max_length` tokens and padded to the longest of the batch. For anything else, use
    `load_roberta_tokenizer`. `tests/test_clap.py` compares its ids with transformers'.
    """

    def __init__(self, backend: Any, pad_token: str = "<pad>"):
        self.backend = backend
        self.pad_token = pad_token
        self.pad_token_id = backend.token_to_id(pad_token)
        if self.pad_token_id is None:
            raise CheckpointError(f"the tokenizer has no padding token {pad_token!r}")
        self._max_length: int | None = None

    @classmethod
    def from_folder(cls, folder: str | Path) -> RobertaBpe:
        from tokenizers import AddedToken, Tokenizer
        from tokenizers.models import BPE
        from tokenizers.pre_tokenizers import ByteLevel
        from tokenizers.processors import RobertaProcessing

        folder = Path(folder)
        special = _special_tokens(folder)
        if (folder / "tokenizer.json").is_file():
            return cls(Tokenizer.from_file(str(folder / "tokenizer.json")), special["pad_token"])
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
        backend = Tokenizer(BPE(vocab, [m for m in merges if len(m) == 2], dropout=None, continuing_subword_prefix="",
                                end_of_word_suffix="", fuse_unk=False))
        backend.pre_tokenizer = ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
        missing = [t for t in (special["cls_token"], special["sep_token"]) if t not in vocab]
        if missing:
            raise CheckpointError(f"{folder}/vocab.json lacks the special token(s) {', '.join(missing)}")
        backend.post_processor = RobertaProcessing((special["sep_token"], vocab[special["sep_token"]]),
                                                   (special["cls_token"], vocab[special["cls_token"]]),
                                                   trim_offsets=True, add_prefix_space=False)
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in dict.fromkeys(special.values())])
        return cls(backend, special["pad_token"])

    def __len__(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    def ids(self, text: str) -> list[int]:
        """One text's ids, `<s>` and `</s>` included (no truncation, no padding)."""
        self.backend.no_truncation()
        self._max_length = None
        return list(self.backend.encode(text).ids)

    def __call__(self, texts: Sequence[str], *, padding: bool = True, truncation: bool = True,
                 max_length: int = MAX_TEXT_TOKENS, return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        import torch

        if isinstance(texts, str) or padding is not True or truncation is not True or return_tensors != "pt":
            raise ValueError("RobertaBpe tokenizes a list of texts, truncated and padded to the longest, into torch "
                             "tensors; for anything else use load_roberta_tokenizer (transformers)")
        if self._max_length != max_length:
            self.backend.enable_truncation(max_length)
            self.backend.enable_padding(pad_id=self.pad_token_id, pad_token=self.pad_token)
            self._max_length = max_length
        encodings = self.backend.encode_batch(list(texts))
        return {"input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),
                "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)}


# RoBERTa's special tokens; a folder's tokenizer_config.json or special_tokens_map.json may rename them.
_SPECIAL_TOKENS = {"cls_token": "<s>", "pad_token": "<pad>", "sep_token": "</s>", "unk_token": "<unk>",
                   "bos_token": "<s>", "eos_token": "</s>", "mask_token": "<mask>"}


def _special_tokens(folder: Path) -> dict[str, str]:
    tokens = dict(_SPECIAL_TOKENS)
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / name
        if path.is_file():
            settings = json.loads(path.read_text(encoding="utf-8"))
            for key in tokens:
                value = settings.get(key)
                value = value.get("content") if isinstance(value, dict) else value
                if isinstance(value, str):
                    tokens[key] = value
    return tokens


def _tokenizer_folder(name_or_path: str | Path, offline: bool | None) -> Path:
    """The folder of a tokenizer given as a folder or a Hub id, checked to hold vocab.json and merges.txt."""
    folder = Path(name_or_path)
    if not folder.is_dir():
        offline = offline_requested() if offline is None else offline
        folder = _registry_tokenizer(str(name_or_path), offline) or _tokenizer_snapshot(str(name_or_path),
                                                                                       offline=offline)
    missing = [f for f in REQUIRED_TOKENIZER_FILES if not (folder / f).is_file()]
    if missing:
        raise CheckpointError(f"tokenizer folder {folder} lacks {', '.join(missing)} (a RoBERTa BPE tokenizer "
                              f"needs {' and '.join(REQUIRED_TOKENIZER_FILES)})")
    return folder


def _checked(tokenizer: Any, folder: Path) -> Any:
    """`tokenizer`, once it holds all of vocab.json and, built from vocab.json and merges.txt, gives
    the slow tokenizer's ids."""
    vocabulary_size = len(json.loads((folder / "vocab.json").read_text(encoding="utf-8")))
    if len(tokenizer) < vocabulary_size:
        raise CheckpointError(f"the tokenizer read from {folder} has {len(tokenizer)} tokens, its vocab.json "
                              f"{vocabulary_size}")
    if not (folder / "tokenizer.json").is_file():
        from dcase9.models.roberta_bpe import check_against_slow_bpe

        check_against_slow_bpe(tokenizer, folder)
    return tokenizer


def _registry_tokenizer(repo_id: str, offline: bool) -> Path | None:
    """The registry's roberta-base tokenizer (pinned revision, checked sums) when `repo_id` is one of its
    repositories; None for any other Hub id."""
    from dcase9.hub import resolve_weight
    from dcase9.weights import TOKENIZER_WEIGHT, weight_entry

    entry = weight_entry(TOKENIZER_WEIGHT)
    if repo_id not in {s.huggingface_snapshot.repo for s in entry.sources if s.huggingface_snapshot is not None}:
        return None
    return resolve_weight(TOKENIZER_WEIGHT, entry, offline=offline).path


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
