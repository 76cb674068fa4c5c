"""Caption augmentation for LASS training data (`dcase9 augment`).

An LLM rewrites each training caption into several new ones (seed 003's GPT-4 keyword prompt, or
seed 000's dataset-dependent / dataset-independent prompts); the answers are parsed and filtered,
scored with BERTScore against the original, and those at or above a threshold join the training file.

    from dcase9.augment import AugmentConfig, InputSpec, augment, reselect
    config = AugmentConfig(inputs=[InputSpec(captions="fsd50k.json", dataset="fsd50k")])
    report = augment(config, "out/fsd50k_ddp")          # resumable; writes out/fsd50k_ddp/augmented.json
    report = reselect("out/fsd50k_ddp", threshold=0.8)  # no LLM calls, no scoring

Heavy libraries (torch, transformers, openai, bert-score) are imported only when a run needs them.
"""

from dcase9.augment.config import (
    AugmentConfig,
    BackendConfig,
    BertScoreConfig,
    FilterConfig,
    InputSpec,
    SamplingConfig,
)
from dcase9.augment.parsing import Piece, Verdict, judge, normalise, split_answer
from dcase9.augment.prompts import Prompt, PromptLibrary
from dcase9.augment.run import DryRunReport, RunReport, augment, dry_run, load_saved_config, reselect

__all__ = [
    "AugmentConfig", "BackendConfig", "BertScoreConfig", "FilterConfig", "InputSpec", "SamplingConfig",
    "Piece", "Verdict", "judge", "normalise", "split_answer", "Prompt", "PromptLibrary",
    "DryRunReport", "RunReport", "augment", "dry_run", "load_saved_config", "reselect",
]
