"""What `showo serve` runs: a JSON request's fields as a pipeline method's keyword arguments, its output as JSON.

A request names the same arguments as the Python method (`prompt`, `num_inference_steps`, `guidance_scale`,
`seed`, ...), so the Python API's documentation is the server's. Images travel as base64 (a data URI or bare), in
and out. Python-only arguments (callbacks, generators, `output_type`) are not fields.
"""
from __future__ import annotations

import base64
import binascii
import difflib
import functools
import inspect
import io
from dataclasses import dataclass
from typing import Callable

from PIL import Image

from ..errors import InputError
from ..files import png_bytes
from ..pipelines.outputs import ImageOutput, MixedOutput, TextOutput
from ..pipelines.showo_pipeline import CAPTION_QUESTION, ShowoPipeline

HOOKS = ("callback", "on_token")  # the pipelines' progress callbacks (image steps, text tokens)
PYTHON_ONLY = {"self", "generator", *HOOKS, "output_type", "kwargs"}
MAX_UPLOAD_PIXELS = 4096 * 4096  # an input image (Show-o sees 256x256 or 512x512 of it)


@dataclass(frozen=True)
class Task:
    """One endpoint: the pipeline method it calls and which of its fields are images."""

    method: str
    images: tuple[str, ...] = ()

    def parameters(self) -> dict[str, inspect.Parameter]:
        """The method's JSON fields (`caption` takes `ask`'s, with its own default question)."""
        params = {n: p for n, p in _signature(self.method).items() if n not in PYTHON_ONLY}
        if self.method == "caption":
            params["question"] = params["question"].replace(default=CAPTION_QUESTION)
        return params

    def describe(self) -> dict:
        """Each field with its default (required fields: none), for `GET /v1/tasks`."""
        return {"images": list(self.images), "fields": {
            n: {"required": p.default is inspect.Parameter.empty,
                **({} if p.default is inspect.Parameter.empty else {"default": p.default})}
            for n, p in self.parameters().items()}}

    def hooks(self) -> tuple[str, ...]:
        """The progress callbacks its method takes."""
        return tuple(h for h in HOOKS if h in _signature(self.method))


@functools.cache
def _signature(method: str) -> dict[str, inspect.Parameter]:
    fn = getattr(ShowoPipeline, "ask" if method == "caption" else method)
    return dict(inspect.signature(fn).parameters)


TASKS = {
    "text-to-image": Task("text_to_image"),
    "inpaint": Task("inpaint", ("image", "mask_image")),
    "extrapolate": Task("extrapolate", ("image",)),
    "ask": Task("ask", ("image",)),
    "caption": Task("caption", ("image",)),
    "write": Task("write"),
    "mixed": Task("mixed"),
}


def check_request(name: str, request: object, max_rows: int) -> dict:
    """`request` as the keyword arguments of task `name`, its images decoded; unknown or missing fields, and more
    than `max_rows` rows (images, or answers) in one call, raise InputError."""
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
    if (n := rows(name, kwargs)) > max_rows:
        raise InputError(f"the request asks for {n} rows (images or answers) in one call; this server takes at most "
                         f"{max_rows} (showo serve --max-rows)")
    for field in task.images:
        value = kwargs[field]
        many = isinstance(value, list) and name in ("ask", "caption")  # these take several images
        decoded = [decode_image(v, f"{field}[{i}]") for i, v in enumerate(value)] if many else None
        kwargs[field] = decoded if many else decode_image(value, field)
    return kwargs


def run_task(pipe: ShowoPipeline, name: str, kwargs: dict, hook: Callable[..., None] | None = None) -> dict:
    """Run task `name` with the arguments `check_request` made; returns the JSON-able response. `hook`, when
    given, is called at every image step and text token (it may raise to stop the call)."""
    task = TASKS[name]
    hooks = dict.fromkeys(task.hooks(), hook) if hook is not None else {}
    return encode_output(getattr(pipe, task.method)(**kwargs, **hooks))


def rows(name: str, request: dict) -> int:
    """The batch a request asks for (what memory grows with); a malformed count is left to the pipeline's check."""
    def count(value, default: int = 1) -> int:
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    def length(value) -> int:
        return len(value) if isinstance(value, list) else 1

    if name == "text-to-image":
        return length(request.get("prompt")) * count(request.get("num_images_per_prompt"))
    if name in ("inpaint", "extrapolate"):
        return count(request.get("num_images"))
    if name in ("ask", "caption"):
        if request.get("pairwise") is True:
            return length(request.get("image"))
        return length(request.get("image")) * length(request.get("question"))
    return length(request.get("prompt"))  # write; mixed takes one prompt


def decode_image(value: object, field: str) -> bytes:
    """The bytes of a base64 image: bare, or a data URI (`data:image/png;base64,...`)."""
    if not isinstance(value, str):
        raise InputError(f"{field} must be a base64 string (an image file's bytes), got {type(value).__name__}")
    data = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{field} is not valid base64") from None
    try:  # the header's size, before any pixel is decoded: a few kB of PNG can hold 64M pixels
        width, height = Image.open(io.BytesIO(decoded)).size
    except Exception:  # noqa: BLE001 - not an image: load_image says so in its own words
        return decoded
    if width * height > MAX_UPLOAD_PIXELS:
        raise InputError(f"{field} is {width}x{height} pixels; this server takes images of at most "
                         f"{MAX_UPLOAD_PIXELS:,} pixels")
    return decoded


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
