"""Stop a training run at a step boundary when it is asked to (Ctrl-C, or SIGTERM from a scheduler that preempts
the job), so that it can save a checkpoint first instead of losing every step since the last one.

A signal that arrived in the middle of an optimizer step would leave half-updated weights behind, so the signal
only sets a flag; the loop checks it after each step, saves, and then stops as the signal would have. A second
Ctrl-C stops at once.
"""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Which signal asked the run to stop (None: none yet)."""

    def __init__(self):
        self.signum: int | None = None

    def resend(self) -> None:
        """Stop as the signal would have: its previous handler runs now (KeyboardInterrupt for Ctrl-C, the CLI's
        exception for SIGTERM, or the default action)."""
        if self.signum is not None:
            os.kill(os.getpid(), self.signum)


@contextmanager
def stop_at_step_boundary() -> Iterator[StopRequest]:
    """Within the block, SIGINT and SIGTERM set `request.signum` instead of interrupting (in the main thread;
    elsewhere signals cannot be caught and nothing changes; an ignored one stays ignored). The previous handlers
    come back on exit."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}

    def defer(signum, frame) -> None:
        if request.signum is not None and signum == signal.SIGINT:  # asked twice: the user means now
            signal.default_int_handler(signum, frame)
        request.signum = signum

    for s in SIGNALS:
        if previous[s] is not signal.SIG_IGN:  # an ignored signal stays ignored (`cmd &` in a script ignores SIGINT):
            signal.signal(s, defer)           # deferring it would end the run early, as if it had finished
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
