"""Serving: the pipeline behind an HTTP JSON API (`showo serve`; `ShowoServer` from Python)."""
from .server import ShowoServer
from .tasks import TASKS, check_request, run_task

__all__ = ["ShowoServer", "TASKS", "check_request", "run_task"]
