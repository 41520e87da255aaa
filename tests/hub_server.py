"""A small Hugging Face Hub-compatible HTTP server on 127.0.0.1, for tests with the real huggingface_hub client.

It answers what create_repo, upload_folder and hf_hub_download use: repo create, validate-yaml,
preupload ('regular' for every file), the NDJSON commit, repo info / revision, tree, and
HEAD/GET resolve with ETag, X-Repo-Commit and Content-Length; and the front page (HEAD /). Repos live in memory. Writes need
``Authorization: Bearer <token>``; a wrong token gets 401.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional


class FakeHub:
    def __init__(self, port: int = 0, token: str = "hf_test_token_do_not_leak") -> None:
        self.token = token
        self.repos: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.unrouted: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                hub.route(self, "GET")

            def do_HEAD(self) -> None:
                hub.route(self, "HEAD")

            def do_POST(self) -> None:
                hub.route(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "FakeHub":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: Any = None, headers: Optional[dict] = None,
              method: str = "GET") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body if body is not None else {}).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json" if not isinstance(body, bytes) else "application/octet-stream")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(data)

    def _authorized(self, h: BaseHTTPRequestHandler) -> bool:
        return h.headers.get("Authorization") == f"Bearer {self.token}"

    def _body(self, h: BaseHTTPRequestHandler) -> bytes:
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length else b""

    # ------------------------------------------------------------------ routes
    def route(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = h.path.split("?")[0]
        self.requests.append((method, path))
        body = self._body(h) if method == "POST" else b""
        m = re.match(r"^/api/models/([^/]+/[^/]+)/(preupload|commit)/([^/]+)$", path)
        if method in ("GET", "HEAD") and path in ("", "/"):  # the front page: upload_to_hub.py's reachability check
            return self._send(h, 200, {}, method=method)
        if method == "POST" and path == "/api/repos/create":
            return self._create(h, json.loads(body or b"{}"))
        if method == "POST" and path == "/api/validate-yaml":
            return self._send(h, 200, {"errors": [], "warnings": []})
        if method == "POST" and m:
            if not self._authorized(h):
                return self._send(h, 401, {"error": "Invalid credentials in Authorization header"})
            repo = self.repos.get(m.group(1))
            if repo is None:
                return self._send(h, 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            if m.group(2) == "preupload":
                files = json.loads(body)["files"]
                return self._send(h, 200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                      "shouldIgnore": False, "oid": None} for f in files]})
            return self._commit(h, m.group(1), body)
        m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?$", path)
        if method == "GET" and m:
            return self._info(h, m.group(1))
        m = re.match(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?$", path)
        if method == "GET" and m:
            repo = self.repos.get(m.group(1))
            if repo is None:
                return self._send(h, 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return self._send(h, 200, [{"type": "file", "path": p, "size": len(c), "oid": hashlib.sha1(c).hexdigest()}
                                       for p, c in sorted(repo["files"].items())])
        m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if method in ("GET", "HEAD") and m:
            return self._resolve(h, m.group(1), m.group(3), method)
        self.unrouted.append((method, path))
        self._send(h, 404, {"error": f"fake hub: no route for {method} {path}"}, method=method)

    def _create(self, h: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
        if not self._authorized(h):
            return self._send(h, 401, {"error": "Invalid credentials in Authorization header"})
        repo_id = f"{payload.get('organization')}/{payload['name']}"
        url = f"{self.url}/{repo_id}"
        if repo_id in self.repos:
            return self._send(h, 409, {"error": "You already created this model repo", "url": url})
        self.repos[repo_id] = {"files": {}, "sha": "0" * 40, "private": payload.get("visibility") == "private"}
        self._send(h, 200, {"url": url, "name": repo_id, "id": repo_id})

    def _commit(self, h: BaseHTTPRequestHandler, repo_id: str, body: bytes) -> None:
        repo = self.repos[repo_id]
        digest = hashlib.sha1()
        for line in body.decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            if item["key"] == "file":
                value = item["value"]
                content = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else \
                    value["content"].encode()
                repo["files"][value["path"]] = content
                digest.update(value["path"].encode() + content)
        repo["sha"] = digest.hexdigest()
        self._send(h, 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{repo['sha']}", "commitOid": repo["sha"],
                            "pullRequestUrl": None})

    def _info(self, h: BaseHTTPRequestHandler, repo_id: str) -> None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._send(h, 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        self._send(h, 200, {"id": repo_id, "modelId": repo_id, "sha": repo["sha"], "private": repo["private"],
                            "siblings": [{"rfilename": p} for p in sorted(repo["files"])]})

    def _resolve(self, h: BaseHTTPRequestHandler, repo_id: str, filename: str, method: str) -> None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._send(h, 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}, method)
        if repo["private"] and not self._authorized(h):
            return self._send(h, 401, {"error": "Invalid credentials"}, method=method)
        content = repo["files"].get(filename)
        if content is None:
            return self._send(h, 404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound",
                                                                      "X-Repo-Commit": repo["sha"]}, method)
        etag = hashlib.sha256(content).hexdigest()
        self._send(h, 200, content, {"ETag": f'"{etag}"', "X-Repo-Commit": repo["sha"]}, method)
