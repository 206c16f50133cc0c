"""A real `dermcli serve` in a subprocess on a free localhost port, and plain HTTP to it (urllib, raw sockets)."""

import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.jpg"))


def dermcli_command(*args: str) -> list[str]:
    """The CLI as `python -m dermcli`, importing this checkout (cwd and PYTHONPATH are the repository)."""
    return [sys.executable, "-m", "dermcli", *args]


def cli_env(cache: Path, **extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "DERMCLI_CACHE_DIR": str(cache), **extra}


class Server:
    def __init__(self, process: subprocess.Popen, url: str, lines: list[str]):
        self.process, self.url, self.lines = process, url, lines
        self.host, self.port = re.match(r"http://([^:/]+):(\d+)", url).groups()

    def log(self) -> str:
        return "\n".join(self.lines)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 120):
        """(status, headers, body bytes) of one request; an HTTP error status is returned, not raised."""
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def json(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        status, _, data = self.request(method, path, body, headers)
        return status, json.loads(data)

    def predict(self, *files: Path, headers: dict | None = None, query: str = ""):
        body, content_type = multipart([(f.name, f.read_bytes()) for f in files])
        return self.json("POST", "/v1/predict" + query, body, {"Content-Type": content_type, **(headers or {})})

    def raw(self, data: bytes, then_wait: float = 0.0, read_timeout: float = 60) -> bytes:
        """Send `data` as it is on a fresh connection (waiting `then_wait` seconds after), and read the answer."""
        with socket.create_connection((self.host, int(self.port)), timeout=read_timeout) as sock:
            sock.sendall(data)
            time.sleep(then_wait)
            return read_all(sock)

    def streamed(self, head: bytes, chunks: list[bytes]) -> bytes:
        """Send `head`, then `chunks` one by one until the server answers (as a client stops sending once
        refused), and read the answer."""
        with socket.create_connection((self.host, int(self.port)), timeout=60) as sock:
            sock.sendall(head)
            for chunk in chunks:
                sock.sendall(chunk)
                if select.select([sock], [], [], 0.1)[0]:
                    break
            return read_all(sock)

    def healthy(self) -> bool:
        return self.request("GET", "/healthz", timeout=30)[0] == 200


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    return b"".join(chunks)


def multipart(files: list[tuple[str, bytes]], boundary: str | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body of file parts named `file`, and its Content-Type."""
    boundary = boundary or uuid.uuid4().hex
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                    f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n" for name, data in files)
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@contextmanager
def serving(*args: str, cache: Path, env: dict | None = None, launcher: list[str] | None = None):
    """`dermcli serve ARGS --port 0` until the block ends; yields a Server once /healthz answers. `launcher`: the
    command standing for `dermcli` (default: `python -m dermcli`)."""
    command = (launcher or dermcli_command()) + ["serve", "--port", "0", *args]
    process = subprocess.Popen(command, cwd=REPO, env=cli_env(cache, **(env or {})), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, bufsize=1)
    lines, ready = [], threading.Event()

    def collect():
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if "serving " in line:
                ready.set()
        ready.set()

    threading.Thread(target=collect, daemon=True).start()
    try:
        ready.wait(600)
        found = [m for line in lines if (m := re.search(r"http://[^/ ]+:\d+", line))]
        assert found and process.poll() is None, "server did not start:\n" + "\n".join(lines)
        server = Server(process, found[0].group(0), lines)
        assert server.healthy()
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
