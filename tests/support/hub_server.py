"""A small Hugging Face Hub-compatible HTTP server for tests (stdlib only, threaded, stores objects on disk).

It answers the calls that `datasets`' `push_to_hub` and `load_dataset` make through `huggingface_hub` (see
DESIGN.md §6): repo create / info, preupload (LFS for `*.parquet`, with the remote `oid` so unchanged files are
skipped), LFS batch + PUT, NDJSON commits (with `deletedFile`, `parentCommit`), tree / paths-info / commits,
`resolve` (ETag, X-Repo-Commit, X-Linked-Etag, X-Linked-Size, Range), validate-yaml and whoami. Tokens map to users;
a private repo is invisible (401/404 `RepoNotFound`) without its owner's token; an unknown token gets a 401
"Invalid credentials in Authorization header" like the real Hub.

    with HubServer(tmp_path, tokens={"hf_secret": "alice"}) as hub:
        os.environ["HF_ENDPOINT"] = hub.url   # before importing datasets / huggingface_hub
"""

from __future__ import annotations

import base64
import datetime as _dt
import fnmatch
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["HubServer"]

_LFS_PATTERNS = ["*.parquet", "*.arrow", "*.bin", "*.safetensors", "*.gguf", "*.zip", "*.gz", "*.tar"]
_GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in _LFS_PATTERNS).encode()
_REPO = r"(?P<type>datasets|models|spaces)/(?P<repo>[^/]+/[^/]+?)"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class _Store:
    """Repos (commit snapshots in `repos.json`) and content-addressed objects under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "objects").mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        index = root / "repos.json"
        self.repos: dict[str, dict[str, Any]] = json.loads(index.read_text()) if index.is_file() else {}

    def save(self) -> None:
        (self.root / "repos.json").write_text(json.dumps(self.repos))

    def put_object(self, data: bytes) -> str:
        oid = _sha256(data)
        path = self.root / "objects" / oid
        if not path.exists():
            path.write_bytes(data)
        return oid

    def has_object(self, oid: str) -> bool:
        return (self.root / "objects" / oid).is_file()

    def get_object(self, oid: str) -> bytes:
        return (self.root / "objects" / oid).read_bytes()

    def file_entry(self, data: bytes, lfs: bool) -> dict[str, Any]:
        return {"sha256": self.put_object(data), "size": len(data), "lfs": lfs, "blob": _git_oid(data)}


class HubServer:
    """A threaded Hub-compatible server on 127.0.0.1; `url` is the value for `HF_ENDPOINT`."""

    def __init__(self, root: Path, tokens: Optional[dict[str, str]] = None, port: int = 0) -> None:
        self.store = _Store(Path(root))
        self.tokens = dict(tokens or {})
        self.requests: list[tuple[str, str, Optional[str]]] = []  # (method, path, authorization)
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "HubServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def token_for(self, user: str) -> str:
        """A token that authenticates as `user`."""
        return next(token for token, name in self.tokens.items() if name == user)

    def commits(self, repo_id: str, repo_type: str = "dataset") -> list[str]:
        """Commit ids of a repo, oldest first (empty for an unknown repo)."""
        repo = self.store.repos.get(f"{repo_type}s/{repo_id}")
        return [c["oid"] for c in repo["commits"]] if repo else []

    def files(self, repo_id: str, repo_type: str = "dataset") -> dict[str, bytes]:
        """The files at the head of `main`."""
        repo = self.store.repos[f"{repo_type}s/{repo_id}"]
        return {p: self.store.get_object(e["sha256"]) for p, e in repo["commits"][-1]["files"].items()}


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # ---- plumbing -------------------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _body(self) -> bytes:
        if getattr(self, "_cached_body", None) is None:
            length = int(self.headers.get("Content-Length") or 0)
            self._cached_body = self.rfile.read(length) if length else b""
        return self._cached_body

    def _send(self, status: int, body: Any = b"", headers: Optional[dict[str, str]] = None,
              content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        self._cached_body = None
        self._body()  # always drain the request body so keep-alive connections stay in sync
        url = urlsplit(self.path)
        path, self.query = url.path, parse_qs(url.query)
        self.hub.requests.append((method, path, self.headers.get("Authorization")))
        try:
            self.user = self._authenticate()
            for verb, pattern, handler in _ROUTES:
                match = re.fullmatch(pattern, path)
                if match and (verb == method or (verb == "GET" and method == "HEAD")):
                    return handler(self, **{k: unquote(v) for k, v in match.groupdict().items() if v is not None})
            raise _HubError(404, f"no route for {method} {path}")
        except _HubError as err:
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._send(err.status, {"error": err.message}, headers)

    def _authenticate(self) -> Optional[str]:
        auth = self.headers.get("Authorization")
        if not auth:
            return None
        token = auth.removeprefix("Bearer ").strip()
        if token not in self.hub.tokens:
            raise _HubError(401, "Invalid credentials in Authorization header")
        return self.hub.tokens[token]

    # ---- repo access ----------------------------------------------------------------------------------------------
    def _repo(self, type: str, repo: str, write: bool = False) -> dict[str, Any]:
        record = self.hub.store.repos.get(f"{type}/{repo}")
        owner = repo.split("/")[0]
        if record is None or (record["private"] and self.user != owner):
            raise _HubError(401 if self.user is None else 404, "Repository not found", "RepoNotFound")
        if write and self.user != owner:
            raise _HubError(403 if self.user else 401, f"You don't have the rights to write to {repo}")
        return record

    def _commit(self, record: dict[str, Any], rev: str) -> dict[str, Any]:
        if rev in ("main", "refs/heads/main"):
            return record["commits"][-1]
        for commit in record["commits"]:
            if commit["oid"] == rev or (len(rev) >= 7 and commit["oid"].startswith(rev)):
                return commit
        raise _HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def _info(self, type: str, repo: str, record: dict[str, Any], commit: dict[str, Any]) -> dict[str, Any]:
        return {"_id": record["uid"], "id": repo, "author": repo.split("/")[0], "sha": commit["oid"],
                "lastModified": commit["date"], "createdAt": record["commits"][0]["date"],
                "private": record["private"], "disabled": False, "gated": False, "downloads": 0, "likes": 0,
                "tags": [], "siblings": [{"rfilename": p} for p in sorted(commit["files"])], "cardData": {}}

    # ---- endpoints ------------------------------------------------------------------------------------------------
    def whoami(self) -> None:
        if self.user is None:
            raise _HubError(401, "Invalid credentials in Authorization header")
        self._send(200, {"type": "user", "name": self.user, "orgs": [],
                         "auth": {"type": "access_token", "accessToken": {"role": "write"}}})

    def harnesses(self) -> None:
        self._send(200, {})

    def validate_yaml(self) -> None:
        self._send(200, {"errors": [], "warnings": []})

    def create_repo(self) -> None:
        payload = json.loads(self._body() or b"{}")
        namespace = payload.get("organization") or self.user
        if self.user is None:
            raise _HubError(401, "You must be authenticated to create a repo")
        if namespace != self.user:
            raise _HubError(403, f"You don't have the rights to create a repo under {namespace}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{namespace}/{payload['name']}"
        key = f"{repo_type}s/{repo_id}"
        store = self.hub.store
        with store.lock:
            if key in store.repos:
                raise _HubError(409, "You already created this repo")
            private = payload.get("visibility", "private" if payload.get("private") else "public") == "private"
            files = {".gitattributes": store.file_entry(_GITATTRIBUTES, lfs=False)}
            store.repos[key] = {"uid": hashlib.md5(key.encode()).hexdigest()[:24], "private": private,
                                "commits": [self._new_commit(None, "initial commit", files)]}
            store.save()
        self._send(200, {"url": f"{self.hub.url}/{key}", "name": repo_id, "id": repo_id})

    def repo_info(self, type: str, repo: str, rev: str = "main") -> None:
        record = self._repo(type, repo)
        self._send(200, self._info(type, repo, record, self._commit(record, rev)))

    def list_commits(self, type: str, repo: str, rev: str) -> None:
        record = self._repo(type, repo)
        head = self._commit(record, rev)
        history = record["commits"][: record["commits"].index(head) + 1]
        self._send(200, [{"id": c["oid"], "title": c["message"], "message": c["message"], "date": c["date"],
                          "authors": [{"user": repo.split("/")[0]}]} for c in reversed(history)])

    def preupload(self, type: str, repo: str, rev: str) -> None:
        record = self._repo(type, repo, write=True)
        files = self._commit(record, rev)["files"]
        answer = []
        for item in json.loads(self._body())["files"]:
            lfs = any(fnmatch.fnmatch(item["path"].rsplit("/", 1)[-1], p) for p in _LFS_PATTERNS)
            lfs = lfs or item["size"] > 10 * 1024 * 1024
            existing = files.get(item["path"])
            oid = None if existing is None else (existing["sha256"] if existing["lfs"] else existing["blob"])
            answer.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular",
                           "shouldIgnore": False, "oid": oid})
        self._send(200, {"files": answer, "commitOid": self._commit(record, rev)["oid"]})

    def lfs_batch(self, type: str, repo: str) -> None:
        self._repo(type, repo, write=True)
        payload = json.loads(self._body())
        objects = []
        for obj in payload["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if not self.hub.store.has_object(obj["oid"]):
                entry["actions"] = {"upload": {"href": f"{self.hub.url}/lfs-upload/{obj['oid']}", "header": {}}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                   content_type="application/vnd.git-lfs+json")

    def lfs_upload(self, oid: str) -> None:
        data = self._body()
        if _sha256(data) != oid:
            raise _HubError(400, "sha256 mismatch")
        self.hub.store.put_object(data)
        self._send(200, b"", content_type="text/plain")

    def commit(self, type: str, repo: str, rev: str) -> None:
        record = self._repo(type, repo, write=True)
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        store = self.hub.store
        with store.lock:
            head = self._commit(record, rev)
            if head is not record["commits"][-1]:
                raise _HubError(400, "commits are only supported on main")
            files = dict(head["files"])
            summary = "commit"
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "header":
                    summary = value.get("summary") or summary
                    parent = value.get("parentCommit")
                    if parent and parent != head["oid"]:
                        raise _HubError(412, "A commit has happened since. Please refresh and try again.")
                elif key == "file":
                    files[value["path"]] = store.file_entry(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    if not store.has_object(value["oid"]):
                        raise _HubError(400, f"LFS object {value['oid']} was not uploaded")
                    files[value["path"]] = {"sha256": value["oid"], "size": value["size"], "lfs": True,
                                            "blob": _git_oid(_lfs_pointer(value["oid"], value["size"]))}
                elif key == "deletedFile":
                    if value["path"] not in files:
                        raise _HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                    del files[value["path"]]
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: e for p, e in files.items() if not p.startswith(prefix)}
                else:
                    raise _HubError(400, f"unsupported commit operation {key!r}")
            commit = self._new_commit(head["oid"], summary, files)
            record["commits"].append(commit)
            store.save()
        self._send(200, {"commitOid": commit["oid"], "commitUrl": f"{self.hub.url}/{type}/{repo}/commit/"
                                                                  f"{commit['oid']}", "pullRequestUrl": None})

    def tree(self, type: str, repo: str, rev: str, path: str = "") -> None:
        record = self._repo(type, repo)
        files = self._commit(record, rev)["files"]
        path = path.strip("/")
        recursive = self.query.get("recursive", ["false"])[0].lower() == "true"
        prefix = f"{path}/" if path else ""
        if path and path not in _dirs(files) and path not in files:
            raise _HubError(404, f"{path} does not exist", "EntryNotFound")
        entries = [self._entry(files, d) for d in sorted(_dirs(files)) if d.startswith(prefix)
                   and (recursive or "/" not in d[len(prefix):])]
        entries += [self._entry(files, p) for p in sorted(files) if p.startswith(prefix)
                    and (recursive or "/" not in p[len(prefix):])]
        self._send(200, entries)

    def paths_info(self, type: str, repo: str, rev: str) -> None:
        record = self._repo(type, repo)
        files = self._commit(record, rev)["files"]
        body = self._body().decode()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = json.loads(body).get("paths", [])
        else:
            paths = parse_qs(body).get("paths", [])
        dirs = _dirs(files)
        self._send(200, [self._entry(files, p.strip("/")) for p in paths if p.strip("/") in files or
                         p.strip("/") in dirs])

    def resolve(self, type: str, repo: str, rev: str, path: str) -> None:
        record = self._repo(type, repo)
        commit = self._commit(record, rev)
        entry = commit["files"].get(path)
        if entry is None:
            raise _HubError(404, "Entry not found", "EntryNotFound")
        data = self.hub.store.get_object(entry["sha256"])
        headers = {"X-Repo-Commit": commit["oid"], "ETag": f'"{entry["blob"]}"', "Accept-Ranges": "bytes"}
        if entry["lfs"]:
            headers.update({"X-Linked-Etag": f'"{entry["sha256"]}"', "X-Linked-Size": str(entry["size"])})
        status, ranged = 200, self.headers.get("Range")
        if ranged:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", ranged.strip())
            if not match:
                raise _HubError(416, "bad range")
            start_s, end_s = match.groups()
            start, end = (len(data) - int(end_s), len(data) - 1) if not start_s else (
                int(start_s), min(int(end_s) if end_s else len(data) - 1, len(data) - 1))
            if start >= len(data) and len(data):
                raise _HubError(416, "range not satisfiable")
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start:end + 1], 206
        self._send(status, data, headers, content_type="application/octet-stream")

    # ---- helpers --------------------------------------------------------------------------------------------------
    def _entry(self, files: dict[str, Any], path: str) -> dict[str, Any]:
        if path in files:
            e = files[path]
            entry: dict[str, Any] = {"type": "file", "oid": e["blob"], "size": e["size"], "path": path}
            if e["lfs"]:
                entry["lfs"] = {"oid": e["sha256"], "size": e["size"], "pointerSize": 134}
            return entry
        oid = hashlib.sha1(json.dumps(sorted((p, files[p]["blob"]) for p in files
                                             if p.startswith(path + "/"))).encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": path}

    def _new_commit(self, parent: Optional[str], message: str, files: dict[str, Any]) -> dict[str, Any]:
        snapshot = json.dumps([parent, message, sorted((p, e["blob"]) for p, e in files.items()), _now()])
        return {"oid": hashlib.sha1(snapshot.encode()).hexdigest(), "parent": parent, "message": message,
                "date": _now(), "files": files}


def _dirs(files: dict[str, Any]) -> set[str]:
    return {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}


def _lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


_REV = r"(?P<rev>[^/]+)"
_ROUTES = [
    ("GET", r"/api/whoami-v2", _Handler.whoami),
    ("GET", r"/api/agent-harnesses", _Handler.harnesses),
    ("POST", r"/api/validate-yaml", _Handler.validate_yaml),
    ("POST", r"/api/repos/create", _Handler.create_repo),
    ("GET", rf"/api/{_REPO}", _Handler.repo_info),
    ("GET", rf"/api/{_REPO}/revision/{_REV}", _Handler.repo_info),
    ("GET", rf"/api/{_REPO}/commits/{_REV}", _Handler.list_commits),
    ("POST", rf"/api/{_REPO}/preupload/{_REV}", _Handler.preupload),
    ("POST", rf"/api/{_REPO}/commit/{_REV}", _Handler.commit),
    ("GET", rf"/api/{_REPO}/tree/{_REV}(?:/(?P<path>.*))?", _Handler.tree),
    ("POST", rf"/api/{_REPO}/paths-info/{_REV}", _Handler.paths_info),
    ("POST", rf"/{_REPO}\.git/info/lfs/objects/batch", _Handler.lfs_batch),
    ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", _Handler.lfs_upload),
    ("GET", rf"/{_REPO}/resolve/{_REV}/(?P<path>.+)", _Handler.resolve),
]
