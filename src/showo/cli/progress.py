"""What the CLI says while it works: progress bars (stderr, only on a terminal), streamed tokens (stdout), and
one-line notes and warnings (stderr) that do not tear the bars."""
from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:  # imported where used: tqdm is 0.05 s of `showo --help`
    from tqdm import tqdm

from ..errors import ShowoWarning


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines included) folded to one space."""
    return " ".join(str(text).split())


def say(kind: str, message: str) -> None:
    """Print `showo: <kind>: <message>` on stderr as one line, above any progress bar."""
    from tqdm import tqdm

    tqdm.write(f"showo: {kind}: {one_line(message)}", file=sys.stderr)


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show every distinct `ShowoWarning` once, as `showo: warning: <message>`; other libraries' warnings (Pillow on
    a corrupt EXIF block, torch) as one line too, with their category and origin, where Python would print the
    warning and the source line that raised it (filters still decide which are shown)."""
    seen: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("always", ShowoWarning)

        def show(message, category, filename, lineno, file=None, line=None):
            text = one_line(str(message))
            if not issubclass(category, ShowoWarning):
                origin = "/".join(Path(filename).parts[-2:])
                text = f"{text} ({category.__name__} from {origin}:{lineno})"
            if text not in seen:
                seen.add(text)
                say("warning", text)

        warnings.showwarning = show
        yield


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def training_progress(quiet: bool) -> bool | Callable[[str], None]:
    """How `showo train` and `finetune` show progress: a bar on a terminal; otherwise (a batch job, nohup) a line
    per log step on stderr, unless --quiet."""
    if quiet:
        return False
    return True if stderr_is_tty() else (lambda line: say("train", line))


class Progress:
    """Progress bars for MaskGIT steps and generated tokens (one bar at a time); inert when not `enabled`."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar: tqdm | None = None
        self._kind = ""

    def _open(self, kind: str, total: int, desc: str, unit: str, initial: int = 0) -> None:
        self._close()
        from tqdm import tqdm

        self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, leave=False)
        self._kind = kind

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar, self._kind = None, ""

    def image_steps(self, desc: str = "image") -> Callable | None:
        """A pipeline `callback` (receives MaskGITStep): a new bar for each image decoding (at its step 0)."""
        if not self.enabled:
            return None
        count = [0]

        def callback(step) -> None:
            if step.step == 0 or self._kind != "image":
                count[0] += 1
                self._open("image", step.num_steps, desc if count[0] == 1 else f"{desc} {count[0]}", "step",
                           initial=step.step)
            self._bar.update(1)
            if step.step + 1 >= step.num_steps:
                self._close()

        return callback

    def tokens(self, total: int, desc: str = "text") -> Callable[[int, object, object], None] | None:
        """An `on_token(step, ids, finished)` callback advancing a token bar of `total` steps (reopened at
        the right count after an image bar interrupted it)."""
        if not self.enabled:
            return None

        def on_token(step: int, ids, finished) -> None:
            if self._kind != "tokens":
                self._open("tokens", total, desc, "tok", initial=step)
            self._bar.update(1)
            if bool(finished.all()) or step + 1 >= total:
                self._close()

        return on_token

    def counter(self, total: int, desc: str, unit: str) -> Callable[[str], None] | None:
        """A callback advancing a bar of `total` parts by one, showing the label of the part just done."""
        if not self.enabled:
            return None
        self._open("counter", total, desc, unit)

        def done(label: str) -> None:
            self._bar.set_postfix_str(label, refresh=False)
            self._bar.update(1)

        return done

    def close(self) -> None:
        self._close()


class TokenStream:
    """Streams generated text to stdout as `on_token(step, ids [B], finished [B])` reports it.

    One row: the decoded text grows on stdout token by token (an incomplete UTF-8 sequence is held back).
    Several rows: tokens are interleaved, so each answer is handed to `on_done(row, ids)` when it ends; rows
    still running at the end are handed over by `finish()`.
    """

    def __init__(self, decode: Callable[[list[int]], str], rows: int, strip: bool = False,
                 on_done: Callable[[int, list[int]], None] | None = None):
        self.decode, self.rows, self.strip, self.on_done = decode, rows, strip, on_done
        self.ids: list[list[int]] = [[] for _ in range(rows)]
        self.done = [False] * rows
        self.printed = ""

    def __call__(self, step: int, ids, finished) -> None:
        for i in range(self.rows):
            if self.done[i]:
                continue
            self.ids[i].append(int(ids[i]))
            if bool(finished[i]):
                self.done[i] = True
                if self.rows > 1 and self.on_done is not None:
                    self.on_done(i, self.ids[i])
        if self.rows == 1:
            self._show()

    def _show(self) -> None:
        text = self.decode(self.ids[0])
        text = text.lstrip() if self.strip else text
        if text.endswith("\ufffd") or not text.startswith(self.printed):
            return
        sys.stdout.write(text[len(self.printed):])
        sys.stdout.flush()
        self.printed = text

    def flush(self) -> str:
        """Print what a single answer held back (an unfinished character at its end); returns the text shown."""
        text = self.decode(self.ids[0])
        text = text.strip() if self.strip else text
        if text.startswith(self.printed):
            sys.stdout.write(text[len(self.printed):])
            self.printed = text
        return self.printed

    def finish(self) -> None:
        """End the stream: the rest of a single answer and a newline, or the answers that never ended."""
        if self.rows == 1:
            self.flush()
            sys.stdout.write("\n")
            sys.stdout.flush()
            return
        for i in range(self.rows):
            if not self.done[i]:
                self.done[i] = True
                if self.on_done is not None:
                    self.on_done(i, self.ids[i])

