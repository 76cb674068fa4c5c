"""`dcase9 augment`: LLM caption augmentation with filtering and BERTScore selection.

A thin shell over `dcase9.augment`: it builds an `AugmentConfig` from the options (on top of
`--config` or the output folder's saved config.yaml), runs it with a rich progress bar and prints
the summary tables.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

from dcase9.cli._common import RESUMES, app, console, err_console, friendly_errors
from dcase9.cli._tables import print_table
from dcase9.errors import ConfigError

_INPUT = "Input"
_PROMPTS = "Prompts"
_LLM = "LLM backend"
_SAMPLING = "Sampling"
_SELECTION = "Filtering and BERTScore selection"
_RUN = "Run"


class BackendKind(str, Enum):
    hf = "hf"
    openai = "openai"


class DType(str, Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class RichRunProgress:
    """The API's progress protocol drawn as a rich progress bar: count, rate, ETA, tokens, failures."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None
        self.tokens = 0
        self.failed = 0

    def start(self, task: str, total: int) -> None:
        from dcase9.progress import progress_bar

        self.tokens = self.failed = 0
        self._bar = progress_bar("requests", fields=True, console=err_console)
        self._bar.start()
        self._task = self._bar.add_task(task, total=total, extra="")

    def advance(self, steps: int = 1, *, tokens: int = 0, failed: bool = False) -> None:
        self.tokens += tokens
        self.failed += int(failed)
        extra = []
        if self.tokens:
            extra.append(f"{self.tokens:,} tokens")
        if self.failed:
            extra.append(f"[red]{self.failed} failed[/]")
        self._bar.update(self._task, advance=steps, extra=" ".join(extra))

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def note(self, message: str) -> None:
        target = self._bar.console if self._bar is not None else err_console
        target.print(f"[yellow]note:[/] {message}", highlight=False, markup=True)


def _absolute(path: Path) -> str:
    return str(path.expanduser().resolve())


def _inputs(captions: list[Path], datasets: list[str]) -> list[dict[str, str]]:
    if datasets and len(datasets) not in (1, len(captions)):
        raise ConfigError(f"--dataset was given {len(datasets)} times for {len(captions)} caption files: give it "
                          f"once (for all files) or once per file, in the same order")
    names = datasets * len(captions) if len(datasets) == 1 else datasets or [p.stem for p in captions]
    return [{"captions": _absolute(p), "dataset": name} for p, name in zip(captions, names, strict=True)]


def _list_prompts(prompt_dirs: list[Path]) -> None:
    from rich.table import Table

    from dcase9.augment.prompts import PromptLibrary

    library = PromptLibrary.load([Path(d) for d in prompt_dirs])
    table = Table(title="Prompt library ('--prompt ddp' picks the DDP of each input's --dataset)")
    table.add_column("id", no_wrap=True)
    table.add_column("kind")
    table.add_column("datasets")
    for name in ("n", "tags", "F1 >=", "title"):
        table.add_column(name)
    for prompt_id, loaded in sorted(library.prompts.items()):
        p = loaded.prompt
        selection = f"{p.selection_threshold:g}" if p.selection_threshold is not None else "none"
        table.add_row(prompt_id, p.kind, "\n".join(p.datasets) or "-", str(p.n_captions),
                      "yes" if p.uses_tags else "-", selection, p.title)
    print_table(table, console)
    console.print("F1 >=: the BERTScore F1 against the original a candidate needs by default (none: the rule "
                  "filters only); --threshold sets one for every prompt.", highlight=False)
    for folder in dict.fromkeys(loaded.path.parent for loaded in library.prompts.values()):
        console.print(f"prompt files in {folder}", highlight=False, soft_wrap=True)


@app.command()
@friendly_errors(on_interrupt=RESUMES)
def augment(
    ctx: typer.Context,
    captions: Optional[list[Path]] = typer.Argument(
        None, show_default=False, metavar="CAPTIONS",
        help='Caption files in the baseline training format {"data": [{"wav", "caption"}, ...]}. Leave out to '
             "resume the run saved in --out."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Output folder: logs, augmented.json, summary.json, scores.png. Re-running "
                                  "into it resumes; options not given are taken from its config.yaml.",
        rich_help_panel=_INPUT),
    dataset: Optional[list[str]] = typer.Option(
        None, "--dataset", "-d", show_default=False,
        help="Dataset of the caption files (once for all, or once per file): fsd50k, wavcaps-audioset, "
             "wavcaps-bbc, wavcaps-soundbible pick their DDP; any name is fine for reports. "
             "Default: the file name.", rich_help_panel=_INPUT),
    tags: Optional[list[Path]] = typer.Option(
        None, "--tags", show_default=False,
        help="Labels per clip: a JSON object mapping wav path, file name or clip id to a list of labels, or "
             "a CSV with a clip column (fname, wav, id) and a labels column, like FSD50K's ground truth. An "
             "item's own 'tags' field wins.", rich_help_panel=_INPUT),
    config_file: Optional[Path] = typer.Option(
        None, "--config", help="YAML file with the run's settings (see docs/augment.md); options override it.",
        rich_help_panel=_INPUT),
    prompt: Optional[list[str]] = typer.Option(
        None, "--prompt", "-p", show_default=False,
        help="'ddp' (each dataset's DDP), 'dip', 'gpt4-keywords', another prompt id, or a prompt .yaml file. "
             "Repeat to compare prompts. Default: ddp.", rich_help_panel=_PROMPTS),
    prompt_dir: Optional[list[Path]] = typer.Option(
        None, "--prompt-dir", show_default=False,
        help="Folder of your own prompt .yaml files (same id as a built-in one replaces it).",
        rich_help_panel=_PROMPTS),
    n_captions: Optional[int] = typer.Option(
        None, "--n-captions", "-n", show_default=False,
        help="Captions asked per request. Default: the prompt's (4 for DDP/DIP, 5 for gpt4-keywords).",
        rich_help_panel=_PROMPTS),
    list_prompts: bool = typer.Option(False, "--list-prompts", help="List the prompt library and exit.",
                                      rich_help_panel=_PROMPTS),
    backend: Optional[BackendKind] = typer.Option(
        None, "--backend", "-b", show_default=False,
        help="hf: local transformers model (default, Phi-2); openai: OpenAI API or an OpenAI-compatible "
             "server (--base-url).", rich_help_panel=_LLM),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", show_default=False,
        help="hf: hub id or local folder (default microsoft/phi-2); openai: model name (required).",
        rich_help_panel=_LLM),
    base_url: Optional[str] = typer.Option(
        None, "--base-url", show_default=False,
        help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (vLLM, llama.cpp, Ollama).",
        rich_help_panel=_LLM),
    api_key_env: Optional[str] = typer.Option(
        None, "--api-key-env", show_default=False,
        help="Environment variable that holds the API key (default OPENAI_API_KEY). The key itself is never "
             "written anywhere.", rich_help_panel=_LLM),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", "-j", show_default=False,
                                              help="Requests in flight at once (API; default 8).",
                                              rich_help_panel=_LLM),
    rpm: Optional[float] = typer.Option(None, "--rpm", show_default=False,
                                        help="At most this many requests per minute (API; default: no limit).",
                                        rich_help_panel=_LLM),
    timeout: Optional[float] = typer.Option(
        None, "--timeout", show_default=False,
        help="Seconds one attempt of an API request may take in all: connecting, waiting and reading the whole "
             "answer (default 60). Each retry gets as long again.", rich_help_panel=_LLM),
    max_retries: Optional[int] = typer.Option(
        None, "--max-retries", show_default=False,
        help="Retries of the openai client on 429, 5xx and timeouts (default 4); we add 3 more with backoff.",
        rich_help_panel=_LLM),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", show_default=False,
                                             help="Prompts per generate() call (hf; default 8).",
                                             rich_help_panel=_LLM),
    device: Optional[str] = typer.Option(None, "--device", show_default=False,
                                         help="Device of the hf model: auto (default), cpu, cuda, cuda:1.",
                                         rich_help_panel=_LLM),
    dtype: Optional[DType] = typer.Option(
        None, "--dtype", show_default=False,
        help="hf weights: auto (bf16 on GPUs that have it, else fp32; fp16 overflows in Phi-2's attention).",
        rich_help_panel=_LLM),
    temperature: Optional[float] = typer.Option(None, "--temperature", show_default=False,
                                                help="Sampling temperature (default 0.8; 0 = greedy).",
                                                rich_help_panel=_SAMPLING),
    top_p: Optional[float] = typer.Option(None, "--top-p", show_default=False,
                                          help="Nucleus sampling mass (default 0.95).", rich_help_panel=_SAMPLING),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", show_default=False,
                                                 help="Longest answer in tokens (default 256).",
                                                 rich_help_panel=_SAMPLING),
    seed: Optional[int] = typer.Option(None, "--seed", show_default=False,
                                       help="Base seed; each request's seed derives from it (default 0).",
                                       rich_help_panel=_SAMPLING),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", "-t", show_default=False,
        help="Keep candidates with BERTScore F1 >= this (and < 1, a copy), for every prompt. Default: each "
             "prompt's own selection (DDPs and DIP 0.7, seed 000; gpt4-keywords: the filters only, seed 003).",
        rich_help_panel=_SELECTION),
    min_words: Optional[int] = typer.Option(None, "--min-words", show_default=False,
                                            help="Shorter candidates are 'incomplete' (default 3).",
                                            rich_help_panel=_SELECTION),
    max_words: Optional[int] = typer.Option(None, "--max-words", show_default=False,
                                            help="Longer candidates are 'too_long' (default 40).",
                                            rich_help_panel=_SELECTION),
    bertscore_model: Optional[str] = typer.Option(
        None, "--bertscore-model", show_default=False,
        help="Model as bert-score names it (default roberta-large, layer 17).", rich_help_panel=_SELECTION),
    bertscore_model_path: Optional[Path] = typer.Option(
        None, "--bertscore-model-path", show_default=False,
        help="Local folder holding that model, for offline use.", rich_help_panel=_SELECTION),
    bertscore_layer: Optional[int] = typer.Option(
        None, "--bertscore-layer", show_default=False,
        help="Layer to compare (default: bert-score's for the model).", rich_help_panel=_SELECTION),
    bertscore_batch_size: Optional[int] = typer.Option(None, "--bertscore-batch-size", show_default=False,
                                                       help="Sentences per BERTScore batch (default 64).",
                                                       rich_help_panel=_SELECTION),
    bertscore_device: Optional[str] = typer.Option(None, "--bertscore-device", show_default=False,
                                                   help="auto (default), cpu, cuda.", rich_help_panel=_SELECTION),
    rescale_with_baseline: Optional[bool] = typer.Option(
        None, "--rescale-with-baseline/--no-rescale-with-baseline", show_default=False,
        help="Rescale scores with bert-score's baseline (default off: raw scores, as seed 000).",
        rich_help_panel=_SELECTION),
    reselect: bool = typer.Option(
        False, "--reselect", help="Only re-select from the logs in --out (e.g. with another --threshold): no "
                                  "LLM calls, no scoring.", rich_help_panel=_RUN),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be asked, call nothing.",
                                 rich_help_panel=_RUN),
    set_values: list[str] = typer.Option(
        [], "--set", help="KEY.PATH=VALUE for any configuration key, e.g. --set filters.max_words=30 (repeatable; "
                          "applied after the other options).", rich_help_panel=_RUN),  # noqa: B008
) -> None:
    """Augment training captions with an LLM; keep the candidates close to the original by BERTScore.

    Examples:

      dcase9 augment fsd50k.json -d fsd50k -o out/fsd50k            (DDP + Phi-2, seed 000)

      dcase9 augment fsd50k.json -d fsd50k --tags dev.csv -p gpt4-keywords -b openai -m gpt-4o -o out/gpt

      dcase9 augment wavcaps_as.json -d wavcaps-audioset -b openai -m Qwen/Qwen2.5-7B-Instruct
        --base-url http://localhost:8000/v1 -j 64 -o out/as

      dcase9 augment -o out/fsd50k --reselect -t 0.8
    """
    from dcase9.augment import run as runner
    from dcase9.augment.config import AugmentConfig
    from dcase9.config import deep_merge, load_config, nested, parse_assignment, parse_model

    if list_prompts:
        _list_prompts(list(prompt_dir or []))
        return
    if out is None:
        raise ConfigError("give the output folder with --out")

    if reselect:
        given = [param.opts[0] if param.opts else param.name for param in ctx.command.params
                 if param.name not in ("reselect", "out", "threshold")
                 and getattr(ctx.get_parameter_source(param.name), "name", "") == "COMMANDLINE"]
        if given:
            raise ConfigError(f"--reselect only takes --out and --threshold (also given: "
                              f"{', '.join(given)})")
        report = runner.reselect(out, threshold)
        _print_report(report)
        return

    if config_file is not None:
        base = load_config(config_file, AugmentConfig).resolve_paths(config_file.parent.resolve())
    elif (out / runner.CONFIG_FILE).is_file():
        base = runner.load_saved_config(out)
    else:
        base = None
    data: dict[str, Any] = base.model_dump(mode="json") if base is not None else {}
    if captions:
        data["inputs"] = _inputs(captions, list(dataset or []))
    elif dataset:
        raise ConfigError("--dataset names the caption files given on the command line; none were given")
    if not data.get("inputs"):
        raise ConfigError("give caption files (or --config, or an --out folder of an earlier run to resume)")
    # Changing the model (or backend) without naming the rest must not inherit settings of the old one.
    if backend is not None and backend.value != data.get("backend", {}).get("kind", "hf") and model is None:
        data.get("backend", {}).pop("model", None)
    if bertscore_model is not None and bertscore_model != data.get("bertscore", {}).get("model"):
        data.get("bertscore", {}).pop("num_layers", None)
        data.get("bertscore", {}).pop("model_path", None)
    if model is not None and Path(model).expanduser().exists():
        model = _absolute(Path(model))
    overrides: dict[str, Any] = {
        "tags": [_absolute(p) for p in tags] if tags else None,
        "prompts": [_absolute(Path(p)) if p.endswith((".yaml", ".yml")) else p for p in prompt] if prompt else None,
        "prompt_dirs": [_absolute(p) for p in prompt_dir] if prompt_dir else None,
        "n_captions": n_captions,
        "backend.kind": backend.value if backend else None, "backend.model": model, "backend.base_url": base_url,
        "backend.api_key_env": api_key_env, "backend.concurrency": concurrency,
        "backend.requests_per_minute": rpm, "backend.timeout_s": timeout, "backend.max_retries": max_retries,
        "backend.batch_size": batch_size, "backend.device": device, "backend.dtype": dtype.value if dtype else None,
        "sampling.temperature": temperature, "sampling.top_p": top_p, "sampling.max_new_tokens": max_new_tokens,
        "sampling.seed": seed,
        "filters.min_words": min_words, "filters.max_words": max_words,
        "bertscore.threshold": threshold, "bertscore.model": bertscore_model,
        "bertscore.model_path": _absolute(bertscore_model_path) if bertscore_model_path else None,
        "bertscore.num_layers": bertscore_layer, "bertscore.batch_size": bertscore_batch_size,
        "bertscore.device": bertscore_device, "bertscore.rescale_with_baseline": rescale_with_baseline,
    }
    for dotted, value in overrides.items():
        if value is not None:
            data = deep_merge(data, nested(dotted, value))
    for text in set_values:  # last: any key of the configuration
        data = deep_merge(data, parse_assignment(text))
    config = parse_model(data, AugmentConfig, source="the command line options and configuration")

    if dry_run:
        plan = runner.dry_run(config, out)
        console.print(f"{plan.items:,} caption items, prompts {', '.join(plan.prompts)}: {plan.requests:,} "
                      f"requests, {plan.answered:,} already answered in {out}, {plan.pending:,} to ask.")
        if plan.example_prompt:
            console.rule("first prompt to send")
            console.print(plan.example_prompt, markup=False, highlight=False, soft_wrap=True)
        return

    progress = RichRunProgress()
    try:
        report = runner.augment(config, out, progress=progress)
    finally:
        progress.finish()
    _print_report(report)
    if report.failed_requests:
        err_console.print(f"[red]{report.failed_requests} requests got no answer; run the same command again "
                          f"to retry them (answered ones are not asked again).[/]")
        raise typer.Exit(1)


def _print_report(report: Any) -> None:
    from dcase9.augment.report import summary_tables

    for table in summary_tables(report.summary):
        print_table(table, console)
    for note in report.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False)
    tokens = report.summary["tokens"]
    if tokens["prompt"] or tokens["completion"]:
        console.print(f"tokens: {tokens['prompt']:,} prompt + {tokens['completion']:,} completion")
    console.print(f"wrote {report.outputs['augmented']} ({report.summary['captions']['total']:,} captions), "
                  f"{report.outputs['summary'].name}, {report.outputs['histogram'].name}", highlight=False)
