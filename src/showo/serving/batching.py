"""Requests that wait for the model together, run as one batch.

Greedy understanding (`ask`, `caption`) and writing (`write`) requests that agree on everything but their rows
(images, questions, prompts, seed) are merged into one call: batch 8 answers several times as many questions a
second as batch 1 (docs/benchmarks). Greedy rows do not draw from the generator, so a row's answer is the one the
Python API gives for that batch, which is the request's own answer up to float rounding. Each response is cut back
to its request's rows and its metadata rewritten to what the request alone records: nothing of another client's
request reaches it. Sampled, exact and image requests always run alone (their tokens depend on the batch).
"""
from __future__ import annotations

import json
import threading
import warnings
from dataclasses import dataclass, field
from typing import Callable

from ..errors import ShowoWarning
from ..pipelines.inputs import check_prompts, square_input
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


def batch_key(job: Job) -> str | None:
    """What a job must share with others to run in one batch with them; None when it runs alone."""
    group, kw = GROUP.get(job.name), job.kwargs
    temperature, seed = kw.get("temperature", 0.0), kw.get("seed")
    greedy = type(temperature) in (int, float) and temperature == 0
    plain_seed = seed is None or (type(seed) is int and 0 <= seed < 2 ** 63)
    pairwise = kw.get("pairwise", False)
    paired = pairwise is False or (pairwise is True and _count(kw.get("image")) == _count(kw.get("question")))
    if group is None or not greedy or kw.get("exact", False) is not False or not (plain_seed and paired):
        return None  # (a seed or pairing that is wrong meets its own error, alone)
    shared = {k: v for k, v in kw.items() if k not in ROW_FIELDS[group]}
    return group + json.dumps(shared, sort_keys=True)


def run_alone(pipe: ShowoPipeline, job: Job) -> None:
    """`job` as its own call, its warnings recorded."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # (process-wide: safe because one thread runs the pipeline)
            response = run_task(pipe, job.name, job.kwargs)
        job.warnings = caught
        job.finish(response)
    except Exception as e:  # noqa: BLE001 - handed to the request's thread, which answers 400 or 500
        job.finish(error=e)


def run_batch(pipe: ShowoPipeline, jobs: list[Job]) -> None:
    """`jobs` (one `batch_key`) as one call; if that call fails, each alone, so that a failure is its own."""
    if len(jobs) == 1:
        return run_alone(pipe, jobs[0])
    group = GROUP[jobs[0].name]
    if group == "ask":
        jobs = [j for j in jobs if _load_images(j)]  # (a job whose image cannot be read has its error)
        if not jobs:
            return
    shared = {k: v for k, v in jobs[0].kwargs.items() if k not in ROW_FIELDS[group]}
    try:
        rows = [_rows(group, j) for j in jobs]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if group == "ask":
                out = pipe.ask([i for r in rows for i, _ in r], [q for r in rows for _, q in r], pairwise=True,
                               **shared)
            else:
                out = pipe.write([p for r in rows for p in r], **shared)
    except Exception:  # noqa: BLE001 - one request's fault (or memory): each runs alone and meets its own
        for job in jobs:
            run_alone(pipe, job)
        return
    # the warnings of the jobs' images are each job's own (recorded when they were read); the rest are everyone's
    theirs = {str(w.message) for job in jobs for w in job.warnings}
    shared_warnings = [w for w in caught if not (issubclass(w.category, ShowoWarning) and str(w.message) in theirs)]
    start = 0
    for job, r in zip(jobs, rows):
        part = TextOutput(out.texts[start:start + len(r)], out.token_ids[start:start + len(r)],
                          [_own_metadata(job, m, k, r) for k, m in enumerate(out.metadata[start:start + len(r)])])
        start += len(r)
        job.warnings += shared_warnings
        job.batched_with = len(jobs) - 1
        job.finish(encode_output(part))


def _load_images(job: Job) -> bool:
    """Read a job's images (alone, so their warnings are its own): False, with the job finished, if one fails."""
    images = job.kwargs["image"]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = [square_input(load_image(i), "understanding")
                      for i in (images if isinstance(images, list) else [images])]
    except Exception as e:  # noqa: BLE001 - the error the call alone would raise
        job.finish(error=e)
        return False
    job.warnings, job.kwargs = caught, {**job.kwargs, "image": loaded}
    return True


def _rows(group: str, job: Job) -> list:
    """The job's rows in the order its call alone returns them: (image, question) pairs, or prompts."""
    kw = job.kwargs
    if group == "write":
        return check_prompts(kw["prompt"])
    questions, images = check_prompts(kw.get("question", CAPTION_QUESTION), what="question"), kw["image"]
    if kw.get("pairwise", False):
        return list(zip(images, questions))
    return [(i, q) for i in images for q in questions]


def _count(value: object) -> int:
    return len(value) if isinstance(value, list) else 1


def _own_metadata(job: Job, meta: dict, k: int, rows: list) -> dict:
    """A batch row's metadata as the job's own call records it (the batch's other requests left out)."""
    kw, meta = job.kwargs, dict(meta)
    if kw.get("seed") is not None:
        meta["seed"] = kw["seed"]
    if GROUP[job.name] == "write":
        meta["batch_prompts"] = list(rows)
        return meta
    questions = kw.get("question", CAPTION_QUESTION)
    meta["batch_questions"] = [questions] if isinstance(questions, str) else list(questions)
    meta["num_images"] = len(kw["image"])
    meta["image_index"] = k if kw.get("pairwise", False) else k // len(meta["batch_questions"])
    if not kw.get("pairwise", False):
        meta.pop("pairwise", None)
    if job.name == "caption":
        meta["task"] = "caption"
    return meta
