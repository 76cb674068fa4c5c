"""Missing weights (issue 27, item 3): a command names every registry weight it lacks in one message, before
anything is read or downloaded, with the flags of that command only; an unreachable network is said within
seconds (no huggingface_hub retries, no empty `AssertionError:`)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import typer.main
from typer.testing import CliRunner

from tests.hub_support import FakeHub
from tests.tiny_models import SMALL_STFT, tiny_clap_laion_weights, tiny_clap_options, tokenizer_folder, \
    write_lightning_checkpoint
from dcase9 import api
from dcase9.cli import app
from dcase9.errors import CheckpointError
from dcase9.hub import Source, WeightEntry, resolve_weight
from dcase9.models.description import tokenizer_files
from dcase9.weights import CLAP_WEIGHT, TOKENIZER_WEIGHT, weight_entry

runner = CliRunner()
NOWHERE = "http://127.0.0.1:9"  # nothing listens on port 9: a connection is refused at once
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


@pytest.fixture(autouse=True)
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Nothing cached: dcase9's home and the Hugging Face cache are empty folders; no offline variable."""
    import huggingface_hub.constants

    monkeypatch.setenv("DCASE9_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("DCASE9_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path / "home"


@pytest.fixture()
def hub_nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hugging Face Hub and Zenodo at an address where nothing listens (an unreachable network)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", NOWHERE)
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        NOWHERE + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setenv("DCASE9_ZENODO_API", NOWHERE + "/api/records")


def command(name: str) -> Any:
    return typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]


def command_flags(name: str) -> set[str]:
    return {opt for param in command(name).params for opt in (*param.opts, *param.secondary_opts)}


def assert_flags_exist(text: str, name: str) -> None:
    named = set(FLAG.findall(text))
    assert named <= command_flags(name), f"`dcase9 {name}` has no {sorted(named - command_flags(name))}: {text}"


def error_of(result: Any) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "AssertionError" not in result.output, result.output
    return " ".join(result.output.split())


def test_infer_offline_names_every_missing_weight_at_once(demo_root: Path, tmp_path: Path, empty_caches: Path) -> None:
    text = error_of(runner.invoke(app, ["infer", "-s", "2", "-d", str(demo_root / "validation"), "-o",
                                        str(tmp_path / "out"), "--offline"]))
    assert "2 weights are not available here; offline mode is on (--offline), so nothing was downloaded" in text
    assert "give it with --checkpoint FILE or --weight audiosep-checkpoint=FILE, or place it at " \
           f"{empty_caches / 'weights' / 'audiosep-checkpoint' / 'audiosep_base_4M_steps.ckpt'}" in text
    assert "give it with --weight roberta-base-tokenizer=DIR, or place it at" in text
    assert "huggingface.co/spaces/Audio-AGI/AudioSep" in text and "huggingface.co/FacebookAI/roberta-base" in text
    assert "Without --offline, dcase9 downloads them." in text
    assert_flags_exist(text, "infer")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.wav"))


def test_infer_with_a_checkpoint_without_clap_names_the_tokenizer_and_clap_at_once(demo_root: Path,
                                                                                   tmp_path: Path) -> None:
    """A checkpoint made elsewhere without a query encoder leaves both the tokenizer and the standalone CLAP to
    the registry: both are named, after the checkpoint (given, so it is read) and before anything is built."""
    checkpoint = write_lightning_checkpoint(tmp_path / "net.ckpt", clap={})  # the small STFT's net, no CLAP
    text = error_of(runner.invoke(app, ["infer", "-s", "1", "--checkpoint", str(checkpoint), "-d",
                                        str(demo_root / "validation"), "-o", str(tmp_path / "out"), "--offline",
                                        *(f"--set={key}={value}" for key, value in SMALL_STFT.items())]))
    assert "2 weights are not available here" in text
    assert "- roberta-base-tokenizer" in text and f"- {CLAP_WEIGHT}" in text
    assert_flags_exist(text, "infer")


def test_score_ats_offline_names_the_tokenizer_and_clap_with_the_flags_of_score(demo_root: Path) -> None:
    data = demo_root / "validation"
    text = error_of(runner.invoke(app, ["score", "-d", str(data), "-e", str(data), "--ats", "--offline"]))
    assert "2 weights are not available here" in text
    assert "give it with --weight roberta-base-tokenizer=DIR, or place it at" in text
    assert f"give it with --ats-checkpoint FILE or --weight {CLAP_WEIGHT}=FILE, or place it at" in text
    assert "--clap-config" not in text  # not needed: the registry's CLAP has the registry's architecture
    assert_flags_exist(text, "score")


def test_score_ats_with_a_checkpoint_of_dcase9_train_needs_no_tokenizer_and_no_clap_config(
        demo_root: Path, tmp_path: Path) -> None:
    """A checkpoint that describes itself carries its tokenizer and its CLAP's architecture."""
    checkpoint = write_lightning_checkpoint(tmp_path / "trained.ckpt", clap=tiny_clap_laion_weights(3))
    content = torch.load(checkpoint, weights_only=True)
    content["dcase9"] = {"format": 2, "system": "baseline",
                         "system_options": {**SMALL_STFT, "clap": tiny_clap_options()},
                         "tokenizer_files": tokenizer_files(tokenizer_folder(tmp_path / "tokenizer"))}
    torch.save(content, checkpoint)
    estimates = tmp_path / "estimates"
    api.infer("mixture", demo_root / "eval-real", estimates, progress=False, limit=2)
    result = runner.invoke(app, ["score", "-d", str(demo_root / "eval-real"), "-e", str(estimates), "--ats",
                                 "--ats-checkpoint", str(checkpoint), "--offline", "-o", str(tmp_path / "report")])
    assert "ATS" in result.output and "Traceback" not in result.output, result.output
    assert result.exit_code == 1  # the estimates of --limit 2 leave the other mixtures missing


def test_download_offline_names_every_weight_and_no_flag_download_lacks(monkeypatch: pytest.MonkeyPatch,
                                                                        empty_caches: Path) -> None:
    monkeypatch.setenv("DCASE9_OFFLINE", "1")
    text = error_of(runner.invoke(app, ["download", "-s", "3", "--with-optional"]))
    assert "5 weights are not available here; offline mode is on (DCASE9_OFFLINE is set)" in text
    for name in ("system3-checkpoint", "audioldm-vae", "audioldm-vocoder", TOKENIZER_WEIGHT, CLAP_WEIGHT):
        assert f"- {name} (" in text
        assert f"place it at {empty_caches / 'weights' / name}" in text
    assert "nobody publishes it" in text and "Unset DCASE9_OFFLINE to let dcase9 download them." in text
    assert not FLAG.findall(text)  # `download` has no --weight, --checkpoint or --offline
    assert_flags_exist(text, "download")


def test_train_offline_names_the_init_checkpoint_and_the_tokenizer_at_once(demo_root: Path, tmp_path: Path) -> None:
    """The preset fine-tunes AudioSep (`init: audiosep-checkpoint`): `--init` gives it too; nothing is left behind."""
    pytest.importorskip("lightning")
    out = tmp_path / "run"
    text = error_of(runner.invoke(app, ["train", "--preset", "system4-audiosep", "--data",
                                        str(demo_root / "train" / "train.json"), "--out", str(out), "--offline",
                                        "--steps", "1"]))
    assert "2 weights are not available here; offline mode is on (--offline)" in text
    assert "give it with --init FILE or --weight audiosep-checkpoint=FILE" in text
    assert "give it with --weight roberta-base-tokenizer=DIR" in text
    assert_flags_exist(text, "train")
    assert not out.exists()


def test_every_flag_a_hint_names_is_a_flag_of_its_command() -> None:
    """Every way of being missing, worded for every command of the app: the flags named are the command's."""
    from dcase9.cli._common import weight_flags
    from dcase9.hub import MissingWeights, Unavailable

    tokenizer, clap = weight_entry(TOKENIZER_WEIGHT), weight_entry(CLAP_WEIGHT)
    missing = [Unavailable(TOKENIZER_WEIGHT, tokenizer, "offline"),
               Unavailable(CLAP_WEIGHT, clap, "unreachable", detail="huggingface.co:443: Connection refused"),
               Unavailable("system1-checkpoint", weight_entry("system1-checkpoint"), "unpublished"),
               Unavailable("audioldm-vae", weight_entry("audioldm-vae"), "not-found", "/nowhere/vae"),
               Unavailable("baseline-checkpoint", weight_entry("baseline-checkpoint"), "failed", detail="zenodo: 404"),
               Unavailable("hf://me/model", None, "offline", "hf://me/model")]
    roles = {CLAP_WEIGHT: "checkpoint", "system1-checkpoint": "checkpoint", "baseline-checkpoint": "init"}
    named_somewhere = set()
    for name, cli_command in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        flags = weight_flags(cli_command)
        text = MissingWeights(missing, offline="argument", roles=roles).render(flags)
        assert_flags_exist(text, name)
        named_somewhere |= set(FLAG.findall(text))
    # The commands that have them name them (the check above is not vacuous).
    assert {"--weight", "--checkpoint", "--ats-checkpoint", "--init", "--offline"} <= named_somewhere
    assert weight_flags(command("score")) == {"checkpoint": "--ats-checkpoint {what}",
                                              "weights": "--weight {name}={what}", "offline": "--offline"}
    assert weight_flags(command("download")) == {}


def test_an_unreachable_network_fails_fast_with_one_clear_message(hub_nowhere: None) -> None:
    """Without --offline and with nothing listening where the Hub and Zenodo are, `download` says so within
    seconds, naming every weight (not after huggingface_hub's five retries per file, not `AssertionError:`)."""
    start = time.monotonic()
    text = error_of(runner.invoke(app, ["download", "-s", "baseline"]))
    assert time.monotonic() - start < 10
    assert "2 weights are not available here; the network cannot be reached, so nothing was downloaded" in text
    assert "- baseline-checkpoint (" in text and "- roberta-base-tokenizer (" in text
    assert "127.0.0.1:9: Connection refused" in text
    assert "Connect to the network and run again, or download them elsewhere and give them as above." in text
    assert_flags_exist(text, "download")


def test_an_unreachable_network_fails_fast_for_infer_and_the_python_api(demo_root: Path, tmp_path: Path,
                                                                         hub_nowhere: None) -> None:
    from dcase9.hub import MissingWeights

    start = time.monotonic()
    text = error_of(runner.invoke(app, ["infer", "-s", "2", "-d", str(demo_root / "validation"), "-o",
                                        str(tmp_path / "out")]))
    assert "the network cannot be reached" in text and "(with --offline, nothing is tried online)" in text
    assert "--checkpoint FILE or --weight audiosep-checkpoint=FILE" in text
    assert_flags_exist(text, "infer")
    with pytest.raises(MissingWeights) as info:
        api.download("2", progress=False)
    assert time.monotonic() - start < 15  # two runs
    assert "weights={'audiosep-checkpoint': FILE}" in str(info.value) and "--" not in str(info.value)


def test_a_hub_download_that_fails_says_why_not_assertion_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub reports a download that could not reach the Hub as "files not found in the local cache"
    (LocalEntryNotFoundError): that is the network's failure, said with its cause."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    fake = FakeHub(tmp_path / "hub", monkeypatch)
    commit = fake.add("org/model", {"model.ckpt": b"weights"})
    answers_locally = fake.hf_hub_download

    def cut_off(repo_id: str, filename: str, **kwargs: Any) -> str:
        if kwargs.get("local_files_only"):
            return answers_locally(repo_id, filename, **kwargs)
        try:
            raise ConnectionError("[Errno 104] Connection reset by peer")
        except ConnectionError as cause:
            raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub") from cause

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cut_off)
    entry = WeightEntry(description="model", filename="model.ckpt", sources=[Source.model_validate(
        {"huggingface": {"repo": "org/model", "path": "model.ckpt", "revision": commit}})])
    with pytest.raises(CheckpointError) as info:
        resolve_weight("model", entry, progress=False)
    message = str(info.value)
    assert "AssertionError" not in message
    assert "every source failed" in message
    assert "the Hugging Face Hub could not be reached ([Errno 104] Connection reset by peer)" in message


def test_reachability_is_bounded_even_when_a_connection_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name lookup or connection that never returns costs the time-out, not more; each host is asked once."""
    import dcase9.hub
    from dcase9.hub import Reachability

    asked: list[tuple[str, int]] = []
    released = threading.Event()

    def hangs(address: tuple[str, int], timeout: float) -> Any:
        asked.append(address)
        released.wait(30)  # a lookup that does not come back while the caller waits
        raise TimeoutError("timed out")

    monkeypatch.setattr(dcase9.hub.socket, "create_connection", hangs)
    reach = Reachability(timeout=0.3)
    start = time.monotonic()
    try:
        problems = reach.problems(["https://example.org/a", "https://example.org/b", "http://example.net/c"])
        assert time.monotonic() - start < 2
        assert problems["https://example.org/a"] == "example.org:443: no answer within 0.3 s"
        assert problems["http://example.net/c"] == "example.net:80: no answer within 0.3 s"
        assert reach.problem("https://example.org/elsewhere") is not None
        assert sorted(asked) == [("example.net", 80), ("example.org", 443)]
    finally:
        released.set()


def test_a_proxy_is_what_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    import dcase9.hub
    from dcase9.hub import Reachability

    asked: list[tuple[str, int]] = []

    def refused(address: tuple[str, int], timeout: float) -> Any:
        asked.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(dcase9.hub.socket, "create_connection", refused)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert Reachability().problem("https://huggingface.co") == \
        "huggingface.co through the proxy proxy.example:3128: Connection refused"
    assert asked == [("proxy.example", 3128)]
