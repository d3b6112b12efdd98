"""What `showo serve` runs: a JSON request's fields as a pipeline method's keyword arguments, its output as JSON.

A request names the same arguments as the Python method (`prompt`, `num_inference_steps`, `guidance_scale`,
`seed`, ...), so the Python API's documentation is the server's. Images travel as base64 (a data URI or bare), in
and out. Python-only arguments (callbacks, generators, `output_type`) are not fields.
"""
from __future__ import annotations

import base64
import binascii
import difflib
import inspect
from dataclasses import dataclass

from ..errors import InputError
from ..files import png_bytes
from ..pipelines.outputs import ImageOutput, MixedOutput, TextOutput
from ..pipelines.showo_pipeline import CAPTION_QUESTION, ShowoPipeline

PYTHON_ONLY = {"self", "generator", "callback", "on_token", "output_type", "kwargs"}


@dataclass(frozen=True)
class Task:
    """One endpoint: the pipeline method it calls and which of its fields are images."""

    method: str
    images: tuple[str, ...] = ()

    def parameters(self) -> dict[str, inspect.Parameter]:
        """The method's JSON fields (`caption` takes `ask`'s, with its own default question)."""
        fn = getattr(ShowoPipeline, "ask" if self.method == "caption" else self.method)
        params = {n: p for n, p in inspect.signature(fn).parameters.items() if n not in PYTHON_ONLY}
        if self.method == "caption":
            params["question"] = params["question"].replace(default=CAPTION_QUESTION)
        return params

    def describe(self) -> dict:
        """Each field with its default (required fields: none), for `GET /v1/tasks`."""
        return {"images": list(self.images), "fields": {
            n: {"required": p.default is inspect.Parameter.empty,
                **({} if p.default is inspect.Parameter.empty else {"default": p.default})}
            for n, p in self.parameters().items()}}


TASKS = {
    "text-to-image": Task("text_to_image"),
    "inpaint": Task("inpaint", ("image", "mask_image")),
    "extrapolate": Task("extrapolate", ("image",)),
    "ask": Task("ask", ("image",)),
    "caption": Task("caption", ("image",)),
    "write": Task("write"),
    "mixed": Task("mixed"),
}


def run_task(pipe: ShowoPipeline, name: str, request: object) -> dict:
    """Run task `name` on a decoded JSON request; returns the JSON-able response. Bad requests raise InputError."""
    task = TASKS[name]
    if not isinstance(request, dict):
        raise InputError(f"the request must be a JSON object of {name}'s fields, got {type(request).__name__}")
    params = task.parameters()
    for field in request:
        if field not in params:
            close = difflib.get_close_matches(field, list(params), n=1)
            hint = f"; did you mean {close[0]}?" if close else f" (fields: {', '.join(params)})"
            raise InputError(f"unknown field {field!r} for {name}{hint}")
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in request]
    if missing:
        raise InputError(f"{name} needs the field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    kwargs = dict(request)
    for field in task.images:
        value = kwargs[field]
        many = isinstance(value, list) and name in ("ask", "caption")  # these take several images
        decoded = [decode_image(v, f"{field}[{i}]") for i, v in enumerate(value)] if many else None
        kwargs[field] = decoded if many else decode_image(value, field)
    return encode_output(getattr(pipe, task.method)(**kwargs))


def decode_image(value: object, field: str) -> bytes:
    """The bytes of a base64 image: bare, or a data URI (`data:image/png;base64,...`)."""
    if not isinstance(value, str):
        raise InputError(f"{field} must be a base64 string (an image file's bytes), got {type(value).__name__}")
    data = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{field} is not valid base64") from None


def encode_output(out: ImageOutput | TextOutput | MixedOutput) -> dict:
    """A pipeline output as JSON: images as base64 PNG (the bytes `showo` CLI writes), codes and token ids as
    lists, metadata as the Python API records it."""
    if isinstance(out, ImageOutput):
        return {"images": [_png(i) for i in out.images], "codes": out.codes.tolist(), "grid": list(out.grid),
                "metadata": out.metadata}
    if isinstance(out, TextOutput):
        return {"texts": out.texts, "token_ids": out.token_ids, "metadata": out.metadata}
    segments = [{"image": _png(s)} if not isinstance(s, str) else {"text": s} for s in out.segments]
    return {"segments": segments, "token_ids": out.token_ids, "metadata": out.metadata}


def _png(image) -> str:
    return base64.b64encode(png_bytes(image)).decode("ascii")
