"""Real git remotes for tests: bare repositories under a directory, served over loopback by
``git daemon`` (``git://127.0.0.1:<port>/<name>.git``) or by git's smart-HTTP backend behind a
token check (``http://127.0.0.1:<port>/<name>.git``). No stand-in: both are git's own servers
(the HTTP one runs ``git http-backend`` as CGI under Python's ``http.server``)."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from tests.conftest import free_port

IDENTITY = ("-c", "user.name=Test", "-c", "user.email=test@example.com")


def git(cwd: Path, *args: str, input: bytes | None = None) -> str:
    """Run git in ``cwd`` with a fixed identity; its stdout (raises on failure)."""
    return subprocess.run(
        ["git", *IDENTITY, *args], cwd=cwd, check=True, capture_output=True, input=input
    ).stdout.decode()


def make_bare(
    root: Path, name: str, files: Mapping[str, str | bytes], branch: str = "main"
) -> Path:
    """``root/<name>.git``: a bare repository whose ``branch`` (its default) holds ``files``
    in one commit. Returns the path of a work tree cloned from it (to push more from)."""
    work = root / f"{name}-work"
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", branch)
    for path, content in files.items():
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "initial")
    git(root, "clone", "-q", "--bare", str(work), str(root / f"{name}.git"))
    git(work, "remote", "add", "origin", str(root / f"{name}.git"))
    git(work, "fetch", "-q", "origin")
    git(work, "branch", "-q", "-u", f"origin/{branch}")
    return work


@contextlib.contextmanager
def git_daemon(root: Path) -> Iterator[str]:
    """Serve every bare repository under ``root`` read/write; yields ``git://127.0.0.1:<port>``."""
    port = free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack",
         f"--base-path={root}", f"--port={port}", "--listen=127.0.0.1", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"git://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _answers(port):
            assert time.monotonic() < deadline, "git daemon did not start"
            time.sleep(0.02)
        yield base
    finally:
        daemon.terminate()
        daemon.wait()


def _answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class GitHttp:
    """A smart-HTTP git server (git's own ``http-backend`` as CGI) that wants a token.

    Every request must carry ``Authorization: Basic base64("x-access-token:<token>")`` (the
    form GitHub accepts), else it gets 401. ``requests`` records each request's method, path
    and headers, to check what a client sent (and that no token went in a URL)."""

    base: str
    token: str
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    @property
    def expected(self) -> str:
        return "Basic " + base64.b64encode(f"x-access-token:{self.token}".encode()).decode()


@contextlib.contextmanager
def git_http(
    root: Path, token: str, hold: tuple[int, threading.Event] | None = None
) -> Iterator[GitHttp]:
    """Serve every bare repository under ``root`` read/write over smart HTTP on loopback;
    yields the server (``base`` is ``http://127.0.0.1:<port>``).

    ``hold=(n, event)``: a fetch's pack is sent up to byte ``n``, and the rest only once
    ``event`` is set: "a clone still downloading", for exactly as long as a test needs."""
    state = GitHttp("", token)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _serve(self) -> None:
            with lock:
                state.requests.append((self.command, self.path, dict(self.headers.items())))
            body = self._body()
            if self.headers.get("Authorization") != state.expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            env = {
                "PATH": os.environ["PATH"],
                "GIT_PROJECT_ROOT": str(root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull,
                "PATH_INFO": unquote(path),
                "QUERY_STRING": query,
                "REQUEST_METHOD": self.command,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": "x-access-token",  # enables receive-pack (pushes)
                "REMOTE_ADDR": "127.0.0.1",
                "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            }
            out = subprocess.run(
                ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
            ).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            status, headers = 200, []
            for line in head.decode().split("\r\n"):
                name, _, value = line.partition(": ")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if hold is not None and path.endswith("/git-upload-pack") and len(payload) > hold[0]:
                self.wfile.write(payload[: hold[0]])
                self.wfile.flush()
                hold[1].wait(60)
                payload = payload[hold[0] :]
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(payload)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = bytearray()
                while size := int(self.rfile.readline().strip().split(b";")[0], 16):
                    data += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
                return bytes(data)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
