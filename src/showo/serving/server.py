"""`showo serve`: one pipeline behind a small HTTP JSON API.

The standard library's threading server is enough here (and adds no dependency): the model runs one request at a
time (a lock; the pipeline's KV caches and MaskGIT state are not shared between calls), while other connections
are read, validated and answered concurrently. It has no authentication and no TLS: it listens on 127.0.0.1 by
default; put a reverse proxy in front of it to open it to others.

    GET  /health        {"status": "ok", "model": ..., "device": ..., "dtype": ...}
    GET  /v1/tasks      every task's fields and defaults
    POST /v1/<task>     a JSON object of the task's fields -> its output (serving/tasks.py); errors are
                        {"error": "<one line>"} with status 400 (bad request), 404, 405, 411, 413 or 500
"""
from __future__ import annotations

import json
import sys
import threading
import time
import traceback
import warnings
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from ..errors import ShowoError, ShowoWarning
from ..pipelines.showo_pipeline import ShowoPipeline
from .tasks import TASKS, run_task

MAX_BODY_BYTES = 64 * 1024 * 1024  # a request's JSON: room for a few base64 images of the largest accepted size


class BadRequest(Exception):
    """A request the server cannot read (not a task's field problem: those are InputErrors)."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


class ShowoServer(ThreadingHTTPServer):
    """Serves `pipe` at `address` ((host, port); port 0 picks a free one: see `url`) from `serve_forever()`; it
    listens from the start, so `pipe` may be set later (None until then). `log` gets one line per request and the
    traceback of any failure that is not the request's fault."""

    daemon_threads = True  # a client still connected does not keep the process alive at shutdown

    def __init__(self, address: tuple[str, int], pipe: ShowoPipeline | None,
                 log: Callable[[str], None] = print):
        self.pipe, self.log, self.lock = pipe, log, threading.Lock()
        super().__init__(address, Handler)

    def handle_error(self, request, client_address) -> None:
        """A connection that failed outside a task (closed early, timed out): one line, not a traceback."""
        self.log(f"{client_address[0]} connection failed: {sys.exc_info()[1]!r}")

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class Handler(BaseHTTPRequestHandler):
    server: ShowoServer
    timeout = 60  # seconds a client may stall while sending its request before its connection is dropped

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        pipe = self.server.pipe
        if self.path == "/health":
            self._reply(HTTPStatus.OK, {"status": "ok", "model": pipe.model_id, "device": str(pipe.device),
                                        "dtype": str(pipe.model.dtype).removeprefix("torch.")})
        elif self.path == "/v1/tasks":
            self._reply(HTTPStatus.OK, {name: task.describe() for name, task in TASKS.items()})
        elif self._task() in TASKS:
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.path} takes POST (a JSON object of its fields)")
        else:
            self._not_found()

    def do_POST(self) -> None:  # noqa: N802
        name = self._task()
        if name not in TASKS:
            if self.path in ("/health", "/v1/tasks"):
                return self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.path} takes GET")
            return self._not_found()
        try:
            request = self._read_json()
        except BadRequest as e:
            return self._error(e.status, str(e))
        started = time.perf_counter()
        try:
            with self.server.lock, warnings.catch_warnings(record=True) as caught:
                # (process-wide, which is safe only because one request at a time runs the pipeline)
                warnings.simplefilter("always")
                response = run_task(self.server.pipe, name, request)
            for w in caught:
                if not issubclass(w.category, ShowoWarning):
                    self.server.log(f"warning: {w.message}")
            response["warnings"] = [str(w.message) for w in caught if issubclass(w.category, ShowoWarning)]
            response["seconds"] = round(time.perf_counter() - started, 3)
            body = json.dumps(response, ensure_ascii=False).encode("utf-8")
        except ShowoError as e:
            return self._error(HTTPStatus.BAD_REQUEST, str(e) or type(e).__name__)
        except Exception as e:  # a bug or the machine (out of memory): the client gets one line, the log the rest
            self.server.log(traceback.format_exc().rstrip())
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{name} failed: {type(e).__name__}: {e}")
        self._send(HTTPStatus.OK, body)

    def _task(self) -> str | None:
        return self.path.removeprefix("/v1/") if self.path.startswith("/v1/") else None

    def _read_json(self) -> object:
        """The request's JSON (the task checks its fields)."""
        length = self.headers.get("Content-Length")
        if length is None:
            raise BadRequest("send the JSON with a Content-Length header", HTTPStatus.LENGTH_REQUIRED)
        if not length.isdigit():
            raise BadRequest(f"Content-Length must be a number of bytes, got {length!r}")
        if int(length) > MAX_BODY_BYTES:
            raise BadRequest(f"the request is {int(length)} bytes; at most {MAX_BODY_BYTES}",
                             HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        body = self.rfile.read(int(length))
        if len(body) < int(length):
            raise BadRequest(f"the request ended after {len(body)} of its {length} bytes")
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise BadRequest(f"the request is not valid JSON: {e}") from None

    def _not_found(self) -> None:
        self._error(HTTPStatus.NOT_FOUND, f"no endpoint {self.path}; POST /v1/<task> with a task of "
                                          f"{', '.join(TASKS)}, or GET /health or /v1/tasks")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._reply(status, {"error": " ".join(message.split())})

    def _reply(self, status: HTTPStatus, payload: dict) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"))

    def _send(self, status: HTTPStatus, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the standard library's signature)
        self.server.log(f"{self.address_string()} {format % args}")
