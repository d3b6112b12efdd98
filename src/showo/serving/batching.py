"""Requests that wait for the model together, run as one batch.

Greedy understanding (`ask`, `caption`) and writing (`write`) requests that agree on everything but their rows
(images, questions, prompts, seed) are merged into one call: batch 8 answers several times as many questions a
second as batch 1 (docs/benchmarks). Greedy rows do not draw from the generator, so a row's answer is the one the
Python API gives for that batch, which is the request's own answer up to float rounding. Each response is cut back
to its request's rows and its metadata rewritten to what the request alone records: nothing of another client's
request reaches it. Sampled, exact and image requests always run alone (their tokens depend on the batch).
Any call, batched or alone, stops at its next image step or text token once none of its clients waits for it, or
the server is closing (`Stopped`).
"""
from __future__ import annotations

import json
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from ..errors import ShowoWarning
from ..pipelines.inputs import check_prompts, question_pairs, square_input
from ..pipelines.outputs import TextOutput
from ..pipelines.showo_pipeline import CAPTION_QUESTION, ShowoPipeline
from ..tokenizers.image_io import load_image
from .tasks import encode_output, run_task

ROW_FIELDS = {"ask": ("image", "question", "pairwise", "seed"), "write": ("prompt", "seed")}
GROUP = {"ask": "ask", "caption": "ask", "write": "write"}  # caption is ask with its own default question


@dataclass
class Job:
    """One request's work, handed from its connection's thread to the model's."""

    name: str
    kwargs: dict
    rows: int
    gone: Callable[[], bool] = lambda: False  # whether its client has hung up
    done: threading.Event = field(default_factory=threading.Event)
    response: dict | None = None  # None once done: skipped (its client left), or `error` is set
    error: BaseException | None = None
    warnings: list[warnings.WarningMessage] = field(default_factory=list)
    batched_with: int = 0  # the other requests its batch held

    def finish(self, response: dict | None = None, error: BaseException | None = None) -> None:
        self.response, self.error = response, error
        self.done.set()


class Stopped(Exception):
    """Raised inside a running call once no one waits for its result: every client of the call has left, or the
    server is closing. Its jobs finish with it as their error."""


WATCH_EVERY = 0.25  # seconds between two looks at a running call's clients (each look is a system call a client)


def _watch(jobs: list[Job], closing: Callable[[], bool]) -> Callable[..., None]:
    """A progress hook for the pipeline (called at every image step and text token) that stops the call with
    `Stopped` once `closing()` or every job's client has gone."""
    due = time.monotonic() + WATCH_EVERY

    def hook(*_) -> None:
        nonlocal due
        if time.monotonic() < due:
            return
        if closing():
            raise Stopped("the server is stopping")
        if all(job.gone() for job in jobs):
            raise Stopped("every client of the call left")
        due = time.monotonic() + WATCH_EVERY

    return hook


def batch_key(job: Job) -> str | None:
    """What a job must share with others to run in one batch with them; None when it runs alone."""
    group, kw = GROUP.get(job.name), job.kwargs
    temperature, seed = kw.get("temperature", 0.0), kw.get("seed")
    greedy = type(temperature) in (int, float) and temperature == 0
    plain_seed = seed is None or (type(seed) is int and 0 <= seed < 2 ** 63)
    flags = type(kw.get("pairwise", False)) is bool and kw.get("exact", False) is False
    if group is None or not greedy or not (flags and plain_seed):
        return None  # (a seed or flag that is wrong meets its own error, alone)
    return group + json.dumps(_shared(group, kw), sort_keys=True)


def _shared(group: str, kwargs: dict) -> dict:
    """The fields every row of a batch takes alike (all but the rows' own)."""
    return {k: v for k, v in kwargs.items() if k not in ROW_FIELDS[group]}


@contextmanager
def _recorded() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning raised inside, recorded (process-wide: safe because one thread runs the pipeline)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def run_alone(pipe: ShowoPipeline, job: Job, closing: Callable[[], bool] = lambda: False) -> None:
    """`job` as its own call, its warnings recorded; stopped early when its client leaves or `closing()`."""
    try:
        with _recorded() as caught:
            response = run_task(pipe, job.name, job.kwargs, _watch([job], closing))
        job.warnings = caught
        job.finish(response)
    except Exception as e:  # noqa: BLE001 - handed to the request's thread, which answers 400 or 500
        job.finish(error=e)


def run_batch(pipe: ShowoPipeline, jobs: list[Job], closing: Callable[[], bool] = lambda: False) -> None:
    """`jobs` (one `batch_key`) as one call. Each job's own inputs are checked first, in the order its call alone
    checks them, so a bad one meets its own error and leaves the batch; if the call itself fails, each job runs
    alone, so that a failure is its own. The call stops early (`Stopped`) once all its clients left, or
    `closing()`."""
    if len(jobs) == 1:
        return run_alone(pipe, jobs[0], closing)
    group, ready = GROUP[jobs[0].name], []
    for job in jobs:
        try:
            ready.append((job, *_rows(group, job)))
        except Exception as e:  # noqa: BLE001 - the error the call alone would raise
            job.finish(error=e)
    if not ready:
        return
    shared = _shared(group, ready[0][0].kwargs)
    rows = [row for _, items, _ in ready for row in items]
    hook = _watch([job for job, _, _ in ready], closing)
    try:
        with _recorded() as caught:
            if group == "ask":
                out = pipe.ask([i for i, _ in rows], [q for _, q in rows], pairwise=True, on_token=hook, **shared)
            else:
                out = pipe.write(rows, on_token=hook, **shared)
    except Stopped as e:
        for job, _, _ in ready:
            job.finish(error=e)
        return
    except Exception:  # noqa: BLE001 - one request's fault (or memory): each runs alone and meets its own
        for job, _, _ in ready:
            run_alone(pipe, job, closing)
        return
    # the warnings of the jobs' images are each job's own (recorded when they were read); the rest are everyone's
    theirs = {str(w.message) for job, _, _ in ready for w in job.warnings}
    shared_warnings = [w for w in caught if not (issubclass(w.category, ShowoWarning) and str(w.message) in theirs)]
    start = 0
    for job, items, own in ready:
        end = start + len(items)
        meta = [_own_metadata(job, m, fix) for m, fix in zip(out.metadata[start:end], own)]
        job.warnings += shared_warnings
        job.batched_with = len(ready) - 1
        job.finish(encode_output(TextOutput(out.texts[start:end], out.token_ids[start:end], meta)))
        start = end


def _rows(group: str, job: Job) -> tuple[list, list[dict]]:
    """The job's rows as the merged call takes them ((image, question) pairs, or prompts), in the order its call
    alone returns them, with the metadata each row has in that call; its images are read here (alone, so that
    their warnings are its own). Raises what its call alone raises first."""
    kw = job.kwargs
    if group == "write":
        prompts = check_prompts(kw["prompt"])
        return prompts, [{"batch_prompts": prompts}] * len(prompts)
    images, questions, pairs = question_pairs(kw["image"], kw.get("question", CAPTION_QUESTION),
                                              kw.get("pairwise", False))
    with _recorded() as caught:
        loaded = [square_input(load_image(i), "understanding") for i in images]
    job.warnings = caught
    own = {"num_images": len(images), "batch_questions": questions}
    return [(loaded[i], q) for i, q in pairs], [{**own, "image_index": i} for i, _ in pairs]


def _own_metadata(job: Job, meta: dict, own: dict) -> dict:
    """A batch row's metadata as the job's own call records it (the batch's other requests left out)."""
    kw, meta = job.kwargs, {**meta, **own}
    if kw.get("seed") is not None:
        meta["seed"] = kw["seed"]
    if not kw.get("pairwise", False):
        meta.pop("pairwise", None)
    if job.name == "caption":
        meta["task"] = "caption"
    return meta
