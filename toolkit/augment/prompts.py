"""The prompt library: YAML files a user can read, copy, edit and keep under version control.

Built-in prompts live in `toolkit/augment/prompts/`. A template may use three placeholders:
`{caption}` (the original caption), `{n}` (how many captions to ask for) and `{tags}` (the clip's
labels, comma-separated, or the prompt's `no_tags` text). Anything else in braces is an error, so a
typo cannot silently reach thousands of paid requests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from dcase9.augment.config import normalise_dataset_name
from dcase9.config import StrictModel, load_config
from dcase9.errors import ConfigError

BUILTIN_DIR = Path(__file__).with_name("prompts")
PLACEHOLDERS = ("caption", "n", "tags")
_BRACED = re.compile(r"\{([^{}]*)\}")
#: The selector that picks each dataset's dataset-dependent prompt.
DDP_SELECTOR = "ddp"


class Prompt(StrictModel):
    """One prompt file."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    title: str
    kind: Literal["ddp", "dip", "keywords", "custom"]
    datasets: list[str] = Field(default_factory=list, description="Datasets a DDP is written for.")
    n_captions: int = Field(ge=1, le=20)
    source: str = Field(description="Where the text comes from (paper, or ours).")
    template: str
    no_tags: str = "none"
    selection_threshold: float | None = Field(
        default=0.7, ge=0, le=1,
        description="BERTScore F1 a candidate needs to be kept (seed 000: 0.7); null: the rule filters only "
                    "(seed 003). `--threshold` overrides it for every prompt of a run.")

    @field_validator("datasets")
    @classmethod
    def _normalise(cls, value: list[str]) -> list[str]:
        return [normalise_dataset_name(v) for v in value]

    @field_validator("template")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        names = _BRACED.findall(value)
        unknown = sorted({n for n in names if n not in PLACEHOLDERS})
        if unknown:
            raise ValueError(f"unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
                             f"allowed: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
        stray = _BRACED.sub("", value)
        if "{" in stray or "}" in stray:
            raise ValueError("unbalanced '{' or '}'")
        for required in ("caption", "n"):
            if required not in names:
                raise ValueError(f"must contain {{{required}}}")
        return value

    @property
    def uses_tags(self) -> bool:
        return "{tags}" in self.template

    def render(self, caption: str, n: int, tags: tuple[str, ...] = ()) -> str:
        values = {"caption": caption, "n": str(n), "tags": ", ".join(tags) if tags else self.no_tags}
        # One pass over the template, so braces inside a caption are never read as placeholders.
        return _BRACED.sub(lambda m: values[m.group(1)], self.template)


@dataclass(frozen=True)
class LoadedPrompt:
    prompt: Prompt
    path: Path
    builtin: bool


def load_prompt_file(path: Path) -> Prompt:
    return load_config(path, Prompt)


class PromptLibrary:
    """Built-in prompts plus the user's (a user prompt with a built-in's id replaces it)."""

    def __init__(self, prompts: dict[str, LoadedPrompt]):
        self.prompts = prompts

    @classmethod
    def load(cls, extra_dirs: list[Path] | tuple[Path, ...] = ()) -> PromptLibrary:
        prompts: dict[str, LoadedPrompt] = {}
        for folder, builtin in [(BUILTIN_DIR, True), *[(Path(d), False) for d in extra_dirs]]:
            if not folder.is_dir():
                raise ConfigError(f"{folder}: prompt folder not found")
            seen_here: dict[str, Path] = {}
            for path in sorted(folder.glob("*.y*ml")):
                prompt = load_prompt_file(path)
                if prompt.id in seen_here:
                    raise ConfigError(f"{path}: prompt id '{prompt.id}' is also used by {seen_here[prompt.id]}")
                seen_here[prompt.id] = path
                prompts[prompt.id] = LoadedPrompt(prompt, path, builtin)
        return cls(prompts)

    def get(self, prompt_id: str) -> Prompt:
        if prompt_id not in self.prompts:
            raise ConfigError(f"unknown prompt '{prompt_id}'; known: {', '.join(sorted(self.prompts))} "
                              f"(or '{DDP_SELECTOR}', or a prompt .yaml file)")
        return self.prompts[prompt_id].prompt

    def ddp_for(self, dataset: str) -> Prompt:
        dataset = normalise_dataset_name(dataset)
        matches = [p.prompt for p in self.prompts.values() if p.prompt.kind == "ddp" and dataset in p.prompt.datasets]
        if not matches:
            known = sorted({d for p in self.prompts.values() if p.prompt.kind == "ddp" for d in p.prompt.datasets})
            raise ConfigError(f"no dataset-dependent prompt (DDP) for dataset '{dataset}'; DDPs exist for "
                              f"{', '.join(known)}. Name the dataset with --dataset, or choose another prompt "
                              f"(--prompt dip, --prompt gpt4-keywords, or your own .yaml)")
        if len(matches) > 1:
            raise ConfigError(f"several DDPs claim dataset '{dataset}': {', '.join(p.id for p in matches)}")
        return matches[0]

    def resolve(self, selector: str, dataset: str) -> Prompt:
        """'ddp' -> the dataset's DDP; a .yaml path -> that file; otherwise a prompt id."""
        if selector == DDP_SELECTOR:
            return self.ddp_for(dataset)
        if selector.endswith((".yaml", ".yml")):
            path = Path(selector)
            if not path.is_file():
                raise ConfigError(f"{path}: prompt file not found")
            return load_prompt_file(path)
        return self.get(selector)
