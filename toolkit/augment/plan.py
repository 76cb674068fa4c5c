"""What an augmentation run will ask (`Plan`, built by `dcase9.augment.run.build_plan`) and which
candidates it keeps (`is_selected`); shared by the run and its report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dcase9.augment.io import CaptionItem
from dcase9.augment.parsing import Verdict


@dataclass(frozen=True)
class PlannedRequest:
    key: str
    prompt_id: str
    prompt: str  # rendered text sent to the LLM
    original: str  # the caption it rewrites (BERTScore reference)
    n: int
    seed: int
    dataset: str
    wav: str  # first clip that asks it (identical prompts are asked once)
    threshold: float | None = None  # BERTScore F1 its candidates need; None: the rule filters only


@dataclass
class Plan:
    items: list[CaptionItem]
    requests: dict[str, PlannedRequest]  # by key, in the order first needed
    #: per item, (prompt label, request key) for each prompt the item is augmented with
    item_requests: list[list[tuple[str, str]]]
    prompt_labels: list[str]  # column order for reports
    items_without_tags: int  # among items whose prompt uses tags


def is_selected(record: dict[str, Any], threshold: float | None) -> bool:
    """A candidate that passed the filters, and, with a threshold, threshold <= BERTScore F1 < 1."""
    if record.get("verdict") != Verdict.OK.value:
        return False
    if threshold is None:
        return True
    f1 = record.get("bertscore_f1")
    return f1 is not None and threshold <= f1 < 1.0
