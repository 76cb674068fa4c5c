"""Weight resolution: explicit paths, the cache, downloads (Zenodo API, URLs, the Hub), offline errors."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcase9 import hub
from dcase9.errors import CheckpointError
from dcase9.hub import Source, WeightEntry, load_registry, resolve_weight

PAYLOAD = b"pretend checkpoint bytes " * 1000


class Server(http.server.ThreadingHTTPServer):
    requests: list[str]


@pytest.fixture()
def server() -> Iterator[Server]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.server.requests.append(self.path)  # type: ignore[attr-defined]
            port = self.server.server_address[1]
            if self.path == "/api/records/123":
                body = json.dumps({"files": [
                    {"key": "notes.txt", "checksum": "md5:0", "size": 1, "links": {"self": f"http://127.0.0.1:{port}/n"}},
                    {"key": "model,step=1.ckpt", "checksum": "md5:" + hashlib.md5(PAYLOAD).hexdigest(),
                     "size": len(PAYLOAD), "links": {"self": f"http://127.0.0.1:{port}/files/model.ckpt"}}]}).encode()
                self._send(200, body)
            elif self.path == "/files/model.ckpt":
                start = 0
                if "Range" in self.headers:
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                self._send(206 if start else 200, PAYLOAD[start:])
            else:
                self._send(404, b"not found")

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DCASE9_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DCASE9_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path / "home"


def zenodo_entry(sha256: str | None = None) -> WeightEntry:
    return WeightEntry(description="test model", filename="model.ckpt", sha256=sha256,
                       sources=[Source.model_validate({"zenodo": {"record": 123, "pattern": "*.ckpt"}})])


def test_registry_file_is_valid() -> None:
    registry = load_registry(Path(__file__).parents[1] / "toolkit" / "weights.yaml")
    assert {"baseline-checkpoint", "audiosep-checkpoint", "clap-music-speech-audioset"} <= set(registry)
    assert registry["audiosep-checkpoint"].sources[0].huggingface.repo_type == "space"


def test_zenodo_download_verifies_md5_and_is_cached(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCASE9_ZENODO_API", f"http://127.0.0.1:{server.server_address[1]}/api/records")
    resolved = resolve_weight("toy", zenodo_entry(hashlib.sha256(PAYLOAD).hexdigest()), progress=False)
    assert resolved.path.read_bytes() == PAYLOAD
    assert resolved.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    assert resolved.origin.startswith("https://zenodo.org/records/123")
    server.requests.clear()
    again = resolve_weight("toy", zenodo_entry(), progress=False)
    assert again.origin == "cache" and server.requests == []


def test_interrupted_download_resumes(server: Server, monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    monkeypatch.setenv("DCASE9_ZENODO_API", f"http://127.0.0.1:{server.server_address[1]}/api/records")
    partial = isolated_home / "weights" / "toy" / "model.ckpt.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(PAYLOAD[:1000])
    resolved = resolve_weight("toy", zenodo_entry(), progress=False)
    assert resolved.path.read_bytes() == PAYLOAD
    assert not partial.exists()


def test_sha256_mismatch_is_refused(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCASE9_ZENODO_API", f"http://127.0.0.1:{server.server_address[1]}/api/records")
    with pytest.raises(CheckpointError, match="does not match the registry"):
        resolve_weight("toy", zenodo_entry("0" * 64), progress=False)


def test_failed_sources_are_all_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCASE9_ZENODO_API", "http://127.0.0.1:9/api/records")  # nothing listens on port 9
    entry = WeightEntry(description="test model", filename="model.ckpt", sources=[
        Source.model_validate({"zenodo": {"record": 123}}),
        Source.model_validate({"url": {"url": "http://127.0.0.1:9/model.ckpt"}})])
    with pytest.raises(CheckpointError) as info:
        resolve_weight("toy", entry, progress=False)
    message = str(info.value)
    assert "Every source failed" in message and "zenodo.org/records/123" in message
    assert "127.0.0.1:9/model.ckpt" in message and "--weight toy=FILE (or --checkpoint FILE" in message


def test_offline_mode_downloads_nothing(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    monkeypatch.setenv("DCASE9_OFFLINE", "1")
    with pytest.raises(CheckpointError) as info:
        resolve_weight("toy", zenodo_entry(), progress=False)
    message = str(info.value)
    assert "Offline mode is on" in message
    assert str(isolated_home / "weights" / "toy" / "model.ckpt") in message


def test_unpublished_weights_explain_training() -> None:
    entry = WeightEntry(description="System 1", filename="system1.ckpt", sources=[])
    with pytest.raises(CheckpointError, match="Nobody publishes it"):
        resolve_weight("system1", entry, progress=False)


def test_explicit_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.ckpt"
    path.write_bytes(b"abc")
    resolved = resolve_weight("toy", zenodo_entry(), explicit=path)
    assert resolved.path == path and resolved.origin == "explicit path"
    assert resolved.sha256 == hashlib.sha256(b"abc").hexdigest()
    with pytest.raises(CheckpointError, match="no such file"):
        resolve_weight("toy", zenodo_entry(), explicit=tmp_path / "missing.ckpt")


def test_huggingface_sources_use_the_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    blob = tmp_path / "hub" / "spaces--Audio-AGI--AudioSep" / "snapshots" / "abc" / "checkpoint" / "x.ckpt"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"weights")
    calls: list[tuple[str, str, str, bool]] = []

    def fake_download(repo: str, filename: str, repo_type: str = "model", revision: str | None = None,
                      local_files_only: bool = False) -> str:
        calls.append((repo, filename, repo_type, local_files_only))
        if local_files_only:
            from huggingface_hub.errors import LocalEntryNotFoundError

            raise LocalEntryNotFoundError("not cached")
        return str(blob)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    entry = WeightEntry(description="AudioSep", filename="x.ckpt", sources=[Source.model_validate(
        {"huggingface": {"repo": "Audio-AGI/AudioSep", "repo_type": "space", "path": "checkpoint/x.ckpt"}})])
    resolved = resolve_weight("audiosep", entry, progress=False)
    assert resolved.path == blob
    assert calls == [("Audio-AGI/AudioSep", "checkpoint/x.ckpt", "space", True),
                     ("Audio-AGI/AudioSep", "checkpoint/x.ckpt", "space", False)]


def test_sha256_sidecar_is_reused(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    first = hub.file_sha256(path)
    sidecar = path.with_name("f.bin.sha256")
    assert json.loads(sidecar.read_text())["sha256"] == first
    stamp = json.loads(sidecar.read_text())["stamp"]
    sidecar.write_text(json.dumps({"stamp": stamp, "sha256": "remembered"}))
    assert hub.file_sha256(path) == "remembered"  # not recomputed while the file is unchanged


def hub_cache_snapshot(cache: Path, repo_id: str, files: dict[str, str], commit: str = "0123abcd" * 5) -> Path:
    """A Hugging Face cache entry as hf_hub_download leaves it: refs/main -> snapshots/<commit>/<file>."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, text in files.items():
        (snapshot / name).write_text(text, encoding="utf-8")
    return snapshot


@pytest.mark.parametrize("repo_id", ["roberta-base", "FacebookAI/roberta-base"])
def test_tokenizer_cache_of_the_reference_code_is_accepted_offline(repo_id: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """RobertaTokenizer.from_pretrained("roberta-base") (the reference code) caches vocab.json and merges.txt
    only, under models--roberta-base; the same files may sit under models--FacebookAI--roberta-base."""
    import huggingface_hub.constants

    from dcase9.weights import weight_entry
    from tests.tiny_roberta_tokenizer import write_tiny_roberta_tokenizer
    from dcase9.models.clap import load_roberta_tokenizer
    from dcase9.models.roberta_bpe import SlowRobertaBpe

    made = write_tiny_roberta_tokenizer(tmp_path / "made")
    files = {name: (made / name).read_text(encoding="utf-8") for name in ("vocab.json", "merges.txt")}
    snapshot = hub_cache_snapshot(tmp_path / "hub", repo_id, files)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    resolved = resolve_weight("roberta-base-tokenizer", weight_entry("roberta-base-tokenizer"), offline=True)
    assert resolved.path == snapshot and resolved.origin == "cache"
    assert not (resolved.path / "tokenizer.json").exists()
    tokenizer = load_roberta_tokenizer(resolved.path)  # the fast tokenizer, built from the slow files
    text = "A dog barks, then  rain falls on the roof's tin!"
    assert tokenizer(text)["input_ids"] == SlowRobertaBpe(snapshot).ids(text)


def test_missing_tokenizer_offline_names_the_weight_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    from dcase9.weights import weight_entry

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(CheckpointError) as info:
        resolve_weight("roberta-base-tokenizer", weight_entry("roberta-base-tokenizer"), offline=True)
    message = " ".join(str(info.value).split())
    assert "--weight roberta-base-tokenizer=DIR" in message and "--checkpoint" not in message
    assert "huggingface.co/FacebookAI/roberta-base" in message and "huggingface.co/roberta-base" in message
