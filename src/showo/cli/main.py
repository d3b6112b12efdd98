"""`showo` entry point: parse, dispatch to the subcommand, and turn user errors into one line + exit code 2.

User errors are `ShowoError`s (bad inputs, missing or incomplete models, unavailable devices), usage errors
from argparse, and OSErrors that name a file (no permission, a full disk): they print `showo: error: <problem>`
on stderr, never a traceback. Any other exception is a bug and keeps its traceback. Exit codes: 0 success, 1
`showo bench` found outputs that disagree, 2 user error, 130 interrupted (Ctrl-C), 141 stdout closed early, 143
terminated (SIGTERM; cleaned up like Ctrl-C).
"""
from __future__ import annotations

import os
import secrets
import signal
import sys
import threading
from typing import Sequence

from ..errors import ShowoError
from .parser import build_parser
from .progress import Progress, one_line_warnings, say, stderr_is_tty

EXIT_OK, EXIT_USER_ERROR, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE, EXIT_TERMINATED = 0, 2, 130, 141, 143


class Terminated(BaseException):
    """SIGTERM as an exception, so that it unwinds like Ctrl-C: temporary files are removed, child processes
    (the benchmark's memory probes) are killed, and nothing half-written is left."""


def _terminate(signum, frame) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Run `showo` with `argv` (default: the process arguments); returns the exit code."""
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live only there
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str]) -> int:
    progress: Progress | None = None
    args = None
    try:
        args = build_parser().parse_args(argv)
        if args.command in ("train", "bench"):  # no model to load: they build their own
            from . import bench, train

            with one_line_warnings():
                return (train if args.command == "train" else bench).run(args)
        with one_line_warnings():
            from .commands import COMMANDS, Context
            from .models import model_spec

            spec, note = model_spec(args)
            seed_given = getattr(args, "seed", None) is not None  # (serve has none: each request may)
            seed = args.seed if seed_given else secrets.randbelow(2 ** 31)
            progress = Progress(enabled=not args.quiet and stderr_is_tty())
            ctx = Context(args, argv, spec, note, seed, seed_given, progress)
            return COMMANDS[args.command](ctx)
    except SystemExit as e:  # --help and --version exit through argparse
        return e.code if isinstance(e.code, int) else (EXIT_OK if e.code is None else EXIT_USER_ERROR)
    except ShowoError as e:
        if progress is not None:
            progress.close()
        say("error", str(e) or type(e).__name__)
        return EXIT_USER_ERROR
    except (KeyboardInterrupt, Terminated) as e:
        if progress is not None:
            progress.close()
        terminated = isinstance(e, Terminated)
        resumable = getattr(args, "command", None) in ("train", "finetune")
        say("error", ("terminated" if terminated else "interrupted")
            + ("; rerun the same command to resume (from the run directory's last checkpoint, if it has one)"
               if resumable else ""))
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except (MemoryError, RuntimeError) as e:
        if not _out_of_memory(e):
            raise
        if progress is not None:
            progress.close()
        say("error", "out of memory: ask for fewer images or prompts at once, or a smaller model or dtype")
        return EXIT_USER_ERROR
    except BrokenPipeError:  # stdout closed early (`showo ... | head`): stop quietly, like other tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as e:  # a file the user named or the machine refused (permissions, a full disk): one line
        if e.filename is None:
            raise
        if progress is not None:
            progress.close()
        say("error", f"{e.filename}: {e.strerror or e}")
        return EXIT_USER_ERROR


def _out_of_memory(e: BaseException) -> bool:
    """A failed allocation, on the CPU (MemoryError, "can't allocate memory") or a GPU (torch.OutOfMemoryError)."""
    return isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(e)


if __name__ == "__main__":
    sys.exit(main())
