"""`showo serve`: one pipeline behind a small HTTP JSON API.

The standard library's threading server is enough here (and adds no dependency): connections are read, validated
and answered on threads of their own, while one thread runs the model, a call at a time (the pipeline's KV caches
and MaskGIT state are not shared between calls), in the order requests came; greedy text requests that wait
together run as one batch (serving/batching.py); a call stops early when its clients leave or the server
closes. It has no authentication and no TLS: it listens on 127.0.0.1 by default; put a reverse proxy in front of
it to open it to others.

    GET  /health        {"status": "ok", "model": ..., "device": ..., "dtype": ...}
    GET  /v1/tasks      every task's fields and defaults
    POST /v1/<task>     a JSON object of the task's fields -> its output (serving/tasks.py); errors are
                        {"error": "<one line>"} with status 400 (bad request), 404, 405, 408, 411, 413, 500 or
                        503 (the model still loading, or too many requests waiting for it)
"""
from __future__ import annotations

import json
import math
import selectors
import socket
import sys
import threading
import time
import traceback
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

from ..errors import InputError, ShowoError, ShowoWarning
from ..fields import is_number
from ..limits import check_positive
from ..pipelines.showo_pipeline import ShowoPipeline
from .batching import Job, Stopped, batch_key, run_batch
from .tasks import TASKS, check_request, rows

MAX_BODY_BYTES = 64 * 1024 * 1024  # a request's JSON: room for a few base64 images of the largest accepted size


class BadRequest(Exception):
    """A request the server refuses with a status of its own: unreadable, or arriving as it stops (a task's field
    problem is an InputError instead)."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST, unread: int = 0):
        super().__init__(message)
        self.status, self.unread = status, unread  # unread: the body's bytes still to come


def _stopping() -> BadRequest:
    """What a request gets when the server stops before its turn."""
    return BadRequest("the server is stopping", HTTPStatus.SERVICE_UNAVAILABLE)


class ClientLeft(Exception):
    """The connection failed while the request was being read."""


class ShowoServer(ThreadingHTTPServer):
    """Serves `pipe` at `address` ((host, port); port 0 picks a free one: see `url`) from `serve_forever()`; it
    listens from the start, so `pipe` may be set later (503 until then). `log` gets one line per request and the
    traceback of any failure that is not the request's fault. Limits: `max_rows` images or answers a request,
    `max_waiting` requests queued for the model (503 beyond), `max_connections` open at once (closed beyond).
    `batching`: greedy text requests waiting together run as one call (serving/batching.py) of at most `max_rows`
    rows, for which the first waits up to `batch_wait` seconds for company."""

    daemon_threads = True  # a client still connected does not keep the process alive at shutdown

    def __init__(self, address: tuple[str, int], pipe: ShowoPipeline | None, log: Callable[[str], None] = print,
                 max_rows: int = 16, max_waiting: int = 8, max_connections: int = 64, batching: bool = True,
                 batch_wait: float = 0.02):
        for name, value in (("max_rows", max_rows), ("max_waiting", max_waiting), ("max_connections", max_connections)):
            check_positive(name, value)
        if not (is_number(batch_wait) and 0 <= batch_wait < math.inf):
            raise InputError(f"batch_wait must be a number of seconds >= 0, got {batch_wait!r}")
        # lock: held by the model's thread while it picks and runs a batch (holding it elsewhere pauses the model)
        self.pipe, self.log, self.lock = pipe, log, threading.Lock()
        self.max_rows, self.max_waiting, self.batching, self.batch_wait = max_rows, max_waiting, batching, batch_wait
        self._queue: deque[Job] = deque()
        self._collecting: list[Job] = []  # the batch being picked (in its batch_wait), not running yet
        self._ready, self._closed, self._running = threading.Condition(), False, False
        self._answering = 0  # requests submitted whose handler has not yet replied
        self.request_queue_size = max(64, max_connections)  # (the listen backlog: 5 made bursts wait ~1 s)
        self._connections = threading.BoundedSemaphore(max_connections)
        self._worker = threading.Thread(target=self._work, name="showo-model", daemon=True)
        super().__init__(address, Handler)  # (a port in use raises here, and server_close runs first)
        self._worker.start()

    def process_request(self, request, client_address) -> None:
        if not self._connections.acquire(blocking=False):  # each connection is a thread: refuse, do not pile up
            self.log(f"{client_address[0]} refused: too many connections")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()

    def handle_error(self, request, client_address) -> None:
        """A connection that failed outside a task (closed early, timed out): one line, not a traceback."""
        self.log(f"{client_address[0]} connection failed: {sys.exc_info()[1]!r}")

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def waiting(self) -> int:
        """Requests waiting for the model (not counting those it runs)."""
        return len(self._queue) + len(self._collecting)

    def submit(self, job: Job) -> bool:
        """Queue `job` for the model's thread; False, at once, when `max_waiting` requests wait already."""
        with self._ready:
            if self._closed:
                raise _stopping()
            if self.waiting >= self.max_waiting:
                return False
            self._queue.append(job)
            self._answering += 1
            self._ready.notify_all()
        return True

    def answered(self) -> None:
        """A handler whose job was submitted has replied (or given up on its client)."""
        with self._ready:
            self._answering -= 1
            self._ready.notify_all()

    def settle(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for every submitted request to be answered (after `close_model`: the
        503s of those that waited); whether they all were."""
        with self._ready:
            return self._ready.wait_for(lambda: self._answering == 0, timeout)

    def server_close(self) -> None:
        super().server_close()
        self.close_model(timeout=None)  # (exiting the interpreter under a running call would abort the process)

    def close_model(self, timeout: float | None = 0.0) -> bool:
        """Let the model's thread take no more work: the requests waiting get 503, and a running call stops at its
        next image step or text token (its requests get 503 too). Whether the thread has ended, after waiting up
        to `timeout` seconds for a running call to stop (None: as long as it takes)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
            running = self._running
        if self._worker is threading.current_thread():
            return not running
        if self._worker.is_alive():  # (not started when the port was in use)
            self._worker.join(timeout if running else None)
        return not self._worker.is_alive()

    def _work(self) -> None:
        """The model's thread: the waiting requests in their order, each with those that can share its batch."""
        try:
            while self._run_next():
                pass
        except Exception:  # noqa: BLE001 - a bug of the server's own: logged, and no request is left waiting
            self.log(f"the model's thread failed:\n{traceback.format_exc().rstrip()}")
        finally:
            with self._ready:
                self._closed = True
                for job in [*self._collecting, *self._queue]:
                    job.finish(error=_stopping())
                self._collecting, self._queue = [], deque()

    def _run_next(self) -> bool:
        """Pick the next batch and run it; False once the server is closed."""
        with self._ready:
            while not (self._queue or self._closed):
                self._ready.wait()
            if self._closed:
                return False
        with self.lock:
            with self._ready:
                batch = self._take() if not self._closed else []
                if self._closed:  # (closed while it waited for company: its requests are refused with the rest)
                    return False
                self._collecting, self._running = [], True
            if not batch:  # (every client waiting had left)
                with self._ready:
                    self._running = False
                return True
            try:
                run_batch(self.pipe, batch, closing=lambda: self._closed)
            except BaseException as e:  # noqa: BLE001 - a bug in the batching: its requests get a 500, not silence
                for job in batch:
                    if not job.done.is_set():
                        job.finish(error=e)
            finally:
                with self._ready:
                    self._running = False
        return True

    def _take(self) -> list[Job]:
        """The first waiting job whose client is still there and, when batching, the jobs that can run in one call
        with it (up to `max_rows` rows): those waiting, and those arriving within `batch_wait` seconds. Jobs whose
        client left are dropped (finished without a response). Called holding `_ready`."""
        batch = self._collecting = []
        while self._queue and not batch:
            job = self._queue.popleft()
            job.finish() if job.gone() else batch.append(job)
        key = batch_key(batch[0]) if batch and self.batching else None
        if key is None:
            return batch
        rows, end = batch[0].rows, time.monotonic() + self.batch_wait
        while True:
            for job in list(self._queue):
                if batch_key(job) == key and rows + job.rows <= self.max_rows:
                    self._queue.remove(job)
                    if job.gone():
                        job.finish()
                    else:
                        batch.append(job)
                        rows += job.rows
            left = end - time.monotonic()
            if left <= 0 or rows >= self.max_rows or self.waiting >= self.max_waiting or self._closed:
                break  # (full: no request can join it now)
            self._ready.wait(left)  # (releases `_ready`: requests can queue meanwhile)
        for job in [j for j in batch if j.gone()]:  # (left during the window)
            batch.remove(job)
            job.finish()
        return batch


class Handler(BaseHTTPRequestHandler):
    server: ShowoServer
    timeout = 60  # seconds a client may stall while sending its request before its connection is dropped
    deadline = 300  # seconds a whole request body may take (a byte a minute would dodge `timeout`)

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        pipe, path = self.server.pipe, self._path()
        if pipe is None:
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, "the model is still loading")
        elif path == "/health":
            self._reply(HTTPStatus.OK, {"status": "ok", "model": pipe.model_id, "device": str(pipe.device),
                                        "dtype": str(pipe.model.dtype).removeprefix("torch.")})
        elif path == "/v1/tasks":
            self._reply(HTTPStatus.OK, {name: task.describe() for name, task in TASKS.items()})
        elif self._task() in TASKS:
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} takes POST (a JSON object of its fields)")
        else:
            self._not_found()

    def do_POST(self) -> None:  # noqa: N802
        self._job: Job | None = None
        try:
            self._answer()
        finally:
            if self._job is not None:
                self.server.answered()

    def _answer(self) -> None:
        name = self._task()
        if name not in TASKS:
            if self._path() in ("/health", "/v1/tasks"):
                return self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{self._path()} takes GET")
            return self._not_found()
        if self.server.pipe is None:
            return self._error(HTTPStatus.SERVICE_UNAVAILABLE, "the model is still loading")
        started = time.perf_counter()
        try:
            kwargs = check_request(name, self._read_json(), self.server.max_rows)
            job = Job(name, kwargs, rows(name, kwargs), gone=self._client_gone)
            if not self.server.submit(job):
                return self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"busy: {self.server.max_waiting} requests "
                                                                   "are waiting for the model; try again later")
            self._job = job
            job.done.wait()
            if isinstance(job.error, Stopped):  # its call was stopped: it left, or the server is closing
                if job.gone():
                    return self.server.log(f"{self.address_string()} {name}: the client left while its request "
                                           "ran; the call was stopped")
                raise _stopping()
            if job.error is not None:
                raise job.error
            if job.response is None:  # it hung up while it waited: its work was not done
                return self.server.log(f"{self.address_string()} {name}: the client left before its turn")
            for w in job.warnings:
                if not issubclass(w.category, ShowoWarning):
                    self.server.log(f"warning: {w.message}")
            response = {**job.response, "warnings": [str(w.message) for w in job.warnings
                                                      if issubclass(w.category, ShowoWarning)],
                        "batched_with": job.batched_with, "seconds": round(time.perf_counter() - started, 3)}
            body = json.dumps(response, ensure_ascii=False).encode("utf-8")
        except BadRequest as e:
            self._error(e.status, str(e))
            if 0 < e.unread <= 4 * MAX_BODY_BYTES:  # answered, then read and dropped: a client that sends it all
                try:                                 # before reading (urllib, requests) sees the answer, not EPIPE
                    self._receive(e.unread, keep=False)
                except (BadRequest, ClientLeft):
                    pass
            return
        except ClientLeft as e:
            self.close_connection = True
            return self.server.log(f"{self.address_string()} {name}: the client left while sending: {e}")
        except ShowoError as e:
            return self._error(HTTPStatus.BAD_REQUEST, str(e) or type(e).__name__)
        except Exception as e:  # a bug or the machine (out of memory): the client gets one line, the log the rest
            self.server.log(traceback.format_exc().rstrip())
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{name} failed: {type(e).__name__}: {e}")
        self._send(HTTPStatus.OK, body)

    def _path(self) -> str:
        return urlsplit(self.path).path

    def _task(self) -> str | None:
        path = self._path()
        return path.removeprefix("/v1/") if path.startswith("/v1/") else None

    def _read_json(self) -> object:
        """The request's JSON (the task checks its fields)."""
        length = self.headers.get("Content-Length")
        if length is None:
            raise BadRequest("send the JSON with a Content-Length header", HTTPStatus.LENGTH_REQUIRED)
        if not (length.isascii() and length.isdigit()):
            raise BadRequest(f"Content-Length must be a number of bytes, got {length!r}")
        if int(length) > MAX_BODY_BYTES:
            raise BadRequest(f"the request is {int(length)} bytes; at most {MAX_BODY_BYTES}",
                             HTTPStatus.REQUEST_ENTITY_TOO_LARGE, unread=int(length))
        body = self._receive(int(length))
        try:
            return json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:  # (ValueError: JSONDecodeError, 5000 digits)
            raise BadRequest(f"the request is not valid JSON: {e}") from None

    def _receive(self, length: int, keep: bool = True) -> bytes:
        """The body's `length` bytes (dropped as they come unless `keep`), within `deadline` seconds."""
        body, got, end = bytearray(), 0, time.monotonic() + self.deadline
        while got < length:
            if time.monotonic() > end:
                raise BadRequest(f"the request took over {self.deadline} s to arrive", HTTPStatus.REQUEST_TIMEOUT)
            try:
                chunk = self.rfile.read1(min(length - got, 1 << 20))
            except TimeoutError:
                raise BadRequest(f"the request stalled for over {self.timeout} s", HTTPStatus.REQUEST_TIMEOUT) from None
            except OSError as e:
                raise ClientLeft(repr(e)) from None
            if not chunk:
                raise BadRequest(f"the request ended after {got} of its {length} bytes")
            got += len(chunk)
            if keep:
                body += chunk
        return bytes(body)

    def _client_gone(self) -> bool:
        """Whether the client has closed its connection (readable, with nothing to read)."""
        try:  # (a selector, not select(): that fails on descriptors past 1024)
            with selectors.DefaultSelector() as selector:
                selector.register(self.connection, selectors.EVENT_READ)
                readable = selector.select(timeout=0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):  # (ValueError: the socket is already closed)
            return True

    def _not_found(self) -> None:
        self._error(HTTPStatus.NOT_FOUND, f"no endpoint {self._path()}; POST /v1/<task> with a task of "
                                          f"{', '.join(TASKS)}, or GET /health or /v1/tasks")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._reply(status, {"error": " ".join(message.split())})

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's own refusals (an unknown method, a malformed request line, headers too long) as
        JSON too, not as an HTML page."""
        self.close_connection = True
        self._reply(HTTPStatus(code), {"error": " ".join((message or HTTPStatus(code).phrase).split())})

    def _reply(self, status: HTTPStatus, payload: dict) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"))

    def _send(self, status: HTTPStatus, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError as e:  # the client has gone: there is no one to answer (one line, not a traceback)
            self.close_connection = True
            self.server.log(f"{self.address_string()} could not be answered: {e!r}")

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the standard library's signature)
        # control characters escaped, as the standard library does: a request line cannot drive the terminal
        self.server.log(f"{self.address_string()} {(format % args).translate(self._control_char_table)}")
