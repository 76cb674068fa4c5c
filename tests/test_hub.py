"""Weight resolution: explicit paths, the cache, downloads (Zenodo API, URLs, the Hub), offline errors."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub_support import FakeHub
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


def test_failed_sources_are_all_named(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCASE9_ZENODO_API", f"http://127.0.0.1:{server.server_address[1]}/api/records")
    entry = WeightEntry(description="test model", filename="model.ckpt", sources=[
        Source.model_validate({"zenodo": {"record": 404}}),  # the server has no such record
        Source.model_validate({"url": {"url": "http://127.0.0.1:9/model.ckpt"}})])  # nothing listens on port 9
    with pytest.raises(CheckpointError) as info:
        resolve_weight("toy", entry, progress=False)
    message = str(info.value)
    assert "every source failed" in message and "zenodo.org/records/404 (*): HTTPError: HTTP Error 404" in message
    assert "127.0.0.1:9/model.ckpt: cannot be reached (127.0.0.1:9: Connection refused)" in message
    assert "give it with weights={'toy': FILE}, or place it at" in message
    assert "--weight" not in message and "--checkpoint" not in message  # the Python API's words, not a command's


def test_offline_mode_downloads_nothing(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    monkeypatch.setenv("DCASE9_OFFLINE", "1")
    with pytest.raises(CheckpointError) as info:
        resolve_weight("toy", zenodo_entry(), progress=False)
    message = str(info.value)
    assert "offline mode is on (DCASE9_OFFLINE is set)" in message and "Unset DCASE9_OFFLINE" in message
    assert str(isolated_home / "weights" / "toy" / "model.ckpt") in message


def test_unpublished_weights_explain_training() -> None:
    entry = WeightEntry(description="System 1", filename="system1.ckpt", sources=[])
    with pytest.raises(CheckpointError, match="nobody publishes it"):
        resolve_weight("system1", entry, progress=False)


def test_explicit_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.ckpt"
    path.write_bytes(b"abc")
    resolved = resolve_weight("toy", zenodo_entry(), explicit=path)
    assert resolved.path == path and resolved.origin == "explicit path"
    assert resolved.sha256 == hashlib.sha256(b"abc").hexdigest()
    with pytest.raises(CheckpointError, match="missing.ckpt was given for it and does not exist"):
        resolve_weight("toy", zenodo_entry(), explicit=tmp_path / "missing.ckpt")


def test_huggingface_sources_use_the_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeHub(tmp_path / "hub", monkeypatch)
    commit = fake.add("Audio-AGI/AudioSep", {"checkpoint/x.ckpt": b"weights"}, repo_type="space")
    entry = WeightEntry(description="AudioSep", filename="x.ckpt", sources=[Source.model_validate(
        {"huggingface": {"repo": "Audio-AGI/AudioSep", "repo_type": "space", "path": "checkpoint/x.ckpt",
                         "revision": commit}})])
    resolved = resolve_weight("audiosep", entry, progress=False)
    assert resolved.path.read_bytes() == b"weights" and commit in resolved.path.parts
    assert fake.downloads == [("Audio-AGI/AudioSep", "checkpoint/x.ckpt", commit, True),
                              ("Audio-AGI/AudioSep", "checkpoint/x.ckpt", commit, False)]
    again = resolve_weight("audiosep", entry, progress=False)
    assert again.origin == "cache" and again.path == resolved.path and len(fake.downloads) == 3


def test_sha256_of_files_is_remembered_under_dcase9_home(tmp_path: Path, isolated_home: Path) -> None:
    """Never next to the file (a user's checkpoint, the Hugging Face cache): under DCASE9_HOME."""
    folder = tmp_path / "user"
    folder.mkdir()
    path = folder / "f.bin"
    path.write_bytes(b"x" * 10)
    first = hub.file_sha256(path)
    assert first == hashlib.sha256(b"x" * 10).hexdigest() and sorted(folder.iterdir()) == [path]
    (memo,) = (isolated_home / "sha256").iterdir()
    stored = json.loads(memo.read_text())
    assert stored["path"] == str(path.resolve()) and stored["sha256"] == first
    memo.write_text(json.dumps({**stored, "sha256": "remembered"}))
    assert hub.file_sha256(path) == "remembered"  # not recomputed while the file is unchanged
    path.write_bytes(b"y" * 11)
    assert hub.file_sha256(path) == hashlib.sha256(b"y" * 11).hexdigest()


def test_an_explicit_checkpoint_gets_no_file_beside_it(tmp_path: Path) -> None:
    (tmp_path / "user").mkdir()
    path = tmp_path / "user" / "mine.ckpt"
    path.write_bytes(b"abc")
    resolve_weight("toy", zenodo_entry(), explicit=path)
    assert sorted(path.parent.iterdir()) == [path]


def test_hub_downloads_are_checked_against_what_the_hub_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                isolated_home: Path) -> None:
    import shutil

    fake = FakeHub(tmp_path / "hub", monkeypatch)
    files = {"vae/config.json": b'{"a": 1}', "vae/model.safetensors": b"tensors" * 100}
    commit = fake.add("org/parts", files)
    entry = WeightEntry(description="parts", filename="vae", kind="folder", sources=[Source.model_validate(
        {"huggingface_snapshot": {"repo": "org/parts", "files": list(files), "subfolder": "vae",
                                  "revision": commit}})])
    fake.damage("org/parts", "vae/model.safetensors", b"damaged on the way")
    true_sum = hashlib.sha256(files["vae/model.safetensors"]).hexdigest()
    with pytest.raises(CheckpointError, match=rf"model.safetensors: its sha256 \(LFS\) .* is not the {true_sum} "
                                              "the Hugging Face Hub reports"):
        resolve_weight("parts", entry, progress=False)
    # The copy huggingface_hub keeps in its cache is not taken at the next use, offline or not.
    fake.damaged.clear()
    with pytest.raises(CheckpointError, match="failed its check when it was downloaded.*Hub reports sha256"):
        resolve_weight("parts", entry, offline=True)
    shutil.rmtree(fake.cache)  # what the message advises
    resolved = resolve_weight("parts", entry, progress=False)
    assert resolved.path.name == "vae" and (resolved.path / "model.safetensors").read_bytes() == files["vae/model.safetensors"]
    record = json.loads((isolated_home / "verified" / "parts.json").read_text())
    assert record["files"]["vae/model.safetensors"]["sha256"] == hashlib.sha256(files["vae/model.safetensors"]).hexdigest()

    # A later use finds the file changed in the cache since its first download: refused, naming the record.
    (resolved.path / "model.safetensors").write_bytes(b"tampered")
    with pytest.raises(CheckpointError, match="recorded when 'parts' .*first downloaded.*the file changed since"):
        resolve_weight("parts", entry, progress=False)

    # Files stored without LFS: the git object id the Hub reports.
    shutil.rmtree(fake.cache)
    fake.lie("org/parts", "vae/config.json", "1" * 40)
    with pytest.raises(CheckpointError, match=r"config.json: its git object id .* is not the 1{40}"):
        resolve_weight("other-parts", entry, progress=False)


def test_a_hub_file_cached_by_another_tool_is_checked_with_the_hub_at_its_first_use(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeHub(tmp_path / "hub", monkeypatch)
    commit = fake.add("org/clap", {"clap.pt": b"clap weights"})
    fake.hf_hub_download("org/clap", "clap.pt", revision=commit)  # another tool's download
    (fake.cache / "models--org--clap" / "snapshots" / commit / "clap.pt").write_bytes(b"damaged")
    entry = WeightEntry(description="clap", filename="clap.pt", sources=[Source.model_validate(
        {"huggingface": {"repo": "org/clap", "path": "clap.pt", "revision": commit}})])
    with pytest.raises(CheckpointError, match="is not the .* the Hugging Face Hub reports"):
        resolve_weight("clap", entry, progress=False)


def test_the_registry_sha256_is_checked_in_the_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeHub(tmp_path / "hub", monkeypatch)
    commit = fake.add("org/clap", {"clap.pt": b"clap weights"})
    entry = WeightEntry(description="clap", filename="clap.pt", sha256="ab" * 32, sources=[Source.model_validate(
        {"huggingface": {"repo": "org/clap", "path": "clap.pt", "revision": commit}})])
    with pytest.raises(CheckpointError, match=r"clap.pt: sha256 .* does not match the registry's (ab){32}"):
        resolve_weight("clap", entry, progress=False)


def test_a_pinned_revision_takes_another_cached_revision_only_when_every_sum_is_known(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An earlier dcase9 cached the repository's main; the registry now pins a commit: the cached files are
    taken offline when the registry knows their sums (and they match), not otherwise."""
    fake = FakeHub(tmp_path / "hub", monkeypatch)
    data = b"clap weights"
    fake.add("org/clap", {"clap.pt": data})
    fake.hf_hub_download("org/clap", "clap.pt")  # cached at main
    pinned = {"huggingface": {"repo": "org/clap", "path": "clap.pt", "revision": "f" * 40}}
    known = WeightEntry(description="clap", filename="clap.pt", sha256=hashlib.sha256(data).hexdigest(),
                        sources=[Source.model_validate(pinned)])
    assert resolve_weight("clap", known, offline=True).path.read_bytes() == data
    unknown = WeightEntry(description="clap", filename="clap.pt", sources=[Source.model_validate(pinned)])
    with pytest.raises(CheckpointError, match=r"offline mode is on \(offline=True\)"):
        resolve_weight("clap2", unknown, offline=True)


def test_zenodo_downloads_are_recorded_and_checked_at_later_uses(server: Server, monkeypatch: pytest.MonkeyPatch,
                                                                 isolated_home: Path) -> None:
    monkeypatch.setenv("DCASE9_ZENODO_API", f"http://127.0.0.1:{server.server_address[1]}/api/records")
    resolved = resolve_weight("toy", zenodo_entry(), progress=False)
    record = json.loads((isolated_home / "verified" / "toy.json").read_text())
    assert record["files"]["model.ckpt"]["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    resolved.path.write_bytes(PAYLOAD[:-1] + b"!")
    with pytest.raises(CheckpointError, match="the file changed since"):
        resolve_weight("toy", zenodo_entry(), progress=False)


def test_every_hub_source_of_the_registry_is_pinned_and_sums_are_sha256() -> None:
    from dcase9.weights import weight_entries

    for name, entry in weight_entries().items():
        for source in entry.sources:
            spec = source.huggingface or source.huggingface_snapshot
            if spec is not None:
                assert spec.revision is not None and len(spec.revision) == 40, name
        assert entry.sha256 is None or len(entry.sha256) == 64
    entries = weight_entries()
    # The sums public sources state (weights.yaml says where each comes from).
    assert entries["clap-music-speech-audioset"].sha256 == "51c68f12f9d7ea25fdaaccf741ec7f81e93ee594455410f3bca4f47f88d8e006"
    assert entries["audiosep-checkpoint"].sha256 == "f8cda01bfd0ebd141eef45d41db7a3ada23a56568465840d3cff04b8010ce82c"
    tokenizer = entries["roberta-base-tokenizer"].sources[0].huggingface_snapshot
    assert tokenizer is not None and set(tokenizer.sha256) >= {"vocab.json", "merges.txt"}
    assert entries["baseline-checkpoint"].sha256 is None  # Zenodo states an md5 only, checked at download


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


def tiny_tokenizer_cache(tmp_path: Path, repo_id: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, str]]:
    import huggingface_hub.constants

    from tests.tiny_roberta_tokenizer import write_tiny_roberta_tokenizer

    made = write_tiny_roberta_tokenizer(tmp_path / "made")
    files = {name: (made / name).read_text(encoding="utf-8") for name in ("vocab.json", "merges.txt")}
    snapshot = hub_cache_snapshot(tmp_path / "hub", repo_id, files)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return snapshot, files


@pytest.mark.parametrize("repo_id", ["roberta-base", "FacebookAI/roberta-base"])
def test_tokenizer_cache_of_the_reference_code_is_accepted_offline(repo_id: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """RobertaTokenizer.from_pretrained("roberta-base") (the reference code) caches vocab.json and merges.txt
    only, under models--roberta-base, at the repository's main; the same files may sit under
    models--FacebookAI--roberta-base. The registry pins a commit and knows both files' sums: a cache of
    another commit serves when its files have those sums (here the registry's sums are the tiny files')."""
    from dcase9.weights import weight_entry
    from dcase9.models.clap import load_roberta_tokenizer
    from dcase9.models.roberta_bpe import SlowRobertaBpe

    snapshot, files = tiny_tokenizer_cache(tmp_path, repo_id, monkeypatch)
    sums = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in files.items()}
    registry = weight_entry("roberta-base-tokenizer")
    entry = registry.model_copy(update={"sources": [
        s.model_copy(update={"huggingface_snapshot": s.huggingface_snapshot.model_copy(update={"sha256": sums})})
        for s in registry.sources]})
    resolved = resolve_weight("roberta-base-tokenizer", entry, offline=True)
    assert resolved.path == snapshot and resolved.origin == "cache"
    assert not (resolved.path / "tokenizer.json").exists()
    tokenizer = load_roberta_tokenizer(resolved.path)  # the fast tokenizer, built from the slow files
    text = "A dog barks, then  rain falls on the roof's tin!"
    assert tokenizer(text)["input_ids"] == SlowRobertaBpe(snapshot).ids(text)


def test_a_cached_tokenizer_that_is_not_roberta_base_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dcase9.weights import weight_entry

    tiny_tokenizer_cache(tmp_path, "FacebookAI/roberta-base", monkeypatch)
    with pytest.raises(CheckpointError, match=r"vocab.json: sha256 .* does not match the registry's 9e7f63c2"):
        resolve_weight("roberta-base-tokenizer", weight_entry("roberta-base-tokenizer"), offline=True)


def test_missing_tokenizer_offline_names_the_weight_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    from dcase9.weights import weight_entry

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(CheckpointError) as info:
        resolve_weight("roberta-base-tokenizer", weight_entry("roberta-base-tokenizer"), offline=True)
    message = " ".join(info.value.render({"weights": "--weight {name}={what}", "checkpoint": "--checkpoint {what}",
                                          "offline": "--offline"}).split())  # as `dcase9 infer` words it
    assert "--weight roberta-base-tokenizer=DIR" in message and "--checkpoint" not in message
    assert "huggingface.co/FacebookAI/roberta-base" in message and "huggingface.co/roberta-base" in message
