"""A loopback HTTP server for images, with faults on purpose: used by the demo, tests and benches.

Images are served at ``/img/<name>``. Paths under ``/fault/`` misbehave:

=============================  ==============================================================
``/fault/status/<code>/<n>``   always answers ``<code>``
``/fault/flaky/<k>/<name>``    503 with ``Retry-After: 0`` for the first ``k`` requests, then the image
``/fault/throttle/<k>/<name>`` 429 with ``Retry-After: 0`` for the first ``k`` requests, then the image
``/fault/html/<n>``            an HTML page sent as ``image/jpeg``
``/fault/empty/<n>``           200 with no body
``/fault/truncated/<name>``    the first half of the image
``/fault/reset/<n>``           resets the connection (TCP RST) without answering
``/fault/cut/<name>``          headers and half the image, then a reset
``/fault/slow/<name>``         drips the image one byte every 50 ms
``/fault/delay/<ms>/<name>``   the image after ``<ms>`` milliseconds
``/fault/hang/<n>``            accepts the request and never answers (until the server stops)
``/fault/redirect/<name>``     302 to the image
``/fault/loop/<n>``            302 to itself, forever
``/fault/metadata/<n>``        302 to a link-local address (a cloud metadata endpoint)
``/fault/huge/<n>``            claims a 10 GB Content-Length
``/fault/bomb/<n>``            a PNG of a few hundred bytes declaring 100000 x 100000 pixels
``/stats/<prefix>``            ``hits`` and ``served`` of the paths holding ``/<prefix>/``, as JSON
                               (for a client in another process)
=============================  ==============================================================

``hits`` counts the requests per path as they arrive, so tests can tell what was downloaded again;
``served`` counts the answers sent whole (a download the client may have finished).

>>> server = ImageServer({"a.png": b"\\x89PNG\\r\\n\\x1a\\n..."}).start()
>>> import requests
>>> requests.get(server.url("img/a.png"), timeout=5).content[:4]
b'\\x89PNG'
>>> requests.get(server.url("fault/status/404/x"), timeout=5).status_code
404
>>> server.stop()
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from dedup.synth import bomb_png

HANG_LIMIT_S = 120.0  # a hung request ends at the latest then, or when the server stops


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up early (time-outs, resets) are part of the tests, not errors to print."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class ImageServer:
    """Serves ``images`` (name -> bytes, or a folder) on 127.0.0.1 from a background thread."""

    def __init__(self, images: dict[str, bytes] | str | Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.folder = Path(images) if isinstance(images, (str, Path)) else None
        self.images = images if isinstance(images, dict) else {}
        self.hits: Counter[str] = Counter()
        self.served: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _QuietServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def start(self) -> ImageServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # ends hung and dripping requests
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ImageServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def image(self, name: str) -> bytes | None:
        if self.folder is not None:
            path = (self.folder / name).resolve()
            if self.folder.resolve() in path.parents and path.is_file():
                return path.read_bytes()
            return None
        return self.images.get(name)

    def count(self, path: str) -> int:
        """Requests seen so far for ``path`` (and count this one)."""
        with self._lock:
            self.hits[path] += 1
            return self.hits[path]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                parts = self.path.lstrip("/").split("/")
                if parts[0] == "stats" and len(parts) == 2:
                    part = f"/{parts[1]}/"
                    with server._lock:
                        stats = {name: {p: n for p, n in counts.items() if part in p}
                                 for name, counts in (("hits", server.hits), ("served", server.served))}  # fmt: skip
                    return self._send(200, json.dumps(stats).encode(), "application/json")
                seen = server.count(self.path)
                if parts[0] == "img" and len(parts) >= 2:
                    return self._image("/".join(parts[1:]))
                if parts[0] != "fault" or len(parts) < 3:
                    return self._send(404, b"not found", "text/plain")
                kind, rest = parts[1], parts[2:]
                if kind == "status":
                    return self._send(int(rest[0]), b"fault", "text/plain")
                if kind in ("flaky", "throttle"):
                    if seen <= int(rest[0]):
                        code = 503 if kind == "flaky" else 429
                        return self._send(code, b"try later", "text/plain", {"Retry-After": "0"})
                    return self._image("/".join(rest[1:]))
                if kind == "html":
                    return self._send(200, b"<html><body>Not found</body></html>", "image/jpeg")
                if kind == "empty":
                    return self._send(200, b"", "image/jpeg")
                if kind == "truncated":
                    data = server.image("/".join(rest)) or b""
                    return self._send(200, data[: len(data) // 2], "image/jpeg")
                if kind == "reset":
                    return self._reset()
                if kind == "cut":
                    return self._cut(server.image("/".join(rest)) or b"x" * 1000)
                if kind == "slow":
                    return self._slow(server.image("/".join(rest)) or b"x" * 1000)
                if kind == "delay":
                    server._stopping.wait(int(rest[0]) / 1000)
                    return self._image("/".join(rest[1:]))
                if kind == "hang":
                    server._stopping.wait(HANG_LIMIT_S)
                    self.close_connection = True
                    return None
                if kind == "bomb":
                    return self._send(200, bomb_png(), "image/png")
                if kind == "redirect":
                    return self._send(302, b"", "text/plain", {"Location": "/img/" + "/".join(rest)})
                if kind == "metadata":
                    return self._send(302, b"", "text/plain", {"Location": "http://169.254.169.254/latest/meta-data"})
                if kind == "loop":
                    return self._send(302, b"", "text/plain", {"Location": self.path})
                if kind == "huge":
                    return self._send(200, b"", "image/jpeg", {"Content-Length": str(10**10)})
                return self._send(404, b"unknown fault", "text/plain")

            def _image(self, name: str) -> None:
                data = server.image(name)
                if data is None:
                    return self._send(404, b"not found", "text/plain")
                return self._send(200, data, "image/jpeg")

            def _reset(self) -> None:
                """Close with a TCP RST (linger on, zero time-out) rather than an orderly FIN."""
                self.close_connection = True
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()

            def _headers(self, size: int) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(size))
                self.end_headers()

            def _cut(self, data: bytes) -> None:
                self._headers(len(data))
                with contextlib.suppress(OSError):
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    time.sleep(0.05)  # let the half arrive before the reset
                self._reset()

            def _slow(self, data: bytes) -> None:
                self._headers(len(data))
                try:
                    for i in range(len(data)):
                        if server._stopping.is_set():
                            break
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                        time.sleep(0.05)
                except OSError:
                    pass

            def _send(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                headers = headers or {}
                if "Content-Length" not in headers:
                    headers["Content-Length"] = str(len(body))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    self.wfile.write(body)
                    self.wfile.flush()
                except OSError:  # the client hung up first
                    return
                with server._lock:
                    server.served[self.path] += 1

        return Handler
