"""``dedup serve``: check a listing's image against a job output over HTTP, before it goes live.

One Spark session and one :class:`dedup.query.Index` (its ``features/`` cached in Spark's memory)
serve every request, one at a time, with the job's own decision (``dedup query``'s):

===================================  ==========================================================
``POST /query``                      the body is the image's bytes; ``?limit=N`` (default 50)
``GET /query?url=<http(s) URL>``     the image is downloaded under the run's fetch policy
``GET /health``                      the index and the rule it decides by
===================================  ==========================================================

The answer is the JSON of one ``dedup query`` result (``matches``, best first) with the rule.
Bad input gets a JSON ``{"error": ...}`` and a status that says why: 400 (not an image the job
reads, no body, a bad parameter), 403 (a URL the fetch policy refuses), 411 (no Content-Length),
413 (a body or download over ``fetch.max_bytes``), 502 (a download that failed), 404 and 405.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dedup.query import Index, QueryError

STATUS_OF = {"refused": 403, "download": 502, "too_large": 413, "not_an_image": 400, "missing": 400}


class QueryServer:
    """An HTTP endpoint in front of an :class:`Index`, on ``host``:``port`` (0: any free port)."""

    def __init__(self, index: Index, host: str = "127.0.0.1", port: int = 0) -> None:
        self.index = index
        self.max_bytes = index.settings.fetch.max_bytes
        self._lock = threading.Lock()  # one Spark query at a time
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> QueryServer:
        """Serve from a background thread (tests; ``dedup serve`` calls :meth:`serve_forever`)."""
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    __enter__ = start

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def lookup(self, source: str, data: bytes | None, limit: int) -> dict[str, Any]:
        """The answer for one image (bytes, or fetched from ``source`` when ``data`` is None)."""
        with self._lock:
            image = self.index.check(source, data) if data is not None else self.index.read(source)
            answer = self.index.answer([image], limit)
        return {"rule": answer["rule"], **answer["results"][0]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                print(f"dedup serve: {self.address_string()} {format % args}", file=sys.stderr)

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = (json.dumps(body, indent=2) + "\n").encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _limit(self, query: dict[str, list[str]]) -> int:
                raw = query.get("limit", ["50"])[0]
                if not raw.isdigit() or int(raw) < 1:
                    raise QueryError(f"limit must be a positive whole number, not {raw!r}", "bad_request")
                return int(raw)

            def _answer(self, source: str, data: bytes | None, query: dict[str, list[str]]) -> None:
                try:
                    self._reply(200, server.lookup(source, data, self._limit(query)))
                except QueryError as exc:
                    self._reply(STATUS_OF.get(exc.kind, 400), {"error": str(exc), "kind": exc.kind})

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                if parts.path == "/health":
                    self._reply(200, {"index": server.index.index_dir, "rule": server.index.rule})
                elif parts.path == "/query":
                    if "url" not in query:
                        self._reply(400, {"error": "GET /query needs ?url=<http(s) URL>; or POST the image"})
                        return
                    self._answer(query["url"][0], None, query)
                else:
                    self._reply(404, {"error": f"no such path: {parts.path} (POST /query, GET /query?url=, /health)"})

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/query":
                    self._reply(404, {"error": f"no such path: {parts.path} (POST /query)"})
                    return
                length = self.headers.get("Content-Length")
                if length is None or not length.isdigit():
                    self.close_connection = True
                    self._reply(411, {"error": "POST /query needs a Content-Length"})
                    return
                if int(length) > server.max_bytes:
                    self.close_connection = True
                    self._drain(int(length))
                    message = f"the image is {length} bytes, over fetch.max_bytes ({server.max_bytes})"
                    self._reply(413, {"error": message, "kind": "too_large"})
                    return
                data = self.rfile.read(int(length))
                if not data:
                    self._reply(400, {"error": "POST /query needs the image's bytes as its body"})
                    return
                self._answer("posted image", data, parse_qs(parts.query))

            def _drain(self, length: int, most: int = 64 << 20) -> None:
                """Read and drop a refused body (up to ``most`` bytes), so the client gets the answer."""
                left = min(length, most)
                while left > 0:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    left -= len(chunk)

            def do_PUT(self) -> None:
                self._reply(405, {"error": "use POST /query or GET /query?url="})

            do_DELETE = do_PATCH = do_PUT  # noqa: N815 (http.server's naming)

        return Handler
