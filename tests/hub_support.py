"""A Hugging Face Hub in memory, for tests: repositories of files at commits, served through the functions of
huggingface_hub that dcase9 calls (hf_hub_download, snapshot_download, HfApi.get_paths_info, create_repo,
upload_folder), with a cache laid out as huggingface_hub's (`<type>s--owner--name/snapshots/<commit>/...`).

Files named *.safetensors, *.ckpt or *.pt are "stored with LFS": the Hub reports their sha256; the others
their git object id. `damage` makes downloads of a file give other bytes than those the Hub reports sums of
(a download damaged on the way); `lie` makes the Hub report another sum than its file's.
"""

from __future__ import annotations

import hashlib
import socket
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

LFS_SUFFIXES = (".safetensors", ".ckpt", ".pt")
TOKEN = "hf_secretTOKEN1234567890"


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    def __init__(self, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import huggingface_hub

        self.cache = cache
        self.repos: dict[tuple[str, str], dict[str, dict[str, bytes]]] = {}  # (type, repo) -> commit -> files
        self.main: dict[tuple[str, str], str] = {}
        self.lies: dict[tuple[str, str], str] = {}
        self.damaged: dict[tuple[str, str], bytes] = {}
        self.downloads: list[tuple[str, str, str | None, bool]] = []  # repo, file, revision, local_files_only
        self.uploads: list[dict[str, Any]] = []
        self.upload_error: Exception | None = None
        hub = self

        class HfApi:
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                pass

            def get_paths_info(self, repo_id: str, paths: list[str], *, revision: str | None = None,
                               repo_type: str | None = None, **kwargs: Any) -> list[Any]:
                files = hub._files(repo_type or "model", repo_id, revision)
                infos = []
                for path in paths:
                    data = files[path]
                    lie = hub.lies.get((repo_id, path))
                    if path.endswith(LFS_SUFFIXES):
                        infos.append(SimpleNamespace(path=path, blob_id=git_sha1(b"pointer " + data),
                                                     lfs=SimpleNamespace(sha256=lie or hashlib.sha256(data).hexdigest())))
                    else:
                        infos.append(SimpleNamespace(path=path, blob_id=lie or git_sha1(data), lfs=None))
                return infos

            def create_repo(self, repo_id: str, **kwargs: Any) -> Any:
                hub.uploads.append({"created": repo_id, **kwargs})
                return SimpleNamespace(repo_id=repo_id)

            def upload_folder(self, *, repo_id: str, folder_path: str, **kwargs: Any) -> Any:
                if hub.upload_error is not None:
                    raise hub.upload_error
                folder = Path(folder_path)
                files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
                commit = hub.add(repo_id, files)
                hub.uploads.append({"repo": repo_id, "files": sorted(files), **kwargs})
                return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/{commit}")

        # The Hub answers: dcase9 asks whether its host accepts a connection before downloading
        # (`dcase9.hub.Reachability`), so the endpoint is a socket that listens here.
        self.listener = socket.create_server(("127.0.0.1", 0))
        weakref.finalize(self, self.listener.close)
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{self.listener.getsockname()[1]}")
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", self.hf_hub_download)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", self.snapshot_download)
        monkeypatch.setattr(huggingface_hub, "HfApi", HfApi)
        monkeypatch.setenv("HF_TOKEN", TOKEN)

    def add(self, repo: str, files: dict[str, bytes], *, repo_type: str = "model", commit: str | None = None) -> str:
        """A new commit of `repo` holding `files` (which becomes its main); returns the commit."""
        commits = self.repos.setdefault((repo_type, repo), {})
        content = hashlib.sha1(repo.encode())
        for name in sorted(files):  # like git's: the same files give the same commit
            content.update(name.encode() + b"\0" + files[name])
        commit = commit or content.hexdigest()
        commits[commit] = dict(files)
        self.main[(repo_type, repo)] = commit
        return commit

    def lie(self, repo: str, path: str, value: str) -> None:
        self.lies[(repo, path)] = value

    def damage(self, repo: str, path: str, data: bytes) -> None:
        self.damaged[(repo, path)] = data

    def _folder(self, repo_type: str, repo: str) -> Path:
        return self.cache / f"{repo_type}s--{repo.replace('/', '--')}"

    def _files(self, repo_type: str, repo: str, revision: str | None) -> dict[str, bytes]:
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        commits = self.repos.get((repo_type, repo))
        if commits is None:
            raise RepositoryNotFoundError(f"404 Client Error: repository {repo} not found")
        commit = revision or self.main[(repo_type, repo)]
        if commit not in commits:
            raise RevisionNotFoundError(f"404 Client Error: revision {revision} not found")
        return commits[commit]

    def _snapshot(self, repo_type: str, repo: str, revision: str | None, local: bool) -> Path | None:
        folder = self._folder(repo_type, repo)
        if local:
            if revision is None:
                ref = folder / "refs" / "main"
                revision = ref.read_text() if ref.is_file() else None
            return folder / "snapshots" / revision if revision else None
        commit = revision or self.main[(repo_type, repo)]
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        if revision is None:
            (folder / "refs" / "main").write_text(commit)
        return folder / "snapshots" / commit

    def hf_hub_download(self, repo_id: str, filename: str, *, repo_type: str | None = "model",
                        revision: str | None = None, local_files_only: bool = False, **kwargs: Any) -> str:
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        repo_type = repo_type or "model"
        self.downloads.append((repo_id, filename, revision, local_files_only))
        snapshot = self._snapshot(repo_type, repo_id, revision, local_files_only)
        if local_files_only:
            if snapshot is None or not (snapshot / filename).is_file():
                raise LocalEntryNotFoundError(f"{filename} is not cached")
            return str(snapshot / filename)
        files = self._files(repo_type, repo_id, revision)
        if filename not in files:
            raise EntryNotFoundError(f"404 Client Error: {filename} not in {repo_id}")
        assert snapshot is not None
        (snapshot / filename).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / filename).write_bytes(self.damaged.get((repo_id, filename), files[filename]))
        return str(snapshot / filename)

    def snapshot_download(self, repo_id: str, *, repo_type: str | None = None, revision: str | None = None,
                          local_files_only: bool = False, **kwargs: Any) -> str:
        from huggingface_hub.errors import LocalEntryNotFoundError

        repo_type = repo_type or "model"
        snapshot = self._snapshot(repo_type, repo_id, revision, local_files_only)
        if local_files_only:
            if snapshot is None or not snapshot.is_dir():
                raise LocalEntryNotFoundError(f"{repo_id} is not cached")
            return str(snapshot)
        assert snapshot is not None
        for name, data in self._files(repo_type, repo_id, revision).items():
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            (snapshot / name).write_bytes(self.damaged.get((repo_id, name), data))
        return str(snapshot)
