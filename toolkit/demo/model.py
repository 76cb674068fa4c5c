"""The demo's model: trained with `dcase9 train --preset demo`, resumed when interrupted, reused when
finished and trained with the same settings."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dcase9.api import system_facts


def train_demo_model(train_json: Path, run_dir: Path, *, progress: bool = True,
                     overrides: list[dict[str, Any]] | None = None,
                     announce: Callable[[str], None] | None = None) -> tuple[Any, dict[str, Any]]:
    """Train (or reuse, or resume) the demo preset's model; return the run and what loads it (its
    checkpoint carries its settings and tokenizer: `--system baseline --checkpoint` loads it).

    `overrides` are configuration layers on top of the demo preset (tests use a smaller net).
    What is done and why (no model yet, an interrupted run, settings that changed, or a finished
    model reused) is given to `announce` before it starts, and returned as `why`.
    """
    import shutil

    from dcase9.models.checkpoints import read_checkpoint
    from dcase9.models.description import CHECKPOINT_FORMAT, ENTRY
    from dcase9.training import assemble_config, train
    from dcase9.training.config import config_as_dict
    from dcase9.training.run import LAST_CHECKPOINT, SUMMARY_FILE, TrainResult

    config = assemble_config(preset="demo", overrides=[{"data": {"datafiles": [str(train_json)]}},
                                                       *(overrides or [])])
    last = run_dir / LAST_CHECKPOINT
    result = None
    trained_now = True
    why = f"training the demo model in {run_dir} (no model there yet)"
    if last.is_file():
        saved = read_checkpoint(last)
        entry = saved.get(ENTRY) or {}
        changed = changed_settings(completed_config(entry.get("config") or {}), config_as_dict(config))
        if entry.get("format", 1) != CHECKPOINT_FORMAT:  # an older one does not carry its tokenizer
            changed.append(f"checkpoint format: {entry.get('format', 1)!r} -> {CHECKPOINT_FORMAT}")
        steps, total = int(saved.get("global_step", 0)), config.trainer.max_steps or 0
        if changed:
            why = (f"training the demo model in {run_dir} again: it was trained with other settings "
                   f"({'; '.join(changed)})")
            if any(key.startswith("data.datafiles") for key in changed):
                why += ". The demo data are elsewhere now: was the demo folder moved or copied?"
        elif steps < total:
            why = f"resuming the interrupted demo training in {run_dir} at step {steps} of {total}"
        else:
            why = f"reusing the demo model trained earlier in {run_dir} ({steps} steps, same settings)"
    if announce is not None:
        announce(why)
    if last.is_file():
        if changed:
            shutil.rmtree(run_dir)  # made by another version of the demo, or for data elsewhere: start over
        elif steps < total:
            result = train(config, run_dir, system=system_facts(config.system), resume=True, progress=progress,
                           lightning_info=False)
        else:
            trained_now = False
            summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
            # What the training that finished it did (a summary written before start_step was recorded: 0).
            result = TrainResult(run_dir, last, start_step=int(summary.get("start_step", 0)),
                                 global_step=int(saved["global_step"]), seconds=float(summary.get("seconds", 0.0)),
                                 throughput=summary.get("throughput", {}), skipped=summary.get("skipped", {}),
                                 validation=summary.get("validation", {}),
                                 infer_command=summary.get("infer_command", ""),
                                 no_infer_command=summary.get("no_infer_command", ""))
    if result is None:
        result = train(config, run_dir, system=system_facts(config.system), progress=progress, lightning_info=False)
    return result, {"checkpoint": last, "trained_now": trained_now, "why": why}


def completed_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved run configuration with the settings added since it was written at their defaults (what
    the run did), so that a new setting alone does not count as a change; as saved when it no longer
    validates (every difference then shows)."""
    from pydantic import ValidationError

    from dcase9.training.config import TrainConfig, config_as_dict

    try:
        return config_as_dict(TrainConfig.model_validate(saved))
    except (ValidationError, ValueError):
        return saved


def changed_settings(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """`key: old -> new` for every setting (dotted key) that differs between two nested configurations."""
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += changed_settings(a, b, f"{prefix}{key}.")
        elif a != b:
            changes.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changes
