"""`dcase9 augment` end to end: the real openai client against a fake server, a tiny local LM,
real BERTScore (all-MiniLM-L6-v2), interruption by SIGKILL and Ctrl-C, resume, reselect."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from augment_support import (BIRDS, DOG, DOOR, ITEMS, KETTLE, MINILM_ARGS, RAIN, STREET, THUNDER,
                             FakeLLMServer, fake_hub_cache, groups_by_key, make_tiny_causal_lm, make_tiny_roberta,
                             minilm_path, read_jsonl, write_captions)
from dcase9.cli import app

pytest.importorskip("openai")
pytest.importorskip("bert_score")

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-test-SECRET-0123456789"


@pytest.fixture(scope="module", autouse=True)
def api_key():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENAI_API_KEY", SECRET)
        yield


def cli(*args: str):
    return CliRunner().invoke(app, ["augment", *args])


def api_args(captions: Path, out: Path, server: FakeLLMServer, *extra: str) -> list[str]:
    return [str(captions), "-d", "fsd50k", "-o", str(out), "-b", "openai", "-m", "fake-gpt", "--base-url",
            server.base_url, "--timeout", "1.0", "--max-retries", "2", "-j", "2",
            "--bertscore-model-path", minilm_path(), *MINILM_ARGS, *extra]


def outputs(out: Path) -> tuple[str, dict]:
    return (out / "augmented.json").read_text(), json.loads((out / "summary.json").read_text())


def logged_captions(out: Path) -> set[str]:
    return {r["original"] for r in read_jsonl(out / "responses.jsonl") if r["status"] != "failed"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run; the interrupted runs must end with the same outputs."""
    folder = tmp_path_factory.mktemp("reference")
    captions = write_captions(folder / "captions.json")
    with FakeLLMServer() as server:
        result = cli(*api_args(captions, folder / "out", server))
        assert result.exit_code == 0, result.output
    return folder / "out", server, result.output


def test_api_run_end_to_end(reference, monkeypatch, tmp_path):
    out, server, output = reference
    augmented = json.loads((out / "augmented.json").read_text())["data"]
    summary = json.loads((out / "summary.json").read_text())
    candidates = read_jsonl(out / "candidates.jsonl")
    responses = read_jsonl(out / "responses.jsonl")

    # The server saw the scripted faults, and every caption was answered (billed) exactly once.
    assert {(RAIN, 429), (STREET, 500), (THUNDER, 0)} <= set(server.statuses)
    assert server.answered == Counter({item["caption"]: 1 for item in ITEMS})
    assert len(responses) == 8 and {r["status"] for r in responses if r["original"] == DOOR} == {"malformed"}

    # Same format as the input: originals in order, each followed by its selected captions, same audio.
    originals = [row for row in augmented if row["caption"] in {item["caption"] for item in ITEMS}]
    assert originals == ITEMS
    dog_rows = [row for row in augmented if row["wav"] == "clips/dog.wav"]
    assert all(row.get("duration") == 10.0 for row in dog_rows[:3])  # other fields are kept
    captions_of = {wav: [r["caption"] for r in augmented if r["wav"] == wav] for wav in {r["wav"] for r in augmented}}
    assert captions_of["clips/dog.wav"][1:3] == ["A dog barks loudly far away.",
                                                 "A dog is barking loudly in the distance."]
    assert captions_of["clips/dog.wav"].count("A dog barks loudly far away.") == 1  # once per clip
    assert "A piano melody plays softly in an empty concert hall." not in captions_of["clips/street.wav"]
    assert captions_of["clips/birds.wav"] == [BIRDS] and captions_of["clips/door.wav"] == [DOOR]

    # Every candidate is logged with its prompt, backend, raw text, verdict and (if it passed) score.
    assert {c["verdict"] for c in candidates} == {"ok", "preamble", "commentary", "beyond_requested", "empty",
                                                  "question", "incomplete", "copy_of_original", "duplicate"}
    for c in candidates:
        assert c["prompt_id"] == "ddp-fsd50k" and c["backend"] == "openai:fake-gpt" and c["raw"]
        assert (c["bertscore_f1"] is not None) == (c["verdict"] == "ok")
    piano = next(c for c in candidates if c["text"].startswith("A piano"))
    assert piano["verdict"] == "ok" and piano["bertscore_f1"] < 0.7

    # Summary like seed 000's Table 2, and the histogram.
    group = summary["groups"][0]
    assert summary["threshold"] is None and group["threshold"] == 0.7  # the DDP's own selection (seed 000)
    assert summary["captions"]["rows"] == {"fsd50k": {"original": 8, "ddp": len(augmented) - 8}}
    assert group["added"] == len(augmented) - 8 and group["clips"] == 7
    assert group["mean_added_per_clip"] == round(group["added"] / 7, 4)
    assert group["dropped"]["question"] == 1 and group["malformed"] == 1 and group["repeated_for_clip"] == 1
    assert group["selected"] == group["added"] + group["repeated_for_clip"]
    assert summary["tokens"]["prompt"] > 0 and summary["tokens"]["completion"] > 0
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "From answers to added captions" in output and "tokens:" in output

    # The API key is never written or shown.
    assert SECRET not in output
    for path in out.iterdir():
        assert SECRET.encode() not in path.read_bytes(), path

    # Another threshold (on a copy: the reference stays as it is): no LLM call, no BERTScore model, fewer captions.
    import shutil

    out = Path(shutil.copytree(out, tmp_path / "copy"))

    def forbidden(*args, **kwargs):
        raise AssertionError("reselect must not load models")

    monkeypatch.setattr("dcase9.augment.bertscore.BertScorer.__init__", forbidden)
    monkeypatch.setattr("dcase9.augment.run.make_backend", forbidden)
    calls = Counter(server.calls)
    result = cli("-o", str(out), "--reselect", "-t", "0.9")
    assert result.exit_code == 0, result.output
    strict = json.loads((out / "augmented.json").read_text())["data"]
    assert 8 < len(strict) < len(augmented)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["threshold"] == 0.9 and summary["groups"][0]["threshold"] == 0.9
    result = cli("-o", str(out), "--reselect", "-t", "0.7")
    assert json.loads((out / "augmented.json").read_text())["data"] == augmented
    assert server.calls == calls


def test_rerunning_a_finished_run_asks_nothing(reference, tmp_path):
    out, _, _ = reference
    with FakeLLMServer() as server:
        before = outputs(out)
        result = cli("-o", str(out), "--base-url", server.base_url)  # everything else from config.yaml
        assert result.exit_code == 0, result.output
        assert sum(server.calls.values()) == 0
    assert outputs(out) == before


def _wait_for_records(path: Path, count: int, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        if process.poll() is not None:
            raise AssertionError(f"the run ended early: {process.stdout.read().decode()}")
        time.sleep(0.05)
    raise AssertionError("the run did not get far enough")


@pytest.mark.slow  # a second Python process (imports torch, transformers, bert-score)
def test_hard_kill_half_way_then_resume_matches_an_uninterrupted_run(reference, tmp_path):
    captions = write_captions(tmp_path / "captions.json")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with FakeLLMServer() as server:
        server.hold_after = 3  # later answers wait: the run is caught half way
        process = subprocess.Popen([sys.executable, "-m", "dcase9.cli", "augment", *api_args(captions, out, server)],
                                   cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            _wait_for_records(out / "responses.jsonl", 3, process)
        finally:
            process.kill()
            process.wait()
        done = logged_captions(out)
        assert 3 <= len(done) < 8 and not (out / "augmented.json").exists()
        with (out / "responses.jsonl").open("ab") as log:
            log.write(b'{"key": "0123", "status": "ok", "text": "a record cut sh')  # a kill mid-write
        server.hold_after = None
        server.release.set()
        calls = Counter(server.calls)

        result = cli(*api_args(captions, out, server))
        assert result.exit_code == 0, result.output
        assert {c: server.calls[c] for c in done} == {c: calls[c] for c in done}  # nothing finished is asked again
        assert logged_captions(out) == {item["caption"] for item in ITEMS}
    assert outputs(out) == outputs(reference[0])
    assert (out / "scores.png").read_bytes() == (reference[0] / "scores.png").read_bytes()
    assert len(read_jsonl(out / "responses.jsonl")) == 8  # the torn record is gone, nothing doubled


def test_ctrl_c_leaves_consistent_logs_and_the_run_resumes(reference, tmp_path):
    captions = write_captions(tmp_path / "captions.json")
    out = tmp_path / "out"
    with FakeLLMServer() as server:
        server.hold_after = 4

        def interrupt(answers: int) -> None:
            if answers == 4:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, delivered to the main thread

        server.on_answer = interrupt
        result = cli(*api_args(captions, out, server))
        assert result.exit_code == 130, result.output
        assert "interrupted" in result.output
        server.on_answer, server.hold_after = None, None
        server.release.set()
        for name in ("responses.jsonl", "candidates.jsonl"):
            path = out / name
            if path.exists() and path.stat().st_size:
                assert path.read_bytes().endswith(b"\n")
                read_jsonl(path)  # every line is a whole record
        assert not (out / "augmented.json").exists()
        assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
        done = logged_captions(out)
        calls = Counter(server.calls)

        result = cli(*api_args(captions, out, server))
        assert result.exit_code == 0, result.output
        assert {c: server.calls[c] for c in done} == {c: calls[c] for c in done}
    assert outputs(out) == outputs(reference[0])


def test_failed_requests_exit_1_and_are_retried_by_the_next_run_then_rescoring_needs_no_llm(tmp_path):
    captions = write_captions(tmp_path / "captions.json", ITEMS[:3] + [{"wav": "k.wav", "caption": KETTLE}])
    out = tmp_path / "out"
    with FakeLLMServer() as server:
        server.always_fail = {KETTLE: 400}
        result = cli(*api_args(captions, out, server))
        assert result.exit_code == 1 and "1 requests got no answer" in result.output
        summary = json.loads((out / "summary.json").read_text())
        assert summary["totals"]["failed"] == 1 and summary["totals"]["answered"] == 3

        server.always_fail = {}
        calls = Counter(server.calls)
        result = cli(*api_args(captions, out, server))
        assert result.exit_code == 0, result.output
        assert server.calls - calls == Counter({KETTLE: 1})  # only the failed request is asked again
        assert json.loads((out / "summary.json").read_text())["totals"]["failed"] == 0

        # Other BERTScore settings: the answers are judged and scored again, without LLM calls.
        calls = Counter(server.calls)
        result = cli(*api_args(captions, out, server, "--bertscore-layer", "3"))
        assert result.exit_code == 0, result.output
        assert server.calls == calls
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bertscore"]["judged_with"] == ["sentence-transformers/all-MiniLM-L6-v2/L3; words 3-40"]
    latest = {key: group for key, group in groups_by_key(read_jsonl(out / "candidates.jsonl")).items()}
    assert all(any(c["judged_with"].endswith("L5; words 3-40") for c in g) for g in latest.values())


def test_several_datasets_and_prompts_with_tags(tmp_path):
    fsd = write_captions(tmp_path / "fsd.json", [{"wav": "fsd/64760.wav", "caption": DOG},
                                                 {"wav": "fsd/1234.wav", "caption": RAIN}])
    audioset = write_captions(tmp_path / "as.json", [{"wav": "as/Y1.wav", "caption": STREET}])
    tags = tmp_path / "dev.csv"
    tags.write_text('fname,labels,mids,split\n64760,"Dog,Bark,Domestic_animals_and_pets",/m/x,train\n')
    out = tmp_path / "out"
    with FakeLLMServer() as server:
        result = cli(str(fsd), str(audioset), "-d", "fsd50k", "-d", "wavcaps-audioset", "--tags", str(tags),
                     "-p", "ddp", "-p", "gpt4-keywords", "-o", str(out), "-b", "openai", "-m", "fake-gpt",
                     "--base-url", server.base_url, "--timeout", "1.0", "--bertscore-model-path", minilm_path(),
                     *MINILM_ARGS)
        assert result.exit_code == 0, result.output
        prompts = sorted({b["messages"][0]["content"] for b in server.bodies})
    assert len(prompts) == 6  # 3 items x 2 prompts
    gpt = [p for p in prompts if p.startswith("I will give a description")]
    assert any("Tags: Dog, Bark, Domestic animals and pets" in p and "Generate 5 audio captions" in p for p in gpt)
    assert any("Tags: none" in p for p in gpt)
    assert sum("AudioSet part of the WavCaps dataset" in p for p in prompts) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["captions"]["rows"]) == ["fsd50k", "wavcaps-audioset"]
    assert summary["captions"]["columns"] == ["original", "ddp", "gpt4-keywords"]
    assert {(g["dataset"], g["prompt"]): g["prompt_ids"] for g in summary["groups"]} == {
        ("fsd50k", "ddp"): ["ddp-fsd50k"], ("fsd50k", "gpt4-keywords"): ["gpt4-keywords"],
        ("wavcaps-audioset", "ddp"): ["ddp-wavcaps-audioset"],
        ("wavcaps-audioset", "gpt4-keywords"): ["gpt4-keywords"]}
    assert summary["items_without_tags"] == 2
    # Each prompt selects its own way: the DDPs by BERTScore >= 0.7 (seed 000), seed 003's GPT-4 prompt
    # by the rule filters only. The piano line (F1 < 0.7 for the street caption) comes in by the latter.
    assert {(g["dataset"], g["prompt"]): g["threshold"] for g in summary["groups"]} == {
        ("fsd50k", "ddp"): 0.7, ("fsd50k", "gpt4-keywords"): None,
        ("wavcaps-audioset", "ddp"): 0.7, ("wavcaps-audioset", "gpt4-keywords"): None}
    piano = "A piano melody plays softly in an empty concert hall."
    added = json.loads((out / "augmented.json").read_text())["data"]
    assert {"wav": "as/Y1.wav", "caption": piano} in added
    street = {(g["dataset"], g["prompt"]): g for g in summary["groups"]}
    assert street[("wavcaps-audioset", "ddp")]["below_threshold"] >= 1
    assert street[("wavcaps-audioset", "gpt4-keywords")]["below_threshold"] == 0
    assert "gpt4-keywords: filters only" in " ".join(result.output.split())
    # --threshold applies to every prompt: the piano line goes.
    result = cli("-o", str(out), "--reselect", "-t", "0.7")
    assert result.exit_code == 0, result.output
    assert {g["threshold"] for g in json.loads((out / "summary.json").read_text())["groups"]} == {0.7}
    assert {"wav": "as/Y1.wav", "caption": piano} not in json.loads((out / "augmented.json").read_text())["data"]


def test_local_lm_end_to_end_does_not_depend_on_batch_size(tmp_path):
    model = make_tiny_causal_lm(tmp_path / "tiny-lm")
    captions = write_captions(tmp_path / "captions.json", ITEMS[:5])
    runs = []
    for batch_size in ("3", "2"):
        out = tmp_path / f"out-{batch_size}"
        result = cli(str(captions), "-d", "fsd50k", "-o", str(out), "-b", "hf", "-m", str(model), "--device", "cpu",
                     "--batch-size", batch_size, "--max-new-tokens", "40", "--temperature", "1.0",
                     "--bertscore-model-path", minilm_path(), *MINILM_ARGS)
        assert result.exit_code == 0, result.output
        responses = {r["key"]: r for r in read_jsonl(out / "responses.jsonl")}
        assert len(responses) == 5 and all(r["backend"] == f"hf:{model}" for r in responses.values())
        candidates = read_jsonl(out / "candidates.jsonl")
        assert all(c["verdict"] for c in candidates)
        runs.append(({k: r["text"] for k, r in responses.items()}, sorted(json.dumps(c, sort_keys=True)
                                                                          for c in candidates), outputs(out)))
    assert runs[0] == runs[1]


def test_default_bertscore_model_offline_from_the_hub_cache(tmp_path, monkeypatch):
    """roberta-large, layer 17, found offline in a Hugging Face cache (a tiny stand-in with 18 layers).

    HF_HUB_OFFLINE and HF_HUB_CACHE are read when huggingface_hub is imported, so the test sets the
    module constants those variables set."""
    import huggingface_hub.constants

    cache = fake_hub_cache(tmp_path / "hub", "roberta-large", make_tiny_roberta(tmp_path / "model", layers=18))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    captions = write_captions(tmp_path / "captions.json", ITEMS[:2])
    with FakeLLMServer() as server:
        args = [str(captions), "-d", "fsd50k", "-b", "openai", "-m", "fake-gpt", "--base-url", server.base_url]
        result = cli(*args, "-o", str(tmp_path / "out"))
        assert result.exit_code == 0, result.output
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert summary["bertscore"]["judged_with"] == ["roberta-large/L17; words 3-40"]
        assert summary["groups"][0]["bertscore_f1"]["count"] > 0

        # Not in the cache: a clear message, before any LLM call.
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
        calls = sum(server.calls.values())
        result = cli(*args, "-o", str(tmp_path / "out-2"))
        assert result.exit_code == 2
        assert "cannot load the BERTScore model 'roberta-large'" in result.output
        assert "--bertscore-model-path" in " ".join(result.output.split())
        assert sum(server.calls.values()) == calls


def test_bertscore_model_problems_stop_the_run_before_any_llm_call(tmp_path):
    captions = write_captions(tmp_path / "captions.json", ITEMS[:2])
    (tmp_path / "empty").mkdir()
    with FakeLLMServer() as server:
        result = cli(str(captions), "-d", "fsd50k", "-o", str(tmp_path / "out"), "-b", "openai", "-m", "fake-gpt",
                     "--base-url", server.base_url, "--bertscore-model-path", str(captions.parent / "empty"))
        assert result.exit_code == 2 and "not a model folder" in result.output
        assert sum(server.calls.values()) == 0


def test_a_missing_api_key_is_reported_before_any_model_loads(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("no model may load before the key is checked")

    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setattr("dcase9.augment.bertscore.BertScorer.__init__", forbidden)
    captions = write_captions(tmp_path / "captions.json", ITEMS[:1])
    result = cli(str(captions), "-d", "fsd50k", "-o", str(tmp_path / "out"), "-b", "openai", "-m", "gpt-4o")
    assert result.exit_code == 2 and "set the environment variable OPENAI_API_KEY" in result.output


def test_dry_run_calls_nothing_and_writes_nothing(tmp_path):
    captions = write_captions(tmp_path / "captions.json")
    result = cli(str(captions), "-d", "fsd50k", "-p", "dip", "-o", str(tmp_path / "out"), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "8 caption items, prompts dip: 8 requests, 0 already answered" in " ".join(result.output.split())
    assert f'audio clip: "{DOG}"' in result.output
    assert not (tmp_path / "out").exists()


def test_list_prompts():
    expected = {"gpt4-keywords": "none", "dip": "0.7", "ddp-fsd50k": "0.7"}
    wide = CliRunner().invoke(app, ["augment", "--list-prompts"], env={"COLUMNS": "200"})
    narrow = CliRunner().invoke(app, ["augment", "--list-prompts"], env={"COLUMNS": "80"})
    for result in (wide, narrow):
        assert result.exit_code == 0 and "…" not in result.output
        for prompt_id in ("gpt4-keywords", "dip", "ddp-fsd50k", "ddp-wavcaps-audioset", "ddp-wavcaps-bbc-soundbible"):
            assert re.search(rf"(?<![\w-]){prompt_id}(?![\w-])", result.output), prompt_id
    rows = {line.split()[1]: line.split("│")[6].strip() for line in wide.output.splitlines()
            if line.startswith("│ ") and line.split()[1] in expected}
    assert rows == expected
    # Too wide for 80 columns side by side: each prompt is a heading, then its `header: value` lines.
    thresholds, prompt = {}, None
    for line in narrow.output.splitlines():
        if line and not line.startswith(" "):
            prompt = line.strip()
        elif line.strip().startswith("F1 >=:"):
            thresholds[prompt] = line.split(":", 1)[1].strip()
    assert {k: thresholds[k] for k in expected} == expected


@pytest.mark.parametrize("args, message", [
    (["{bad}", "-o", "{out}"], "field 'data\\[1\\].caption': missing"),
    (["{good}", "-d", "clotho", "-o", "{out}"], "no dataset-dependent prompt \\(DDP\\) for dataset 'clotho'"),
    (["{good}", "{good}", "-d", "a", "-d", "b", "-d", "c", "-o", "{out}"], "--dataset was given 3 times for 2"),
    (["{good}", "-d", "fsd50k", "-o", "{out}", "-b", "openai"], "needs a model name"),
    (["{good}", "-d", "fsd50k"], "give the output folder with --out"),
    (["-o", "{out}"], "give caption files"),
    (["-o", "{out}", "--reselect"], "no earlier run here"),
    (["-o", "{out}", "--reselect", "-t", "1.5"], "threshold must be between 0 and 1 \\(got 1.5\\)"),
    (["-o", "{out}", "--reselect", "-m", "x"], "--reselect only takes --out and --threshold \\(also given: --model"),
    (["--config", "{config}", "-o", "{out}"], "sampling.temprature: unknown key"),
    (["{good}", "-d", "fsd50k", "-o", "{out}", "-t", "1.5"], "bertscore.threshold: Input should be less"),
])
def test_bad_input_and_options_exit_2_with_a_clear_message(tmp_path, args, message):
    good = write_captions(tmp_path / "good.json", ITEMS[:1])
    bad = write_captions(tmp_path / "bad.json", [ITEMS[0], {"wav": "x.wav"}])
    config = tmp_path / "run.yaml"
    config.write_text("inputs:\n- captions: good.json\n  dataset: fsd50k\nsampling:\n  temprature: 0.5\n")
    values = {"good": good, "bad": bad, "out": tmp_path / "out", "config": config}
    result = cli(*[a.format(**values) if a.startswith("{") else a for a in args])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and re.search(message, " ".join(result.output.split()))
