"""`showo serve`: the pipeline behind an HTTP JSON API (serving/server.py), until Ctrl-C."""
from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys

from ..errors import InputError
from ..limits import MAX_IMAGES
from .progress import say
from .values import count_up_to, port_number, positive_int, wait_ms

DESCRIPTION = """\
Load the model once and answer HTTP requests: POST /v1/<task> with a JSON object of the Python method's
arguments (text-to-image, inpaint, extrapolate, ask, caption, write, mixed; images as base64), GET /v1/tasks for
every task's fields and defaults, GET /health. Requests run on the model one at a time, in the order they
came, except that greedy ask, caption and write requests waiting together run as one batch. Each response
carries the outputs (images as base64 PNG), their metadata (seed included, so every result can be reproduced)
and any warnings. There is no authentication: it listens on 127.0.0.1 unless --host says otherwise."""

EPILOG = """\
examples:
  showo serve --port 8000
  curl -s localhost:8000/v1/text-to-image -d '{"prompt": "a small red circle on the left", "seed": 0}'
  curl -s localhost:8000/v1/ask -d "{\\"image\\": \\"$(base64 -w0 photo.png)\\", \\"question\\": \\"What colour is it?\\"}"
"""

STOP_WAIT = 10.0  # seconds a stop waits for the running call to reach its next image step or text token


def add_parser(sub, add_model_options) -> None:
    p = sub.add_parser("serve", help="answer HTTP JSON requests for every task (one model, loaded once)",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", metavar="HOST",
                   help="address to listen on (default: %(default)s; 0.0.0.0 opens it to the network, unprotected)")
    g.add_argument("--port", type=port_number, default=8000, metavar="N",
                   help="port to listen on; 0 picks a free one (default: %(default)s)")
    g.add_argument("--max-rows", type=count_up_to(MAX_IMAGES), default=16, metavar="N",
                   help="images or answers one request may ask for (memory grows with them; default: %(default)s)")
    g.add_argument("--max-waiting", type=positive_int, default=8, metavar="N",
                   help="requests that may wait for the model; more get 503 (default: %(default)s)")
    g.add_argument("--no-batching", action="store_true",
                   help="run every request alone (by default, greedy ask, caption and write requests that wait for "
                        "the model together run as one batch: more answers a second, each equal to its answer "
                        "alone up to float rounding)")
    g.add_argument("--batch-wait", type=wait_ms, default=20.0, metavar="MS",
                   help="how long a batchable request waits for others to join its batch, in milliseconds "
                        "(default: %(default)g; 0: only those already waiting)")
    g.add_argument("-q", "--quiet", action="store_true", help="no line per request on stderr")
    add_model_options(p)


def run(ctx) -> int:
    from ..serving import ShowoServer
    from .main import Terminated

    a = ctx.args
    log = (lambda line: None) if a.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    try:  # listen before loading the model: a port in use is an error at once, not after the load
        server = ShowoServer((a.host, a.port), None, log, max_rows=a.max_rows, max_waiting=a.max_waiting,
                             batching=not a.no_batching, batch_wait=a.batch_wait / 1000)
    except OSError as e:
        raise InputError(f"cannot listen on {a.host}:{a.port}: {e.strerror or e}") from None
    with server:
        server.pipe = ctx.load()
        try:  # (a stop right after the line below, before serve_forever, is a stop too)
            if not _loopback(a.host):
                say("warning", f"--host {a.host} accepts requests from other machines, with no authentication")
            say("serving", f"{server.pipe.model_id} at {server.url} (POST /v1/<task>, GET /v1/tasks; Ctrl-C stops)")
            server.serve_forever()
        except (KeyboardInterrupt, Terminated):  # Ctrl-C or SIGTERM (a service manager): how a server stops
            for stop in (signal.SIGINT, signal.SIGTERM):  # (a second Ctrl-C must not break the stop half-way)
                signal.signal(stop, signal.SIG_IGN)
            if not server.close_model(timeout=STOP_WAIT):
                # the running call is stuck in a step that cannot be interrupted (a long prompt pass, image
                # decoding); exiting the interpreter under it aborts the process (SIGABRT from torch's threads),
                # so leave at once, its clients disconnected
                say("stopped", f"{server.url} (the running request did not stop within {STOP_WAIT:g} s: abandoned)")
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(0)
            server.settle(2.0)  # the requests that were waiting get their 503 before the process ends
            say("stopped", server.url)
    return 0


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
