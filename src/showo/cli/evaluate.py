"""`showo eval`: score a model on the procedural world (seen and held-out combinations), as JSON + a report."""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from .outputs import Files, OutputError, check_apart, check_out_dir, check_out_file, json_bytes
from .values import non_negative_int, path_arg
from .progress import say

DESCRIPTION = """\
Evaluate a model on the procedural world's evaluation scenes (never used in training), separately for attribute
combinations seen in training and for held-out ones: text-to-image prompt adherence (GenEval style, read back by
a deterministic scene parser), visual question answering, captions, inpainting, extrapolation, mixed-modality
stories and tokenizer reconstruction. Writes one JSON object (--json) with a key per task, each holding 'seen'
and 'heldout' metrics with an 'overall' in [0, 1] (PSNR in dB for the tokenizer), and a Markdown report with
image grids in --out. Meaningful for models trained on the world (the embedded default)."""

EPILOG = """\
examples:
  showo eval --seed 1 --samples 50 --json out/eval.json
  showo eval --tasks t2i vqa --samples 10 --json t2i_vqa.json --dtype bfloat16
  showo eval --tasks mixed --seed 3 --story-guidance 3 --json dev/mixed-g3.json   # a setting, on a dev draw"""


def add_parser(sub, add_model_options, add_output_options) -> None:
    from ..evaluation.settings import MAX_SAMPLES, TASKS, EvalSettings
    from .parser import add_image_sampling
    from .values import count_up_to, scale

    p = sub.add_parser("eval", help="score a model on the procedural world (seen and held-out combinations)",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("evaluation")
    g.add_argument("--seed", type=non_negative_int, default=0, help="evaluation seed (scenes and sampling; default: 0)")
    g.add_argument("--samples", type=count_up_to(MAX_SAMPLES), default=20, metavar="N",
                   help="scenes per task and split (default: %(default)s)")
    g.add_argument("--json", required=True, metavar="FILE", type=path_arg, help="where to write the metrics")
    g.add_argument("--tasks", nargs="+", choices=TASKS, metavar="TASK",
                   help=f"subset of {', '.join(TASKS)} (default: all)")
    d = EvalSettings()
    g = p.add_argument_group("generation settings (--guidance: text-to-image, inpainting and extrapolation; the same "
                             "for every model compared; written into the JSON)")
    add_image_sampling(g, {"steps": d.image_steps, "guidance": d.guidance_scale,
                           "image_temperature": d.image_temperature}, temperature_flag="--image-temperature")
    g.add_argument("--story-guidance", type=scale, default=d.story_guidance_scale, metavar="G",
                   help="guidance of story keyframes against the null story (default: %(default)s)")
    add_model_options(p)
    add_output_options(p, "eval")


def run(ctx) -> int:
    from ..evaluation.harness import run_evaluation
    from ..evaluation.settings import TASKS, EvalSettings

    args = ctx.args
    settings = EvalSettings(image_steps=args.steps, guidance_scale=args.guidance,
                            story_guidance_scale=args.story_guidance, image_temperature=args.image_temperature)
    tasks = list(dict.fromkeys(args.tasks or TASKS))  # a task named twice runs once
    json_path = Path(args.json)
    check_out_dir(ctx.out)
    check_out_file(json_path, "--json")
    check_apart({"--json": json_path}, {"--out": ctx.out})
    _check_no_clash(json_path, ctx.out, tasks)
    stale = sorted(n for n in _report_names(TASKS) - _report_names(tasks) if (ctx.out / n).exists())
    if stale:
        say("note", f"--out {ctx.out} also holds {', '.join(stale)} from an earlier evaluation, not in this report")
    pipe = ctx.load()
    files = Files(ctx.out)
    with tempfile.TemporaryDirectory() as tmp:
        results = run_evaluation(pipe, seed=args.seed, samples=args.samples, tasks=tasks, out_dir=Path(tmp),
                                 settings=settings, progress=ctx.progress.counter(2 * len(tasks), "eval", "split"))
        for f in sorted(Path(tmp).iterdir()):
            files.add(f.name, f.read_bytes())
    ctx.progress.close()
    record = {"model": pipe.model_id, "seed": args.seed, "samples": args.samples, **results,
              "settings": dataclasses.asdict(settings), "run": ctx.record(pipe)}
    files.add_path(json_path, json_bytes(record))
    files.write(note_leftovers=False)  # the report and the JSON together (stale report files: noted above)
    for task, splits in results.items():
        line = "  ".join(f"{split} {m['overall']:.3f}" if m.get("overall") is not None else f"{split} -"
                         for split, m in splits.items())
        print(f"{task:12s} {line}")
    ctx.summary(f"metrics in {json_path}, report in {ctx.out / 'report.md'}")
    return 0


def _report_names(tasks) -> set[str]:
    """The files the report of `tasks` writes into --out."""
    from ..evaluation.cases import SPLIT_KEYS

    return {"report.md", *(f"{task}_{split}.png" for task in tasks for split in SPLIT_KEYS)}


def _check_no_clash(json_path: Path, out: Path, tasks: list[str]) -> None:
    """--json must not name a file of the report, which would silently replace it (or it the JSON)."""
    if json_path.name in _report_names(tasks) and json_path.parent.resolve() == out.resolve():
        raise OutputError(f"--json {json_path}: the report in --out {out} writes a file of that name")
