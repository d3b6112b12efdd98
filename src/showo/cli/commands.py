"""One function per subcommand. Each validates its inputs, loads the model, runs the pipeline, renders every
output in memory and only then writes the files (atomically) and prints the results."""
from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import InputError
from ..hardware import environment
from ..limits import check_image_count
from ..pipelines.inputs import check_prompts, question_pairs
from ..tokenizers.image_io import load_image
from .models import ModelSpec, load_pipeline
from .outputs import Files, add_images, check_out_dir, gallery_html, json_bytes, slug
from .parser import PROG, version
from .progress import Progress, TokenStream, say

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass
class Context:
    """One invocation: parsed options, the resolved model and seed, and the progress display."""

    args: argparse.Namespace
    argv: list[str]
    spec: ModelSpec
    note: str | None
    seed: int
    seed_given: bool
    progress: Progress
    inputs: dict[str, dict] = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return Path(self.args.out)

    def load(self):
        """The pipeline (after every input has been validated), announced first when it is the random one (once
        under torchrun, where `showo finetune` loads it in every process)."""
        from ..training.distributed import is_main_process

        if self.note and is_main_process():
            say("note", self.note)
        pipe = load_pipeline(self.spec)
        return pipe.compile_decoding() if getattr(self.args, "compile_decoding", False) else pipe

    def record(self, pipe) -> dict:
        """What every output file carries so that it can be reproduced."""
        argv = [PROG, *self.argv]
        reproduce = argv if self.seed_given else [*argv, "--seed", str(self.seed)]
        options = {k: v for k, v in vars(self.args).items() if k != "command"}
        options["seed"] = self.seed
        return {"model_id": pipe.model_id, "model_source": self.spec.as_dict(), "options": options,
                "inputs": self.inputs, "showo_version": version(), "environment": environment(pipe.device),
                "command": self.args.command,
                "command_line": shlex.join(argv), "reproduce": shlex.join(reproduce), "argv": argv}

    def summary(self, message: str) -> None:
        if not self.args.quiet:
            say("done", message)

    def add_input(self, role: str, path: Path) -> None:
        """Remember an input file (path and SHA-256) for the outputs' metadata."""
        self.inputs[role] = {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


# ---- shared steps ------------------------------------------------------------------------------------------------

def expand_images(sources: list[str]) -> list[Path]:
    """Image files named on the command line; a directory stands for its image files (sorted, not recursive)."""
    paths: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            try:
                found = sorted(p for p in path.iterdir()
                               if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith("."))
            except OSError as e:
                raise InputError(f"cannot list directory {path}: {e.strerror or e}") from None
            if not found:
                raise InputError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in directory {path}")
            paths += found
        else:
            paths.append(path)
    return paths


def load_images(ctx: Context, paths: list[Path], role: str = "image") -> list[Image.Image]:
    images = [load_image(p, what=role) for p in paths]
    for i, p in enumerate(paths):
        ctx.add_input(role if len(paths) == 1 else f"{role}_{i}", p)
    return images


def ignore_image_options(ctx: Context) -> None:
    for flag in ("steps", "guidance"):
        if getattr(ctx.args, flag, None) is not None:
            say("warning", f"--{flag} has no effect on '{ctx.args.command}' (no image is generated); ignored")


def check_schedule(name: str) -> None:
    from ..sampling.schedules import get_mask_schedule

    get_mask_schedule(name)


def image_kwargs(a: argparse.Namespace, ctx: Context) -> dict:
    return {"num_inference_steps": a.steps, "guidance_scale": a.guidance, "temperature": a.temperature,
            "schedule": a.schedule, "seed": ctx.seed, "exact": a.exact,
            "callback": ctx.progress.image_steps(a.command)}


def text_kwargs(a: argparse.Namespace, ctx: Context) -> dict:
    return {"max_new_tokens": a.max_new_tokens, "temperature": a.temperature, "top_k": a.top_k, "top_p": a.top_p,
            "seed": ctx.seed}


def finish_images(ctx: Context, pipe, result, stems: list[str], title: str) -> int:
    """Write each image (PNG + JSON) and the index.html gallery, then print the PNG paths."""
    run = ctx.record(pipe)
    records = [{**meta, "grid": list(result.grid), **run, "codes": result.codes[i].tolist()}
               for i, meta in enumerate(result.metadata)]
    files = Files(ctx.out)
    paths = add_images(files, result.images, records, stems)
    entries = [(p.name, r) for p, r in zip(paths, records)]
    files.add("index.html", gallery_html(title, run["reproduce"], entries))
    files.write()
    for p in paths:
        print(p)
    ctx.summary(f"{len(paths)} image(s) with their JSON and index.html in {ctx.out}/ (seed {ctx.seed})")
    return 0


def run_text(ctx: Context, call, labels: list[str], strip: bool, decode) -> tuple:
    """Run a text task with streaming or a token progress bar; returns (result, whether it was printed)."""
    a, rows = ctx.args, len(labels)
    stream = None
    if a.stream:
        def done(i: int, ids: list[int]) -> None:
            print(f"[{i + 1}/{rows}] {labels[i]}\n{decode(ids).strip()}\n", flush=True)

        stream = TokenStream(decode, rows, strip=strip, on_done=done)
    on_token = stream if stream is not None else ctx.progress.tokens(a.max_new_tokens)
    result = call(on_token)
    ctx.progress.close()
    if stream is not None:
        stream.finish()
    return result, stream is not None


def finish_answers(ctx: Context, pipe, result, entries: list[dict], labels: list[str], printed: bool) -> int:
    """Write answers.json, then print the answers (labelled when there are several) unless streamed."""
    answers = [{**meta, **entry, "answer": text, "token_ids": list(ids)}
               for meta, entry, text, ids in zip(result.metadata, entries, result.texts, result.token_ids)]
    files = Files(ctx.out)
    path = files.add("answers.json", json_bytes({**ctx.record(pipe), "answers": answers}))
    files.write()
    if not printed:
        if len(answers) == 1:
            print(answers[0]["answer"])
        else:
            print("\n\n".join(f"[{i + 1}/{len(labels)}] {label}\n{a['answer']}"
                              for i, (label, a) in enumerate(zip(labels, answers))))
    ctx.summary(f"{len(answers)} answer(s) in {path} (seed {ctx.seed})")
    return 0


# ---- subcommands -----------------------------------------------------------------------------------------------

def generate(ctx: Context) -> int:
    a = ctx.args
    prompts = check_prompts(a.prompts)
    check_image_count(f"{len(prompts)} prompts x -n", a.num_images, len(prompts))
    check_schedule(a.schedule)
    check_out_dir(ctx.out)
    pipe = ctx.load()
    result = pipe.text_to_image(prompts, num_images_per_prompt=a.num_images, **image_kwargs(a, ctx))
    stems = [f"{i:03d}-{slug(m['prompt'])}" for i, m in enumerate(result.metadata)]
    return finish_images(ctx, pipe, result, stems, "showo generate")


def inpaint(ctx: Context) -> int:
    a = ctx.args
    check_prompts(a.prompt)
    check_schedule(a.schedule)
    check_out_dir(ctx.out)
    image = load_images(ctx, [Path(a.image)])[0]
    mask = load_images(ctx, [Path(a.mask)], role="mask")[0]
    if mask.convert("L").getextrema()[1] == 0:  # the pipeline re-checks at the token grid after loading
        raise InputError(f"the mask {a.mask} is all black: it selects nothing to regenerate (white = regenerate)")
    pipe = ctx.load()
    result = pipe.inpaint(image, mask, a.prompt, num_images=a.num_images, **image_kwargs(a, ctx))
    stems = [f"{i:03d}-{slug(a.prompt)}" for i in range(len(result.images))]
    return finish_images(ctx, pipe, result, stems, "showo inpaint")


def extrapolate(ctx: Context) -> int:
    from ..pipelines.extrapolate import pair_steps

    a = ctx.args
    prompts, directions = pair_steps(check_prompts(a.prompts), a.direction)  # before the model loads
    check_schedule(a.schedule)
    check_out_dir(ctx.out)
    image = load_images(ctx, [Path(a.image)])[0]
    pipe = ctx.load()
    result = pipe.extrapolate(image, prompts, directions, offset=a.offset, num_images=a.num_images,
                              **image_kwargs(a, ctx))
    stems = [f"{i:03d}-{slug(prompts[0])}" for i in range(len(result.images))]
    return finish_images(ctx, pipe, result, stems, "showo extrapolate")


def ask(ctx: Context) -> int:
    a = ctx.args
    paths = expand_images([a.image, *a.more_images])
    _, questions, rows = question_pairs(paths, a.questions, a.pairwise)  # (checked before the model loads)
    ignore_image_options(ctx)
    check_out_dir(ctx.out)
    images = load_images(ctx, paths)
    pipe = ctx.load()
    pairs = [(paths[i], q) for i, q in rows]
    labels = [f"{p}: {q}" for p, q in pairs]
    result, printed = run_text(ctx, lambda on_token: pipe.ask(images, questions, on_token=on_token,
                                                              pairwise=a.pairwise, **text_kwargs(a, ctx)),
                               labels, strip=True, decode=pipe.tokenizer.decode)
    entries = [{"image": str(p), "question": q} for p, q in pairs]
    return finish_answers(ctx, pipe, result, entries, labels, printed)


def caption(ctx: Context) -> int:
    a = ctx.args
    paths = expand_images(a.images)
    if a.question is not None:
        check_prompts(a.question, what="question")
    ignore_image_options(ctx)
    check_out_dir(ctx.out)
    images = load_images(ctx, paths)
    pipe = ctx.load()
    question = {} if a.question is None else {"question": a.question}
    result, printed = run_text(ctx, lambda on_token: pipe.caption(images, on_token=on_token, **question,
                                                                  **text_kwargs(a, ctx)),
                               [str(p) for p in paths], strip=True, decode=pipe.tokenizer.decode)
    entries = [{"image": str(p)} for p in paths]
    return finish_answers(ctx, pipe, result, entries, [str(p) for p in paths], printed)


def write(ctx: Context) -> int:
    a = ctx.args
    check_prompts(a.prompt)
    ignore_image_options(ctx)
    check_out_dir(ctx.out)
    pipe = ctx.load()
    result, printed = run_text(ctx, lambda on_token: pipe.write(a.prompt, on_token=on_token, **text_kwargs(a, ctx)),
                               [a.prompt], strip=False, decode=pipe.tokenizer.decode)
    return finish_answers(ctx, pipe, result, [{"prompt": a.prompt}], [a.prompt], printed)


class MixedStream:
    """Streams a mixed answer: text as it comes, `[image K]` where an image is generated."""

    def __init__(self, decode, soi: int):
        self.decode, self.soi, self.images = decode, soi, 0
        self.text = TokenStream(decode, 1)

    def __call__(self, step: int, ids, finished) -> None:
        token = int(ids[0])
        if bool(finished[0]):
            return
        if token == self.soi:
            shown = self.text.flush()
            sys.stdout.write(f"{chr(10) if self.images or shown else ''}[image {self.images}]\n")
            self.images += 1
            self.text = TokenStream(self.decode, 1)
            return
        self.text(step, ids, finished)


def mixed(ctx: Context) -> int:
    a = ctx.args
    check_prompts(a.prompt)
    check_out_dir(ctx.out)
    pipe = ctx.load()
    stream = MixedStream(pipe.tokenizer.decode, pipe.vocab.soi) if a.stream else None
    on_token = stream if stream is not None else ctx.progress.tokens(a.max_new_tokens)
    result = pipe.mixed(a.prompt, max_images=a.max_images, max_new_tokens=a.max_new_tokens,
                        num_inference_steps=a.steps, guidance_scale=a.guidance, text_temperature=a.temperature,
                        image_temperature=a.image_temperature, top_k=a.top_k, top_p=a.top_p, seed=ctx.seed,
                        on_token=on_token, callback=ctx.progress.image_steps("image"),
                        force_image_every_sentence=a.force_image_every_sentence)
    ctx.progress.close()
    if stream is not None:
        stream.text.finish()
    run = ctx.record(pipe)
    meta = {k: v for k, v in result.metadata.items() if k != "image_codes"}
    codes = result.metadata.get("image_codes", [])
    images = result.images
    files = Files(ctx.out)
    records = [{**meta, "image_index": k, **run, "codes": codes[k] if k < len(codes) else None}
               for k in range(len(images))]
    paths = add_images(files, images, records, [f"answer_{k}" for k in range(len(images))])  # as answer.md links them
    files.add("answer.md", result.markdown(name="answer").encode())
    files.add("index.html", result.html().encode())
    k, segments, lines = 0, [], []
    for s in result.segments:
        if isinstance(s, Image.Image):
            segments.append({"image": paths[k].name})
            lines.append(f"[image {k}: {paths[k]}]")
            k += 1
        else:
            segments.append({"text": s})
            lines.append(s.strip())
    files.add("answers.json", json_bytes({**run, **meta, "segments": segments,
                                          "answer": "".join(s for s in result.segments if isinstance(s, str)),
                                          "token_ids": list(result.token_ids)}))
    files.write()
    if stream is None:
        print("\n".join(line for line in lines if line))
    ctx.summary(f"{len(images)} image(s), answer.md, index.html and answers.json in {ctx.out}/ (seed {ctx.seed})")
    return 0


def evaluate(ctx: Context) -> int:
    from . import evaluate as evaluation

    return evaluation.run(ctx)


def finetune(ctx: Context) -> int:
    from . import finetune as training

    return training.run(ctx)


def serve(ctx: Context) -> int:
    from . import serve as serving

    return serving.run(ctx)


COMMANDS = {"eval": evaluate, "finetune": finetune, "generate": generate, "inpaint": inpaint,
            "extrapolate": extrapolate, "ask": ask, "caption": caption, "write": write, "mixed": mixed, "serve": serve}
