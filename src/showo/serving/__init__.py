"""Serving: the pipeline behind an HTTP JSON API (`showo serve`; `ShowoServer` from Python)."""
from .server import ShowoServer
from .tasks import TASKS, run_task

__all__ = ["ShowoServer", "TASKS", "run_task"]
