"""A resumable augmentation run: plan requests, ask the LLM, judge and score, assemble the outputs.

Files in the output folder:

* `config.yaml`       the run's settings (what the logs belong to; `--reselect` reads it)
* `responses.jsonl`   one record per LLM answer (or failure): the ledger of paid calls
* `candidates.jsonl`  one record per piece of every answer: raw text, cleaned text, verdict, BERTScore
* `augmented.json`    the caption file(s), originals plus selected captions, baseline format
* `summary.json`      counts per dataset and prompt, score statistics, tokens used
* `scores.png`        histogram of BERTScore F1 with the threshold marked

Each request has a key: a hash of the prompt id, the rendered prompt, the backend's identity and
the sampling settings. An answer in `responses.jsonl` is never asked for again; a failed request is
retried when the run is repeated. Candidates of one answer are written in one durable append (a
"group"); a group that a hard kill cut short is dropped on resume and scored again, without an LLM
call. Selection by threshold happens only when the outputs are assembled, so `reselect` can change
the threshold without touching the LLM or BERTScore. Each prompt has its own selection (its
`selection_threshold`: 0.7 for the DDPs and the DIP as in seed 000, none for seed 003's GPT-4 prompt);
a threshold in the configuration (`--threshold`) replaces it for every prompt.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcase9.augment.backends import ANSWER_BYTES_PER_TOKEN, LLMRequest, LLMResult, answer_limit_bytes, make_backend
from dcase9.augment.config import AugmentConfig
from dcase9.augment.io import CaptionItem, TagIndex, read_caption_file
from dcase9.augment.parsing import Piece, Verdict, judge, normalise, split_answer
from dcase9.augment.plan import Plan, PlannedRequest, is_selected
from dcase9.augment.progress import Progress, SilentProgress
from dcase9.augment.prompts import DDP_SELECTOR, Prompt, PromptLibrary
from dcase9.config import dump_config, load_config
from dcase9.errors import ConfigError, Dcase9Error
from dcase9.files import (JsonlAppender, check_no_overlap, exclusive_lock, json_text, read_jsonl, remove_partial_files, sha256_text,
                           write_files_atomic, write_text_atomic)

CONFIG_FILE = "config.yaml"
RESPONSES_FILE = "responses.jsonl"
CANDIDATES_FILE = "candidates.jsonl"
AUGMENTED_FILE = "augmented.json"
SUMMARY_FILE = "summary.json"
HISTOGRAM_FILE = "scores.png"

#: Scores are stored rounded; selection keeps threshold <= F1 < 1 (F1 = 1: a copy of the original).
SCORE_DECIMALS = 6
_NOTES_SHOWN = 5


# --------------------------------------------------------------------------------------------------
# Planning


def load_items(config: AugmentConfig) -> list[CaptionItem]:
    """All caption items of all inputs, with labels from their own `tags` field or the tags files."""
    index = TagIndex()
    for path in config.tags:
        index.add_file(Path(path))
    items: list[CaptionItem] = []
    for source, spec in enumerate(config.inputs):
        for item in read_caption_file(Path(spec.captions), source=source, dataset=spec.dataset):
            if not item.tags:
                labels = index.lookup(item.wav)
                if labels:
                    item = dataclasses.replace(item, tags=labels)
            items.append(item)
    return items


def _request_key(prompt: Prompt, rendered: str, config: AugmentConfig) -> str:
    identity = {"prompt_id": prompt.id, "prompt": rendered, "backend": config.backend.fingerprint(),
                "sampling": config.sampling.model_dump(mode="json")}
    return sha256_text(json.dumps(identity, sort_keys=True))[:32]


def _request_seed(base_seed: int, key: str) -> int:
    return int(sha256_text(f"{base_seed}:{key}")[:8], 16) & 0x7FFFFFFF


def build_plan(config: AugmentConfig, items: list[CaptionItem], library: PromptLibrary) -> Plan:
    requests: dict[str, PlannedRequest] = {}
    item_requests: list[list[tuple[str, str]]] = []
    labels: list[str] = []
    without_tags = 0
    for item in items:
        chosen: list[tuple[str, str]] = []
        used_ids: set[str] = set()
        for selector in config.prompts:
            prompt = library.resolve(selector, item.dataset)
            if prompt.id in used_ids:
                continue
            used_ids.add(prompt.id)
            label = DDP_SELECTOR if selector == DDP_SELECTOR else prompt.id
            if label not in labels:
                labels.append(label)
            n = config.n_captions or prompt.n_captions
            rendered = prompt.render(item.caption, n, item.tags)
            if prompt.uses_tags and not item.tags:
                without_tags += 1
            key = _request_key(prompt, rendered, config)
            if key not in requests:
                requests[key] = PlannedRequest(key, prompt.id, rendered, item.caption, n,
                                               _request_seed(config.sampling.seed, key), item.dataset, item.wav,
                                               selection_threshold(config, prompt))
            chosen.append((label, key))
        item_requests.append(chosen)
    return Plan(items, requests, item_requests, labels, without_tags)


def prepare(config: AugmentConfig) -> Plan:
    return build_plan(config, load_items(config), PromptLibrary.load(config.prompt_dirs))


# --------------------------------------------------------------------------------------------------
# Logs


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ResponseLog:
    """`responses.jsonl`: answers by key (ok or malformed: never asked again) and failures."""

    def __init__(self, path: Path):
        self.path = path
        contents = read_jsonl(path)
        self._intact = contents.intact
        self.answers: dict[str, dict[str, Any]] = {}
        self.failures: dict[str, dict[str, Any]] = {}
        for line, record in enumerate(contents.records, start=1):
            key, status = record.get("key"), record.get("status")
            if not isinstance(key, str) or status not in ("ok", "malformed", "failed"):
                raise Dcase9Error(f"{path}, record {line}: not a response record (key/status missing)")
            if status == "failed":
                self.failures[key] = record
            else:
                self.answers.setdefault(key, record)
        self._appender: JsonlAppender | None = None

    def open(self) -> None:
        self._appender = JsonlAppender(self.path, keep_bytes=self._intact)

    def close(self) -> None:
        if self._appender is not None:
            self._appender.close()

    def add(self, request: PlannedRequest, result: LLMResult, backend: str) -> dict[str, Any]:
        record = {
            "key": request.key, "status": result.status, "prompt_id": request.prompt_id,
            "dataset": request.dataset, "wav": request.wav, "original": request.original,
            "n": request.n, "seed": request.seed, "backend": backend, "text": result.text, "cut": result.cut,
            "finish_reason": result.finish_reason, "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens, "attempts": result.attempts,
            "error": result.error, "time": _now(),
        }
        assert self._appender is not None
        self._appender.append([record])
        if result.status == "failed":
            self.failures[request.key] = record
        else:
            self.answers[request.key] = record
        return record


class CandidateLog:
    """`candidates.jsonl`: the latest complete group of judged pieces per request key."""

    def __init__(self, path: Path):
        self.path = path
        contents = read_jsonl(path)
        self.groups: dict[str, list[dict[str, Any]]] = {}
        keep = 0
        open_group: list[dict[str, Any]] = []
        for record, end in zip(contents.records, contents.ends, strict=True):
            try:
                key, index, size = record["key"], int(record["i"]), int(record["of"])
            except (KeyError, TypeError, ValueError):
                raise Dcase9Error(f"{path}: not a candidate record: {json.dumps(record)[:200]}") from None
            if open_group and (key != open_group[0]["key"] or index != len(open_group)):
                raise Dcase9Error(f"{path}: a group of candidates for request {open_group[0]['key']} is cut "
                                  f"short in the middle of the file; move the file away to score again")
            if index != len(open_group):
                raise Dcase9Error(f"{path}: candidate {index} of request {key} has no predecessors")
            open_group.append(record)
            if len(open_group) == size:
                self.groups[key] = open_group
                open_group = []
                keep = end
        # An unfinished group at the end is a write a hard kill cut short: it is dropped.
        self._keep = keep
        self._appender: JsonlAppender | None = None

    def open(self) -> None:
        self._appender = JsonlAppender(self.path, keep_bytes=self._keep)

    def close(self) -> None:
        if self._appender is not None:
            self._appender.close()

    def add(self, key: str, group: list[dict[str, Any]]) -> None:
        assert self._appender is not None
        self._appender.append(group)
        if group:
            self.groups[key] = group


# --------------------------------------------------------------------------------------------------
# Judging and scoring


def judge_fingerprint(config: AugmentConfig, scorer_fingerprint: str) -> str:
    """How the pieces of an answer were judged; groups judged differently are judged again."""
    return f"{scorer_fingerprint}; words {config.filters.min_words}-{config.filters.max_words}"


def scorer_fingerprint_for(config: AugmentConfig) -> str:
    """The fingerprint `BertScorer` will report, without loading the model."""
    from dcase9.augment.bertscore import default_layer

    layers = config.bertscore.num_layers
    if layers is None:
        layers = default_layer(config.bertscore.model)
    return f"{config.bertscore.model}/L{layers}" + ("/rescaled" if config.bertscore.rescale_with_baseline else "")


def pieces_of(answer: dict[str, Any], request: PlannedRequest, config: AugmentConfig) -> list[Piece]:
    if answer.get("status") != "ok" or not isinstance(answer.get("text"), str):
        return []
    pieces = split_answer(answer["text"], request.n)
    truncated = answer.get("finish_reason") == "length" or bool(answer.get("cut"))
    return judge(pieces, request.original, min_words=config.filters.min_words,
                 max_words=config.filters.max_words, truncated=truncated)


def judge_and_score(batch: list[tuple[PlannedRequest, dict[str, Any]]], config: AugmentConfig, scorer: Any,
                    judged_with: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """Candidate groups for a batch of answers; all OK pieces are scored in one BERTScore call."""
    judged = [(request, answer, pieces_of(answer, request, config)) for request, answer in batch]
    texts, refs = [], []
    for request, _, pieces in judged:
        for piece in pieces:
            if piece.verdict is Verdict.OK:
                texts.append(piece.text)
                refs.append(request.original)
    scores = iter(scorer.score(texts, refs) if texts else [])
    groups = []
    for request, answer, pieces in judged:
        group = []
        for index, piece in enumerate(pieces):
            record: dict[str, Any] = {
                "key": request.key, "i": index, "of": len(pieces), "prompt_id": request.prompt_id,
                "dataset": request.dataset, "backend": answer.get("backend"), "wav": request.wav,
                "original": request.original, "raw": piece.raw, "text": piece.text,
                "verdict": piece.verdict.value,  # judge() gave every piece one
                "bertscore_f1": None, "bertscore_p": None, "bertscore_r": None, "judged_with": judged_with,
            }
            if piece.verdict is Verdict.OK:
                s = next(scores)
                record.update(bertscore_f1=round(s.f1, SCORE_DECIMALS), bertscore_p=round(s.precision, SCORE_DECIMALS),
                              bertscore_r=round(s.recall, SCORE_DECIMALS))
            group.append(record)
        groups.append((request.key, group))
    return groups


def selection_threshold(config: AugmentConfig, prompt: Prompt) -> float | None:
    """The run's `--threshold` if given, else the prompt's own selection (None: the rule filters only)."""
    return config.bertscore.threshold if config.bertscore.threshold is not None else prompt.selection_threshold


# --------------------------------------------------------------------------------------------------
# Running


@dataclass
class RunReport:
    out_dir: Path
    summary: dict[str, Any]
    outputs: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def failed_requests(self) -> int:
        return int(self.summary["totals"]["failed"])


@dataclass
class DryRunReport:
    items: int
    requests: int
    answered: int
    pending: int
    example_prompt: str | None
    prompts: list[str]


def save_config(config: AugmentConfig, out_dir: Path) -> None:
    write_text_atomic(out_dir / CONFIG_FILE, dump_config(config))


def load_saved_config(out_dir: Path) -> AugmentConfig:
    path = Path(out_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{out_dir}: no earlier run here ({CONFIG_FILE} not found)")
    return load_config(path, AugmentConfig)


def dry_run(config: AugmentConfig, out_dir: Path) -> DryRunReport:
    """What a run would ask for, without calling anything or writing anything."""
    plan = prepare(config)
    answered = ResponseLog(Path(out_dir) / RESPONSES_FILE).answers
    pending = [r for r in plan.requests.values() if r.key not in answered]
    return DryRunReport(len(plan.items), len(plan.requests), len(plan.requests) - len(pending), len(pending),
                        pending[0].prompt if pending else None, plan.prompt_labels)


def augment(config: AugmentConfig, out_dir: str | Path, *, progress: Progress | None = None) -> RunReport:
    """Run (or resume) an augmentation into `out_dir` and write its outputs."""
    out_dir = Path(out_dir)
    progress = progress or SilentProgress()
    check_no_overlap({"--out": out_dir}, config.input_paths())
    with exclusive_lock(out_dir, "augment"):
        plan = prepare(config)
        remove_partial_files(out_dir)
        responses = ResponseLog(out_dir / RESPONSES_FILE)
        candidates = CandidateLog(out_dir / CANDIDATES_FILE)
        notes: list[str] = []
        pending = [r for r in plan.requests.values() if r.key not in responses.answers]
        judged_with = judge_fingerprint(config, scorer_fingerprint_for(config))
        unjudged = [(r, responses.answers[r.key]) for r in plan.requests.values()
                    if r.key in responses.answers
                    and candidates.groups.get(r.key, [{}])[0].get("judged_with") != judged_with
                    and pieces_of(responses.answers[r.key], r, config)]
        stale = sum(1 for key in responses.answers if key not in plan.requests)
        if stale:
            notes.append(f"{stale} answers in {RESPONSES_FILE} belong to other settings (prompts, model or "
                         f"sampling changed) and are not used")

        scorer = backend = None
        try:
            # Cheapest checks first, and everything before the first paid call: an API client only
            # checks its key; the BERTScore model loads in seconds; a local LLM may take minutes.
            if pending and config.backend.kind == "openai":
                backend = make_backend(config.backend, config.sampling)
            if pending or unjudged:
                from dcase9.augment.bertscore import BertScorer

                scorer = BertScorer(config.bertscore)
            if pending and backend is None:
                backend = make_backend(config.backend, config.sampling)
            # Saved and opened once everything is ready: a refused run leaves no settings a later run would
            # inherit, and no logs.
            save_config(config, out_dir)
            responses.open()
            candidates.open()
            if unjudged:
                _score_earlier_answers(unjudged, config, scorer, judged_with, candidates, progress)
            if pending:
                _ask(pending, config, backend, scorer, judged_with, responses, candidates, progress, notes)
        finally:
            if backend is not None:
                backend.close()
            responses.close()
            candidates.close()
        return assemble(config, out_dir, plan, responses, candidates, notes)


def _score_earlier_answers(unjudged: list[tuple[PlannedRequest, dict[str, Any]]], config: AugmentConfig,
                           scorer: Any, judged_with: str, candidates: CandidateLog, progress: Progress) -> None:
    """Answers logged by an earlier run but not (or differently) judged: no LLM call needed."""
    progress.start("scoring earlier answers", len(unjudged))
    chunk = max(1, config.bertscore.batch_size // 4)
    for start in range(0, len(unjudged), chunk):
        batch = unjudged[start:start + chunk]
        for key, group in judge_and_score(batch, config, scorer, judged_with):
            candidates.add(key, group)
        progress.advance(len(batch))
    progress.finish()


def _ask(pending: list[PlannedRequest], config: AugmentConfig, backend: Any, scorer: Any, judged_with: str,
         responses: ResponseLog, candidates: CandidateLog, progress: Progress, notes: list[str]) -> None:
    by_key = {r.key: r for r in pending}
    backend_label = f"{config.backend.kind}:{config.backend.resolved_model()}"
    to_score: list[tuple[PlannedRequest, dict[str, Any]]] = []
    buffered = 0
    consecutive_failures = 0
    shown = Counter()

    def flush() -> None:
        nonlocal buffered
        for key, group in judge_and_score(to_score, config, scorer, judged_with):
            candidates.add(key, group)
        to_score.clear()
        buffered = 0

    def requests() -> Iterator[LLMRequest]:
        for r in pending:
            yield LLMRequest(r.key, r.prompt, r.seed)

    progress.start(f"asking {backend_label}", len(pending))
    try:
        for result in backend.run(requests()):
            request = by_key[result.key]
            record = responses.add(request, result, backend_label)
            progress.advance(tokens=result.prompt_tokens + result.completion_tokens, failed=result.status == "failed")
            if result.status == "failed":
                consecutive_failures += 1
                _note(progress, notes, shown, "failed", f"no answer for '{request.original[:60]}' "
                      f"({result.error}); it is asked again when the run is repeated")
                if consecutive_failures >= config.backend.max_consecutive_failures:
                    raise Dcase9Error(f"{consecutive_failures} requests failed in a row (last: {result.error}); "
                                      f"stopping. Answers so far are kept; fix the server and run again")
                continue
            consecutive_failures = 0
            if result.cut:
                _note(progress, notes, shown, "cut", f"the answer for '{request.original[:60]}' was longer than "
                      f"{cut_limit(config)}; only its start is kept")
            if result.status == "malformed":
                _note(progress, notes, shown, "malformed", f"unusable answer for '{request.original[:60]}' "
                      f"({result.error}); logged and skipped")
                continue
            pieces = pieces_of(record, request, config)
            if not any(p.verdict is Verdict.OK for p in pieces) and pieces:
                _note(progress, notes, shown, "no caption", f"no usable caption in the answer for "
                      f"'{request.original[:60]}'; logged with the reasons in {CANDIDATES_FILE}")
            to_score.append((request, record))
            buffered += sum(1 for p in pieces if p.verdict is Verdict.OK)
            if buffered >= config.bertscore.batch_size:
                flush()
        if to_score:
            flush()
    finally:
        progress.finish()
    for kind, count in shown.items():
        if count > _NOTES_SHOWN:
            notes.append(f"{count} requests had the problem '{kind}' (first {_NOTES_SHOWN} shown); "
                         f"see {RESPONSES_FILE} and {CANDIDATES_FILE}")


def cut_limit(config: AugmentConfig) -> str:
    """The bound on what is kept of an answer, in words."""
    tokens = config.sampling.max_new_tokens
    return (f"{answer_limit_bytes(tokens):,} bytes ({ANSWER_BYTES_PER_TOKEN} per token asked for, "
            f"--max-new-tokens {tokens})")


def _note(progress: Progress, notes: list[str], shown: Counter, kind: str, message: str) -> None:
    shown[kind] += 1
    if shown[kind] <= _NOTES_SHOWN:
        progress.note(message)


def reselect(out_dir: str | Path, threshold: float | None = None, *, progress: Progress | None = None) -> RunReport:
    """Assemble the outputs again from the logs, with another threshold: no LLM call, no scoring."""
    out_dir = Path(out_dir)
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"the threshold must be between 0 and 1 (got {threshold})")
    with exclusive_lock(out_dir, "augment"):
        config = load_saved_config(out_dir)
        if threshold is not None:
            config.bertscore.threshold = threshold
        plan = prepare(config)
        responses = ResponseLog(out_dir / RESPONSES_FILE)
        candidates = CandidateLog(out_dir / CANDIDATES_FILE)
        report = assemble(config, out_dir, plan, responses, candidates, [])
        save_config(config, out_dir)
        return report


# --------------------------------------------------------------------------------------------------
# Outputs


def assemble(config: AugmentConfig, out_dir: Path, plan: Plan, responses: ResponseLog, candidates: CandidateLog,
             notes: list[str]) -> RunReport:
    """Write augmented.json, summary.json and scores.png from the logs."""
    from dcase9.augment.report import build_summary, histogram_png

    originals_by_wav: dict[str, set[str]] = defaultdict(set)
    for item in plan.items:
        originals_by_wav[item.wav].add(normalise(item.caption))
    used_by_wav: dict[str, set[str]] = {wav: set(norms) for wav, norms in originals_by_wav.items()}

    rows: list[dict[str, Any]] = []
    added: Counter[tuple[str, str]] = Counter()
    repeated: Counter[tuple[str, str]] = Counter()
    for item, chosen in zip(plan.items, plan.item_requests, strict=True):
        rows.append(dict(item.fields))
        for label, key in chosen:
            for record in candidates.groups.get(key, []):
                if not is_selected(record, plan.requests[key].threshold):
                    continue
                norm = normalise(record["text"])
                if norm in used_by_wav[item.wav]:
                    repeated[(item.dataset, label)] += 1  # already a caption of this clip
                    continue
                used_by_wav[item.wav].add(norm)
                rows.append({**item.fields, "caption": record["text"]})
                added[(item.dataset, label)] += 1

    unjudged = {key for key, request in plan.requests.items()
                if key in responses.answers and key not in candidates.groups
                and pieces_of(responses.answers[key], request, config)}
    summary = build_summary(config, plan, responses.answers, responses.failures, candidates.groups,
                            added, repeated, unjudged)
    outputs = {"augmented": out_dir / AUGMENTED_FILE, "summary": out_dir / SUMMARY_FILE,
               "histogram": out_dir / HISTOGRAM_FILE, "responses": out_dir / RESPONSES_FILE,
               "candidates": out_dir / CANDIDATES_FILE, "config": out_dir / CONFIG_FILE}
    summary["outputs"] = {name: path.name for name, path in outputs.items()}
    # The three are replaced together: a failed or interrupted run never leaves a new summary next to the
    # previous augmented.json or histogram.
    write_files_atomic({outputs["augmented"]: json_text({"data": rows}).encode(),
                        outputs["summary"]: json_text(summary).encode(),
                        outputs["histogram"]: histogram_png(plan, candidates.groups)})
    if summary["totals"]["cut"]:
        notes.append(f"{summary['totals']['cut']} answer(s) were longer than {cut_limit(config)} and were cut "
                     f"there (\"cut\": true in {RESPONSES_FILE}); a server that sends more than it was asked for "
                     f"is misconfigured or broken")
    if summary["totals"]["unjudged"]:
        notes.append(f"{summary['totals']['unjudged']} answers are not scored yet; run `dcase9 augment` "
                     f"without --reselect to score them")
    return RunReport(out_dir, summary, outputs, notes)
