"""A fake Hugging Face hub on 127.0.0.1, for `attn pull`'s tests.

It answers the three requests huggingface_hub 2.x makes to download a file list (read from
huggingface_hub/hf_api.py `model_info` and file_download.py `hf_hub_download`):

    GET  /api/models/{repo}/revision/{rev}     repo info: {"id", "sha", "siblings", "gated"}
    HEAD /{repo}/resolve/{rev}/{file}          X-Repo-Commit, ETag (X-Linked-Etag and
                                               X-Linked-Size for LFS files), Content-Length
    GET  /{repo}/resolve/{rev}/{file}          the bytes; `Range: bytes=N-` gives 206

and errors the way the hub sends them: 404 with X-Error-Code RepoNotFound, RevisionNotFound
or EntryNotFound; 401 RepoNotFound for a private repo without its token; 401 / 403 GatedRepo
for a gated one. Every request is logged as (method, path, headers). Faults on demand:
`drop[file] = n` sends half of the file n times and then closes the connection;
`stall[file]` sends half and waits on the event (an interrupted download).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS = (".safetensors", ".bin", ".h5", ".msgpack", ".onnx")


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]]  # commit sha -> {path: bytes}
    refs: dict[str, str]  # branch or tag -> commit sha
    private: bool = False
    gated: bool = False
    token: str = "hf_good"  # the token that may read it


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case

    @property
    def file(self) -> str | None:
        m = re.match(r"^/.+?/resolve/[^/]+/(.+)$", self.path)
        return unquote(m.group(1)) if m else None


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    log: list[Request] = field(default_factory=list)
    drop: dict[str, int] = field(default_factory=dict)
    stall: dict[str, threading.Event] = field(default_factory=dict)
    stalled: threading.Event = field(default_factory=threading.Event)
    broken: bool = False  # answer everything with a web page, as a wrong HF_ENDPOINT would

    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                hub._answer(self, "GET")

            def do_HEAD(self):
                hub._answer(self, "HEAD")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        for event in self.stall.values():
            event.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def files_fetched(self, method: str = "GET") -> list[str]:
        return [r.file for r in self.log if r.method == method and r.file]

    # --- answers ---------------------------------------------------------------------------

    def _answer(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = urlsplit(h.path).path
        self.log.append(Request(method, path, {k.lower(): v for k, v in h.headers.items()}))
        if self.broken:
            body = b"<html>a web page</html>"
            h.send_response(200)
            h.send_header("Content-Type", "text/html")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body if method == "GET" else b"")
            return
        api = re.match(r"^/api/models/(.+)/revision/([^/]+)$", path)
        resolve = re.match(r"^/(.+?)/resolve/([^/]+)/(.+)$", path)
        if api and method == "GET":
            self._info(h, unquote(api.group(1)), unquote(api.group(2)))
        elif resolve:
            self._file(h, method, *(unquote(g) for g in resolve.groups()))
        else:
            self._error(h, 404, None, "Not found")

    def _repo(self, h, repo_id: str, rev: str, for_file: bool):
        """(repo, commit) or None after answering the error."""
        repo = self.repos.get(repo_id)
        auth = h.headers.get("Authorization", "")
        if repo is None:
            self._error(h, 404, "RepoNotFound", "Repository not found")
            return None
        if repo.private and auth != f"Bearer {repo.token}":
            self._error(h, 401, "RepoNotFound", "Repository not found")
            return None
        if repo.gated and for_file and auth != f"Bearer {repo.token}":
            status = 403 if auth else 401
            self._error(h, status, "GatedRepo", "Access to this model is restricted")
            return None
        commit = rev if rev in repo.commits else repo.refs.get(rev)
        if commit is None:
            self._error(h, 404, "RevisionNotFound", "Invalid rev id")
            return None
        return repo, commit

    def _info(self, h, repo_id: str, rev: str) -> None:
        found = self._repo(h, repo_id, rev, for_file=False)
        if found is None:
            return
        repo, commit = found
        body = json.dumps({
            "id": repo_id, "sha": commit, "private": repo.private,
            "gated": "manual" if repo.gated else False,
            "siblings": [{"rfilename": name} for name in sorted(repo.commits[commit])],
        }).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _file(self, h, method: str, repo_id: str, rev: str, name: str) -> None:
        found = self._repo(h, repo_id, rev, for_file=True)
        if found is None:
            return
        repo, commit = found
        data = repo.commits[commit].get(name)
        if data is None:
            self._error(h, 404, "EntryNotFound", "Entry not found", commit)
            return
        if name.endswith(LFS):  # LFS files: the ETag is the content's sha256
            etag = hashlib.sha256(data).hexdigest()
        else:  # git blobs: the ETag is the git blob sha1
            etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        start = 0
        ranged = re.match(r"^bytes=(\d+)-$", h.headers.get("Range", ""))
        if method == "GET" and ranged:
            start = int(ranged.group(1))
        h.send_response(206 if start else 200)
        h.send_header("X-Repo-Commit", commit)
        h.send_header("ETag", f'"{etag}"')
        if name.endswith(LFS):
            h.send_header("X-Linked-Etag", f'"{etag}"')
            h.send_header("X-Linked-Size", str(len(data)))
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(data) - start))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        if method == "HEAD":
            return
        body = data[start:]
        if self.drop.get(name, 0) > 0:  # half the body, then the connection goes
            self.drop[name] -= 1
            self._half(h, body)
            return
        if name in self.stall:  # half the body, then nothing until released
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            self.stalled.set()
            self.stall[name].wait(timeout=60)
            h.close_connection = True
            return
        h.wfile.write(body)

    @staticmethod
    def _half(h, body: bytes) -> None:
        h.wfile.write(body[: len(body) // 2])
        h.wfile.flush()
        h.close_connection = True
        try:
            import socket

            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    @staticmethod
    def _error(h, status: int, code: str | None, message: str, commit: str | None = None):
        body = json.dumps({"error": message}).encode()
        h.send_response(status)
        if code:
            h.send_header("X-Error-Code", code)
        h.send_header("X-Error-Message", message)
        if commit:
            h.send_header("X-Repo-Commit", commit)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)
