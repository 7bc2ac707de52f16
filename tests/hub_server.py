"""A loopback stand-in for the Hugging Face Hub, so that push/download round trips run for real in tests.

`LoopbackHub` serves, on 127.0.0.1 and a free port, the part of the Hub HTTP API that the unmodified
`huggingface_hub` client (1.x and 2.x) uses to create a model repo, commit files to it (regular files inline in the
NDJSON commit, large and binary files through the git-LFS batch API with a "basic" transfer served by this same server)
and read it back (repo info, tree listing, `resolve` downloads with the headers the client's cache relies on).
Repositories live in a temporary directory: file contents once each under `objects/<sha256>`, commits as in-memory
snapshots {path: blob}. Xet storage is not emulated, so clients must run with `HF_HUB_DISABLE_XET=1` (see
`client_env`); they then fall back to LFS, which every client version speaks.

Every request is logged in `requests`; a request no route matches gets a 404 whose body names it, is logged as an
error and is kept in `unknown_requests` so tests can assert that the emulation had no gap. Requests are bounded:
bodies above `max_body_bytes` get 413, sockets time out after `REQUEST_TIMEOUT_S` and the server answers at most
`max_requests` requests.

Usage:
    with LoopbackHub() as hub:
        env = hub.client_env(hf_home)   # environment for a client process
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import logging
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

logger = logging.getLogger(__name__)

DUMMY_TOKEN = "hf_loopbackDummyTokenForTests"
USER_NAME = "loopback-user"
DEFAULT_BRANCH = "main"
REQUEST_TIMEOUT_S = 30.0
LARGE_FILE_BYTES = 10 * 2**20  # the real Hub stores files above 10 MB with LFS whatever their name
# The .gitattributes the real Hub writes into every new model repo (its LFS patterns, abridged).
INITIAL_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*", "*.mlmodel",
        "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt",
        "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm",
        "*.xz", "*.zip", "*.zst", "*tfevents*",
    )
)  # fmt: skip

_REPO = r"(?P<repo>[^/]+/[^/]+)"  # namespace/name: every repo this server creates has a namespace
_REV = r"(?P<rev>[^/]+)"  # revisions arrive URL-quoted with safe="", so "refs/pr/1" is one segment


class HubError(Exception):
    """An HTTP error answer: status, message and the `X-Error-Code` huggingface_hub maps to its exceptions."""

    def __init__(self, status: int, message: str, error_code: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.headers = headers or {}


# ----------------------------------------------------------------------------------------------------------------------
# Storage model
# ----------------------------------------------------------------------------------------------------------------------


def git_blob_oid(content: bytes) -> str:
    """The id git gives a blob with this content (sha1 of "blob <size>\\0" + content)."""
    return hashlib.sha1(b"blob %d\x00" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-LFS pointer file stored in git in place of an LFS file's content."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Blob:
    """One stored file version. Git holds the content itself, or for LFS files a pointer to it (`git_oid` is then the
    pointer's blob id, as on the Hub)."""

    sha256: str
    size: int
    git_oid: str
    lfs: bool

    @classmethod
    def regular(cls, content: bytes, sha256: str) -> Blob:
        return cls(sha256=sha256, size=len(content), git_oid=git_blob_oid(content), lfs=False)

    @classmethod
    def large(cls, sha256: str, size: int) -> Blob:
        return cls(sha256=sha256, size=size, git_oid=git_blob_oid(lfs_pointer(sha256, size)), lfs=True)

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))

    @property
    def etag(self) -> str:
        """What the Hub sends as (linked) ETag: the sha256 for LFS files, the git blob id otherwise."""
        return self.sha256 if self.lfs else self.git_oid


@dataclass(frozen=True)
class Commit:
    oid: str
    parent: str | None
    title: str
    date: datetime
    files: dict[str, Blob]  # a full snapshot of the tree; never mutated once the commit exists


@dataclass
class Repo:
    repo_id: str
    created_at: datetime
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit:
        """Commit named by a branch or a full commit id; HubError(RevisionNotFound) otherwise."""
        oid = self.branches.get(revision, revision)
        commit = self.commits.get(oid)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit


class HubStore:
    """Thread-safe repositories and content-addressed objects (one file per sha256 under `root/objects`)."""

    def __init__(self, root: Path) -> None:
        self.objects = root / "objects"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.repos: dict[str, Repo] = {}
        self.lock = threading.RLock()
        self._commit_counter = 0

    # -- objects ---------------------------------------------------------------------------------------------------

    def put_object(self, content: bytes) -> str:
        sha256 = hashlib.sha256(content).hexdigest()
        path = self.objects / sha256
        if not path.exists():
            partial = path.with_suffix(f".{threading.get_ident()}.partial")
            partial.write_bytes(content)
            partial.replace(path)
        return sha256

    def has_object(self, sha256: str, size: int | None = None) -> bool:
        path = self.objects / sha256
        return path.is_file() and (size is None or path.stat().st_size == size)

    def read_object(self, sha256: str) -> bytes:
        return (self.objects / sha256).read_bytes()

    # -- repos -----------------------------------------------------------------------------------------------------

    def get_repo(self, repo_id: str) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def create_repo(self, repo_id: str) -> bool:
        """Create `repo_id` with the initial .gitattributes commit; False when it already exists."""
        with self.lock:
            if repo_id in self.repos:
                return False
            repo = Repo(repo_id=repo_id, created_at=_now())
            self.repos[repo_id] = repo
            initial = [("add", ".gitattributes", INITIAL_GITATTRIBUTES.encode())]
            self.commit(repo, DEFAULT_BRANCH, "initial commit", initial)
            return True

    def regular_blob(self, content: bytes) -> Blob:
        return Blob.regular(content, self.put_object(content))

    def commit(self, repo: Repo, branch: str, title: str, operations: list[tuple]) -> Commit:
        """Apply ("add", path, bytes | Blob) / ("delete", path) / ("delete_folder", path) to `branch`'s head."""
        with self.lock:
            head_oid = repo.branches.get(branch)
            files = dict(repo.commits[head_oid].files) if head_oid else {}
            for operation in operations:
                kind, path = operation[0], operation[1]
                if kind == "add":
                    payload = operation[2]
                    files[path] = payload if isinstance(payload, Blob) else self.regular_blob(payload)
                elif kind == "delete":
                    if files.pop(path, None) is None:
                        raise HubError(404, f"cannot delete {path}: no such file", "EntryNotFound")
                elif kind == "delete_folder":
                    prefix = path.rstrip("/") + "/"
                    doomed = [name for name in files if name.startswith(prefix)]
                    if not doomed:
                        raise HubError(404, f"cannot delete folder {path}: no such folder", "EntryNotFound")
                    for name in doomed:
                        del files[name]
            self._commit_counter += 1
            digest = hashlib.sha1(
                json.dumps(
                    [self._commit_counter, repo.repo_id, head_oid, title, sorted((p, b.etag) for p, b in files.items())]
                ).encode()
            ).hexdigest()
            commit = Commit(oid=digest, parent=head_oid, title=title, date=_now(), files=files)
            repo.commits[commit.oid] = commit
            repo.branches[branch] = commit.oid
            return commit


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def lfs_patterns(gitattributes: str) -> list[str]:
    """Patterns that a .gitattributes file routes to LFS (`filter=lfs`)."""
    patterns = []
    for line in gitattributes.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
            patterns.append(parts[0])
    return patterns


def matches_lfs(path: str, patterns: list[str]) -> bool:
    """git-attribute matching, simplified: patterns without "/" match the basename, others the whole path."""
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(path if "/" in pattern else name, pattern) for pattern in patterns)


# ----------------------------------------------------------------------------------------------------------------------
# HTTP layer
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str  # still URL-quoted; route groups are unquoted one by one
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    params: dict[str, str]

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as err:
            raise HubError(400, f"request body is not JSON: {err}") from err

    def flag(self, name: str) -> bool:
        return self.query.get(name, ["false"])[-1].lower() in ("1", "true", "yes")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def of_json(cls, payload: Any, status: int = 200, headers: dict | None = None) -> Response:
        return cls(status=status, body=json.dumps(payload).encode(), headers=headers or {})


Route = tuple[str, "re.Pattern[str]", Callable[["LoopbackHub", Request], Response], bool]


class LoopbackHub:
    """The loopback Hub server; see the module docstring. Start with `start()` or `with LoopbackHub() as hub`."""

    def __init__(
        self,
        storage_dir: str | Path | None = None,
        *,
        token: str | None = DUMMY_TOKEN,
        max_body_bytes: int = 256 * 2**20,
        max_requests: int = 10_000,
    ) -> None:
        """`token`: the bearer token write endpoints require (None: accept anonymous writes)."""
        self._owned_dir = storage_dir is None
        self.storage_dir = Path(tempfile.mkdtemp(prefix="loopback-hub-") if storage_dir is None else storage_dir)
        self.store = HubStore(self.storage_dir)
        self.token = token
        self.max_body_bytes = max_body_bytes
        self.max_requests = max_requests
        self.requests: list[tuple[str, str]] = []  # (method, path without query), in arrival order
        self.unknown_requests: list[str] = []
        self._server: _HubHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> LoopbackHub:
        if self._server is not None:
            raise RuntimeError("LoopbackHub already started")
        self._server = _HubHTTPServer(("127.0.0.1", 0), _HubRequestHandler)
        self._server.hub = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-hub", daemon=True)
        self._thread.start()
        logger.info("loopback Hub serving %s from %s", self.url, self.storage_dir)
        return self

    def stop(self) -> None:
        """Stop serving, wait for the serving thread, and delete the storage directory if this object made it."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None
        if self._owned_dir:
            shutil.rmtree(self.storage_dir, ignore_errors=True)

    def __enter__(self) -> LoopbackHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("LoopbackHub is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def client_env(self, hf_home: str | Path) -> dict[str, str]:
        """Environment variables that point a huggingface_hub client process at this server with a fresh cache."""
        hf_home = Path(hf_home)
        return {
            "HF_ENDPOINT": self.url,
            "HF_TOKEN": self.token or DUMMY_TOKEN,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_XET": "1",  # Xet storage is not emulated: the client falls back to LFS
            "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_HOME": str(hf_home),
            "HF_HUB_CACHE": str(hf_home / "hub"),
            "HF_XET_CACHE": str(hf_home / "xet"),
            "HF_MODULES_CACHE": str(hf_home / "modules"),
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    # -- inspection helpers for tests ------------------------------------------------------------------------------

    def repo_files(self, repo_id: str, revision: str = DEFAULT_BRANCH) -> dict[str, bytes]:
        """Contents of every file of `repo_id` at `revision`."""
        with self.store.lock:
            commit = self.store.get_repo(repo_id).resolve(revision)
            return {path: self.store.read_object(blob.sha256) for path, blob in commit.files.items()}

    def lfs_files(self, repo_id: str, revision: str = DEFAULT_BRANCH) -> set[str]:
        """Paths of `repo_id` stored with LFS at `revision`."""
        with self.store.lock:
            commit = self.store.get_repo(repo_id).resolve(revision)
            return {path for path, blob in commit.files.items() if blob.lfs}

    def endpoints_used(self) -> list[str]:
        """Distinct "METHOD route" strings of the requests served so far (repo ids, revisions and files generalised)."""
        seen: dict[str, None] = {}
        for method, path in self.requests:
            seen[f"{method} {_generalise(path)}"] = None
        return list(seen)

    # -- dispatch --------------------------------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        for method, pattern, handler, needs_auth in ROUTES:
            match = pattern.fullmatch(request.path)
            if match is None or method != request.method:
                continue
            request.params = {key: unquote(value) for key, value in match.groupdict().items() if value is not None}
            if needs_auth:
                self._check_token(request)
            return handler(self, request)
        message = f"loopback Hub: unknown endpoint {request.method} {request.path}"
        logger.error(message)
        self.unknown_requests.append(f"{request.method} {request.path}")
        raise HubError(404, message)

    def _check_token(self, request: Request) -> None:
        if self.token is None:
            return
        if request.headers.get("Authorization", "") != f"Bearer {self.token}":
            raise HubError(401, "Invalid credentials in Authorization header")

    # -- endpoints: account and repos ------------------------------------------------------------------------------

    def whoami(self, request: Request) -> Response:
        return Response.of_json(
            {
                "type": "user",
                "id": "0" * 24,
                "name": USER_NAME,
                "fullname": "Loopback Hub test user",
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "tests", "role": "write"}},
            }
        )

    def create_repo(self, request: Request) -> Response:
        payload = request.json() or {}
        repo_type = payload.get("type") or "model"
        if repo_type != "model":
            raise HubError(400, f"loopback Hub only hosts model repos, not {repo_type!r}")
        name = payload.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[\w.-]+", name):
            raise HubError(400, f"invalid repo name {name!r}")
        repo_id = f"{payload.get('organization') or USER_NAME}/{name}"
        body = {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id}
        if not self.store.create_repo(repo_id):
            message = "You already created this model repo"
            return Response.of_json({"error": message, **body}, status=409, headers={"X-Error-Message": message})
        return Response.of_json(body)

    def validate_yaml(self, request: Request) -> Response:
        return Response.of_json({"errors": [], "warnings": []})

    def model_info(self, request: Request) -> Response:
        repo = self.store.get_repo(request.params["repo"])
        with self.store.lock:
            commit = repo.resolve(request.params.get("rev", DEFAULT_BRANCH))
            with_blobs = request.flag("blobs")
            siblings = []
            for path, blob in sorted(commit.files.items()):
                sibling: dict[str, Any] = {"rfilename": path}
                if with_blobs:
                    sibling.update(self._blob_json(blob))
                siblings.append(sibling)
            namespace = repo.repo_id.split("/")[0]
            return Response.of_json(
                {
                    "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
                    "id": repo.repo_id,
                    "modelId": repo.repo_id,
                    "author": namespace,
                    "sha": commit.oid,
                    "lastModified": _iso(commit.date),
                    "createdAt": _iso(repo.created_at),
                    "private": False,
                    "disabled": False,
                    "gated": False,
                    "downloads": 0,
                    "likes": 0,
                    "tags": [],
                    "siblings": siblings,
                    "usedStorage": sum(blob.size for blob in commit.files.values()),
                }
            )

    # -- endpoints: listing ----------------------------------------------------------------------------------------

    def tree(self, request: Request) -> Response:
        repo = self.store.get_repo(request.params["repo"])
        with self.store.lock:
            commit = repo.resolve(request.params["rev"])
            folder = request.params.get("path", "").strip("/")
            recursive, expand = request.flag("recursive"), request.flag("expand")
            prefix = f"{folder}/" if folder else ""
            if folder and not any(path.startswith(prefix) for path in commit.files):
                raise HubError(404, f"{folder} does not exist on {request.params['rev']}", "EntryNotFound")
            entries: dict[str, dict] = {}
            for path, blob in sorted(commit.files.items()):
                if not path.startswith(prefix):
                    continue
                rest = path[len(prefix) :].split("/")
                for depth in range(1, len(rest)):  # the folders between `folder` and the file
                    if depth > 1 and not recursive:
                        break
                    sub = prefix + "/".join(rest[:depth])
                    entries.setdefault(sub, self._folder_json(commit, sub))
                if recursive or len(rest) == 1:
                    entries[path] = self._file_json(commit, path, blob, expand)
            return Response.of_json(list(entries.values()))

    def paths_info(self, request: Request) -> Response:
        repo = self.store.get_repo(request.params["repo"])
        form = parse_qs(request.body.decode(), keep_blank_values=True)
        if request.headers.get("Content-Type", "").startswith("application/json"):
            payload = request.json() or {}
            form = {"paths": payload.get("paths", []), "expand": [str(payload.get("expand", False))]}
        expand = form.get("expand", ["false"])[-1].lower() in ("1", "true")
        with self.store.lock:
            commit = repo.resolve(request.params["rev"])
            result = []
            for path in form.get("paths", []):
                path = path.strip("/")
                if path in commit.files:
                    result.append(self._file_json(commit, path, commit.files[path], expand))
                elif any(name.startswith(path + "/") for name in commit.files):
                    result.append(self._folder_json(commit, path))
            return Response.of_json(result)

    def _blob_json(self, blob: Blob) -> dict[str, Any]:
        info: dict[str, Any] = {"size": blob.size, "blobId": blob.git_oid}
        if blob.lfs:
            info["lfs"] = {"sha256": blob.sha256, "size": blob.size, "pointerSize": blob.pointer_size}
        return info

    def _file_json(self, commit: Commit, path: str, blob: Blob, expand: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": blob.git_oid, "size": blob.size, "path": path}
        if blob.lfs:
            entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": blob.pointer_size}
        if expand:
            entry["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": _iso(commit.date)}
        return entry

    def _folder_json(self, commit: Commit, folder: str) -> dict[str, Any]:
        listing = sorted((p, b.git_oid) for p, b in commit.files.items() if p.startswith(folder + "/"))
        tree_oid = hashlib.sha1(json.dumps(listing).encode()).hexdigest()
        return {"type": "directory", "oid": tree_oid, "size": 0, "path": folder}

    # -- endpoints: upload -----------------------------------------------------------------------------------------

    def preupload(self, request: Request) -> Response:
        repo = self.store.get_repo(request.params["repo"])
        files = (request.json() or {}).get("files")
        if not isinstance(files, list):
            raise HubError(400, 'preupload expects {"files": [{"path", "sample", "size"}, ...]}')
        with self.store.lock:
            commit = repo.resolve(request.params["rev"])
            patterns = self._lfs_patterns(commit)
            answer = []
            for info in files:
                path = info["path"]
                sample = base64.b64decode(info.get("sample", ""))
                lfs = self._should_use_lfs(path, int(info.get("size", 0)), sample, patterns)
                existing = commit.files.get(path)
                answer.append(
                    {
                        "path": path,
                        "uploadMode": "lfs" if lfs else "regular",
                        "shouldIgnore": False,
                        # The client compares this with its local oid (sha256 for LFS, git blob id otherwise) to skip
                        # unchanged files.
                        "oid": None if existing is None else (existing.sha256 if existing.lfs else existing.git_oid),
                    }
                )
        return Response.of_json({"files": answer, "commitOid": commit.oid})

    def _lfs_patterns(self, commit: Commit) -> list[str]:
        blob = commit.files.get(".gitattributes")
        return lfs_patterns(self.store.read_object(blob.sha256).decode()) if blob else []

    @staticmethod
    def _should_use_lfs(path: str, size: int, sample: bytes, patterns: list[str]) -> bool:
        return matches_lfs(path, patterns) or size >= LARGE_FILE_BYTES or b"\x00" in sample

    def lfs_batch(self, request: Request) -> Response:
        self.store.get_repo(request.params["repo"])
        payload = request.json() or {}
        if payload.get("operation") != "upload":
            operation = payload.get("operation")
            raise HubError(422, f"loopback Hub LFS batch only supports operation 'upload', not {operation!r}")
        if "basic" not in payload.get("transfers", ["basic"]):
            raise HubError(422, "loopback Hub only offers the 'basic' LFS transfer")
        objects = []
        for item in payload.get("objects", []):
            oid, size = item.get("oid"), item.get("size")
            if not (isinstance(oid, str) and re.fullmatch(r"[0-9a-f]{64}", oid) and isinstance(size, int)):
                error = {"code": 422, "message": "an object needs a sha256 'oid' and an integer 'size'"}
                objects.append({"oid": str(oid), "size": size if isinstance(size, int) else 0, "error": error})
                continue
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not self.store.has_object(oid, size):  # no "actions": the client skips objects already stored
                entry["actions"] = {
                    "upload": {"href": f"{self.url}/lfs-storage/{oid}?size={size}", "expires_in": 3600},
                    "verify": {"href": f"{self.url}/lfs-storage/verify", "header": {}, "expires_in": 3600},
                }
            objects.append(entry)
        response = Response.of_json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})
        response.content_type = "application/vnd.git-lfs+json"
        return response

    def lfs_upload(self, request: Request) -> Response:
        oid = request.params["oid"]
        expected_size = int(request.query.get("size", ["-1"])[-1])
        if hashlib.sha256(request.body).hexdigest() != oid:
            raise HubError(400, f"LFS upload content does not hash to {oid}")
        if expected_size >= 0 and len(request.body) != expected_size:
            raise HubError(400, f"LFS upload of {oid}: got {len(request.body)} bytes, announced {expected_size}")
        self.store.put_object(request.body)
        return Response(status=200, headers={"ETag": f'"{oid}"'})

    def lfs_verify(self, request: Request) -> Response:
        payload = request.json() or {}
        if not self.store.has_object(str(payload.get("oid")), payload.get("size")):
            raise HubError(404, f"LFS object {payload.get('oid')} (size {payload.get('size')}) was not uploaded")
        return Response.of_json({"success": True})

    def commit(self, request: Request) -> Response:
        repo = self.store.get_repo(request.params["repo"])
        if request.flag("create_pr"):
            raise HubError(400, "loopback Hub does not support pull requests (create_pr=1)")
        branch = request.params["rev"]
        lines = [json.loads(line) for line in request.body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "a commit payload starts with a 'header' line")
        header = lines[0]["value"]
        operations = []
        with self.store.lock:
            if branch not in repo.branches:
                raise HubError(404, f"Invalid rev id: {branch} (commits go to an existing branch)", "RevisionNotFound")
            head = repo.commits[repo.branches[branch]]
            parent = header.get("parentCommit")
            if parent and not head.oid.startswith(parent):
                raise HubError(412, f"parent commit {parent} is not the head of {branch} ({head.oid})")
            patterns = self._lfs_patterns(head)
            for line in lines[1:]:
                operations.append(self._commit_operation(line, patterns))
            commit = self.store.commit(repo, branch, header.get("summary") or "commit", operations)
        return Response.of_json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self.url}/{repo.repo_id}/commit/{commit.oid}",
                "pullRequestUrl": None,
                "hookOutput": "",
            }
        )

    def _commit_operation(self, line: dict, patterns: list[str]) -> tuple:
        key, value = line.get("key"), line.get("value") or {}
        path = value.get("path", "")
        if key == "file":
            if value.get("encoding") != "base64":
                raise HubError(400, f"file {path}: only base64 content is supported")
            content = base64.b64decode(value["content"])
            if self._should_use_lfs(path, len(content), content[:512], patterns):
                raise HubError(400, f"file {path} must be uploaded with LFS (the preupload answer said so)")
            return ("add", path, content)
        if key == "lfsFile":
            oid, size = value.get("oid"), value.get("size")
            if value.get("algo", "sha256") != "sha256" or not self.store.has_object(str(oid), size):
                raise HubError(422, f"LFS file {path}: object {oid} (size {size}) was not uploaded")
            return ("add", path, Blob.large(oid, (self.store.objects / oid).stat().st_size))
        if key == "deletedFile":
            return ("delete", path)
        if key == "deletedFolder":
            return ("delete_folder", path)
        message = f"loopback Hub: unsupported commit operation {key!r}"
        logger.error(message)
        self.unknown_requests.append(f"commit operation {key}")
        raise HubError(400, message)

    # -- endpoints: download ---------------------------------------------------------------------------------------

    def resolve(self, request: Request) -> Response:
        repo = self.store.get_repo(request.params["repo"])
        with self.store.lock:
            commit = repo.resolve(request.params["rev"])
            path = request.params["path"]
            blob = commit.files.get(path)
            if blob is None:
                message = f"{path} does not exist at {commit.oid}"
                raise HubError(404, message, "EntryNotFound", {"X-Repo-Commit": commit.oid})
            headers = {
                "X-Repo-Commit": commit.oid,
                "ETag": f'"{blob.etag}"',
                "Accept-Ranges": "bytes",
                "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
            }
            if blob.lfs:  # what the Hub sends along its redirect to the CDN for LFS files
                headers["X-Linked-Etag"] = f'"{blob.sha256}"'
                headers["X-Linked-Size"] = str(blob.size)
            content = b"" if request.method == "HEAD" else self.store.read_object(blob.sha256)
        response = Response(status=200, body=content, headers=headers, content_type="application/octet-stream")
        response.headers["Content-Length"] = str(blob.size)
        byte_range = request.headers.get("Range")
        if byte_range and request.method == "GET":
            start, end = _parse_range(byte_range, blob.size)
            response.status, response.body = 206, content[start : end + 1]
            response.headers["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
            response.headers["Content-Length"] = str(end + 1 - start)
        return response


def _parse_range(header: str, size: int) -> tuple[int, int]:
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if match is None or not any(match.groups()):
        raise HubError(416, f"unsupported Range header {header!r}")
    first, last = match.groups()
    if not first:  # suffix range: the last N bytes
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        message = f"Range {header!r} is outside a {size}-byte file"
        raise HubError(416, message, headers={"Content-Range": f"bytes */{size}"})
    return start, end


ROUTES: list[Route] = [
    ("GET", re.compile(r"/api/whoami-v2"), LoopbackHub.whoami, True),
    ("POST", re.compile(r"/api/repos/create"), LoopbackHub.create_repo, True),
    ("POST", re.compile(r"/api/validate-yaml"), LoopbackHub.validate_yaml, False),
    ("GET", re.compile(rf"/api/models/{_REPO}"), LoopbackHub.model_info, False),
    ("GET", re.compile(rf"/api/models/{_REPO}/revision/{_REV}"), LoopbackHub.model_info, False),
    ("GET", re.compile(rf"/api/models/{_REPO}/tree/{_REV}(?:/(?P<path>.+))?"), LoopbackHub.tree, False),
    ("POST", re.compile(rf"/api/models/{_REPO}/paths-info/{_REV}"), LoopbackHub.paths_info, False),
    ("POST", re.compile(rf"/api/models/{_REPO}/preupload/{_REV}"), LoopbackHub.preupload, True),
    ("POST", re.compile(rf"/api/models/{_REPO}/commit/{_REV}"), LoopbackHub.commit, True),
    ("POST", re.compile(rf"/{_REPO}\.git/info/lfs/objects/batch"), LoopbackHub.lfs_batch, True),
    ("PUT", re.compile(r"/lfs-storage/(?P<oid>[0-9a-f]{64})"), LoopbackHub.lfs_upload, False),
    ("POST", re.compile(r"/lfs-storage/verify"), LoopbackHub.lfs_verify, False),
    ("HEAD", re.compile(rf"/{_REPO}/resolve/{_REV}/(?P<path>.+)"), LoopbackHub.resolve, False),
    ("GET", re.compile(rf"/{_REPO}/resolve/{_REV}/(?P<path>.+)"), LoopbackHub.resolve, False),
]

_GENERALISATIONS = [
    (re.compile(r"^/api/models/[^/]+/[^/]+"), "/api/models/{repo}"),
    (re.compile(r"^/[^/]+/[^/]+\.git/"), "/{repo}.git/"),
    (re.compile(r"^/(?!api/|lfs-storage/)[^/]+/[^/]+/resolve/[^/]+/.+"), "/{repo}/resolve/{revision}/{path}"),
    (re.compile(r"/(revision|tree|preupload|commit|paths-info)/[^/]+(/.*)?$"), r"/\1/{revision}"),
    (re.compile(r"/lfs-storage/[0-9a-f]{64}"), "/lfs-storage/{oid}"),
]


def _generalise(path: str) -> str:
    for pattern, replacement in _GENERALISATIONS:
        path = pattern.sub(replacement, path)
    return path


class _HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    hub: LoopbackHub


class _HubRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    timeout = REQUEST_TIMEOUT_S
    server: _HubHTTPServer

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        hub = self.server.hub
        split = urlsplit(self.path)
        hub.requests.append((self.command, split.path))
        try:
            if len(hub.requests) > hub.max_requests:
                self.close_connection = True
                raise HubError(400, f"loopback Hub request budget ({hub.max_requests}) exhausted: is a client looping?")
            body = self._read_body(hub.max_body_bytes)
            request = Request(self.command, split.path, parse_qs(split.query), self.headers, body, {})
            response = hub.dispatch(request)
        except HubError as err:
            headers = {"X-Error-Message": err.message, **err.headers}
            if err.error_code:
                headers["X-Error-Code"] = err.error_code
            response = Response.of_json({"error": err.message}, status=err.status, headers=headers)
        except Exception as err:  # a server bug: answer 500 with the reason rather than hang the client
            logger.exception("loopback Hub failed on %s %s", self.command, self.path)
            response = Response.of_json({"error": f"loopback Hub internal error: {err!r}"}, status=500)
        self._send(response)

    def _read_body(self, limit: int) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return b"".join(self._read_chunks(limit))
        length = int(self.headers.get("Content-Length") or 0)
        if length > limit:
            self.close_connection = True  # the unread body would desynchronise a kept-alive connection
            raise HubError(413, f"request body of {length} bytes exceeds the loopback Hub limit of {limit}")
        return self.rfile.read(length) if length else b""

    def _read_chunks(self, limit: int) -> Iterator[bytes]:
        total = 0
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return
            total += size
            if total > limit:
                self.close_connection = True
                raise HubError(413, f"chunked request body exceeds the loopback Hub limit of {limit} bytes")
            yield self.rfile.read(size)
            self.rfile.readline(1024)  # CRLF after each chunk

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        headers = {"Content-Type": response.content_type, "Content-Length": str(len(response.body)), **response.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (BaseHTTPRequestHandler's signature)
        logger.debug("loopback Hub: " + format, *args)


# ----------------------------------------------------------------------------------------------------------------------
# Client side
# ----------------------------------------------------------------------------------------------------------------------


def point_client_at(hub: LoopbackHub, hf_home: str | Path, monkeypatch: Any) -> dict[str, str]:
    """Point this process's huggingface_hub and transformers at `hub`, with a fresh cache under `hf_home`.

    Environment variables alone do not suffice in-process: huggingface_hub reads them once, at import, into
    `huggingface_hub.constants` (ENDPOINT, the resolve-URL template, cache paths, the Xet switch...), and HfApi
    objects created at import (the module-level `huggingface_hub.hf_api.api` behind `create_repo`, `upload_file`...)
    or lazily (transformers' shared `hf_api()`) keep the endpoint they were built with. `monkeypatch` (pytest's, or
    anything with `setenv`/`setattr`) patches all of them and restores them at teardown. Returns the environment for
    client subprocesses (`hub.client_env(hf_home)`), which is also set in `os.environ`.
    """
    import huggingface_hub.hf_api
    from huggingface_hub import constants

    env = hub.client_env(hf_home)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    token_path = Path(env["HF_HOME"]) / "token"
    patches = {
        "ENDPOINT": hub.url,
        "HUGGINGFACE_CO_URL_TEMPLATE": hub.url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": env["HF_HOME"],
        "HF_HUB_CACHE": env["HF_HUB_CACHE"],
        "HUGGINGFACE_HUB_CACHE": env["HF_HUB_CACHE"],
        "HF_ASSETS_CACHE": str(Path(env["HF_HOME"]) / "assets"),
        "HF_XET_CACHE": env["HF_XET_CACHE"],
        "HF_TOKEN_PATH": str(token_path),
        "HF_STORED_TOKENS_PATH": str(token_path.parent / "stored_tokens"),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_XET": True,
    }
    for name, value in patches.items():
        if hasattr(constants, name):  # 1.x and 2.x differ in a few names
            monkeypatch.setattr(constants, name, value)
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", hub.url)
    try:
        import transformers.dynamic_module_utils
        import transformers.utils.hub
    except ImportError:
        return env
    if hasattr(transformers.utils.hub, "_hf_api"):  # rebuilt on next use, from the patched ENDPOINT
        monkeypatch.setattr(transformers.utils.hub, "_hf_api", None)
    for module in (transformers.utils.hub, transformers.dynamic_module_utils):
        if hasattr(module, "HF_MODULES_CACHE"):
            monkeypatch.setattr(module, "HF_MODULES_CACHE", env["HF_MODULES_CACHE"])
    return env
