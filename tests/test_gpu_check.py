"""benchmarks/gpu_check.sh: the prepared GPU check runs its sections on the CPU with --smoke, records
failures and keeps going, respects its deadline, and writes its tables into a copy of BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_check import SECTIONS, markdown, update_benchmarks_md

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def run_check(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def only_result(folder: Path) -> dict:
    found = sorted(folder.glob("*.json"))
    assert len(found) == 1, found
    return json.loads(found[0].read_text())


@pytest.mark.slow
def test_smoke_run_measures_every_section_without_touching_the_repository(tmp_path: Path) -> None:
    benchmarks_md = (ROOT / "BENCHMARKS.md").read_text()
    done = run_check("--smoke", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    result = only_result(tmp_path)
    assert result["smoke"] is True and result["slug"].endswith("-smoke")
    for name in SECTIONS:
        assert result[name]["status"] == "ok", (name, result[name])
        assert f"[{name}] ok" in done.stdout  # one line per section
    assert result["tests"]["returncode"] in (0, 5)
    device = result["device"]
    assert device["torch"] and device["memory_gib"] > 0
    parity = {row["model"]: row for row in result["parity"]["rows"]}
    assert set(parity) == {"baseline ResUNet30 (16 kHz)", "System 2 ResUNet30 (32 kHz)",
                           "CLAP text tower (queries: plain PyTorch)", "CLAP text tower (ATS: transformers)",
                           "CLAP audio tower", "AudioLDM VAE + vocoder round trip"}
    assert all(row["default"]["identical"] for row in parity.values())  # CPU against CPU in the smoke run
    precision = {row["precision"]: row for row in result["precision"]["rows"]}
    assert set(precision) == {"fp32", "bf16"}
    assert precision["fp32"]["written"] == result["precision"]["mixtures"] == 6
    assert set(precision["bf16"]["delta_vs_fp32"]) == {"sdr", "sdri", "sisdr"}
    assert precision["bf16"]["net_alone_clips_per_s"] > 0 and "under_30_s" in result["precision"]["goal"]
    inference = result["inference"]["rows"]
    assert {(r["system"], r["batch"], r["precision"]) for r in inference} == {
        (s, b, p) for s in ("baseline", "2") for b in (1, 2) for p in ("fp32", "bf16")} | {
        ("3", 1, "fp32"), ("3", 1, "bf16")}
    assert all(r["clips_per_s"] > 0 and r["rtf"] > 0 for r in inference)
    training = result["training"]["rows"]
    assert [r["preset"] for r in training] == ["demo", "system3"] and all(r["steps_per_s"] > 0 for r in training)
    compiled = {row["mode"]: row for row in result["compile"]["rows"]}
    assert set(compiled) == {"eager", "compiled"} and compiled["compiled"]["compile_s"] > 0
    assert compiled["compiled"]["against_eager"]["snr_db"] is None or compiled["compiled"]["against_eager"]["snr_db"] > 60
    assert result["compile"]["speedup"] > 0
    # The tables went into a copy next to the JSON, never into the repository's BENCHMARKS.md.
    assert (ROOT / "BENCHMARKS.md").read_text() == benchmarks_md
    copy = (tmp_path / "BENCHMARKS.md").read_text()
    assert f"<!-- gpu-check:{result['slug']}:begin -->" in copy and "| baseline | 2 | bf16 |" in copy
    assert "| compiled | 2 | fp32 |" in copy and "Compiled over eager:" in copy


def test_a_failing_section_is_recorded_and_the_next_one_runs(tmp_path: Path) -> None:
    # No CUDA here: every section that needs the device fails, each on its own.
    done = run_check("--device", "cuda:7", "--only", "device", "parity", "--out", str(tmp_path / "r.json"),
                     "--no-benchmarks-md", timeout=300)
    assert done.returncode == 1
    result = json.loads((tmp_path / "r.json").read_text())
    for name in ("device", "parity"):
        assert result[name]["status"] == "failed" and "CUDA" in result[name]["error"], result[name]
        assert f"[{name}] failed" in done.stdout
    assert "tests" not in result


def test_sections_that_do_not_fit_the_deadline_are_skipped(tmp_path: Path) -> None:
    done = run_check("--smoke", "--deadline", "5", "--out", str(tmp_path), timeout=120)
    assert done.returncode == 1
    result = only_result(tmp_path)
    assert all(result[name]["status"] == "skipped" for name in SECTIONS)
    assert "global deadline" in result["training"]["summary"]


def test_benchmarks_md_block_is_replaced_not_repeated(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nSome text.\n\n## GPU check results\n\nHow to run it.\n\n## Later section\n")
    first = {"slug": "nvidia-h200", "device": {"name": "NVIDIA H200", "summary": "NVIDIA H200, 139.8 GiB"},
             "inference": {"rows": [{"system": "baseline", "batch": 8, "precision": "bf16", "clips_per_s": 900.0,
                                     "rtf": 0.0001, "peak_memory_gib": 3.2}]}}
    update_benchmarks_md(path, first)
    once = path.read_text()
    update_benchmarks_md(path, first)
    assert path.read_text() == once and once.count("gpu-check:nvidia-h200:begin") == 1
    assert "| baseline | 8 | bf16 | 900.0 |" in once and once.index("## GPU check results") < once.index("900.0")
    assert once.index("900.0") < once.index("## Later section")
    second = {**first, "inference": {"rows": [{**first["inference"]["rows"][0], "clips_per_s": 950.0}]}}
    update_benchmarks_md(path, second)
    other = {"slug": "nvidia-h100", "device": {"name": "NVIDIA H100"}}
    update_benchmarks_md(path, other)
    text = path.read_text()
    assert "950.0" in text and "900.0" not in text and "gpu-check:nvidia-h100:begin" in text
    assert "Some text." in text and "How to run it." in text and "## Later section" in text


def test_markdown_names_errors_and_skipped_rows() -> None:
    text = markdown({"slug": "x", "training": {"rows": [
        {"preset": "system3", "batch": 8, "precision": "bf16-mixed", "segment_seconds": 10.0,
         "error": "OutOfMemoryError: CUDA out of memory"}]}})
    assert "| system3 | 8 x 10 s | bf16-mixed | OutOfMemoryError: CUDA out of memory |" in text
