"""The evaluation harness of `showo eval`: seven tasks, each scored on seen ('eval') and held-out scenes.

`run_evaluation(pipeline, seed, samples)` returns `{task: {"seen": metrics, "heldout": metrics}}` with an
`overall` in every metrics dict (a fraction in [0, 1]; mean PSNR in dB for `tokenizer`). Each evaluator
takes (pipeline, world, split, seed, samples) and returns a `TaskResult` (metrics + records for the report).
Generated images are resized to the world's native size before parsing, so any pipeline resolution works.
Every pipeline call has its own seed (`cases.call_seed`), so a run is deterministic for its seed and sample
`i` of a task does not depend on how many samples are asked for. Metric definitions: docs in each evaluator
and in `editing.py` (inpainting, extrapolation, stories).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import torch

from ..data.dataset import CAPTION_QUESTIONS, image_tensor
from ..data.language import QTYPES
from ..data.world import WorldConfig, position_name
from ..errors import ConfigError, ShowoWarning
from ..fields import is_number
from ..files import check_out_dir, path_argument
from ..tokenizers.image_io import preprocess
from ..training.tokenizer import evaluate_reconstruction, psnr
from .caption_parser import parse_caption, score_caption
from .cases import SPLIT_KEYS, SampleRecord, TaskResult, call_seed, mean, scene_cases, to_world_size, world_image
from .editing import evaluate_extrapolate, evaluate_inpaint, evaluate_mixed
from .matching import answer_correct, match_scene
from .parser import parse
from .report import write_report
from .settings import MAX_SAMPLES, TASKS, EvalSettings

def describe_parse(parsed) -> str:
    """'large red circle top left, small blue square centre' (or 'nothing') for a parsed scene."""
    return ", ".join(f"{o.size} {o.colour} {o.shape} {position_name(o)}" for o in parsed.objects) or "nothing"


def evaluate_t2i(pipeline, world: WorldConfig, split: str, seed: int, samples: int,
                 settings: EvalSettings | None = None) -> TaskResult:
    """GenEval-style prompt adherence: generate from each scene's t2i prompt, parse, `match_scene`.

    object / colour / position / size: mean fractions of prompt objects right (colour+shape; colour multiset;
    ...+cell; ...+size); count: fraction of images with the right number of objects; overall: fraction of
    images fully correct (count right and every object right in colour, shape, size and cell).
    """
    settings = settings or EvalSettings()
    scores, records = [], []
    for case in scene_cases(world, split, seed, samples, "t2i"):
        out = pipeline.text_to_image(case.prompt, num_inference_steps=settings.image_steps,
                                     guidance_scale=settings.guidance_scale, temperature=settings.image_temperature,
                                     seed=call_seed(seed, "t2i", split, case.index))
        generated = to_world_size(out.images[0], world)
        parsed = parse(generated, world)
        score = match_scene(parsed, case.scene)
        scores.append(score)
        records.append(SampleRecord(case.index, [world_image(case.scene, world), generated], ["reference", "generated"],
                                    case.prompt, describe_parse(parsed), bool(score["overall"]), score))
    metrics = {"object": mean(s["objects"] for s in scores), "colour": mean(s["colours"] for s in scores),
               "count": mean(s["count"] for s in scores), "position": mean(s["positions"] for s in scores),
               "size": mean(s["sizes"] for s in scores), "overall": mean(s["overall"] for s in scores),
               "n": len(scores)}
    return TaskResult("t2i", split, metrics, records)


def evaluate_vqa(pipeline, world: WorldConfig, split: str, seed: int, samples: int,
                 settings: EvalSettings | None = None) -> TaskResult:
    """Every QA pair of each scene (`language.qa_pairs`, about nine), asked with greedy decoding, judged by
    `answer_correct`. Per-qtype accuracy (None when the split drew no question of that type) and overall =
    the fraction of all questions answered correctly (micro average)."""
    settings = settings or EvalSettings()
    verdicts: dict[str, list[bool]] = {q: [] for q in QTYPES}
    records = []
    for case in scene_cases(world, split, seed, samples, "vqa"):
        image = world_image(case.scene, world)
        questions = [q for q, _, _ in case.questions]
        out = pipeline.ask(image, questions, max_new_tokens=settings.answer_tokens, temperature=0.0,
                           seed=call_seed(seed, "vqa", split, case.index))
        lines, right = [], []
        for (question, gold, qtype), answer in zip(case.questions, out.texts):
            ok = answer_correct(qtype, answer, gold)
            verdicts[qtype].append(ok)
            right.append(ok)
            lines.append(f"{'✓' if ok else '✗'} [{qtype}] {question} → {answer!r} (gold: {gold})")
        records.append(SampleRecord(case.index, [image], ["image"], f"{len(questions)} questions", "\n".join(lines),
                                    all(right), {"correct": sum(right), "asked": len(right)}))
    every = [v for vs in verdicts.values() for v in vs]
    metrics = {q: mean(vs) for q, vs in verdicts.items()}
    metrics.update(overall=mean(every), n=len(every))
    return TaskResult("vqa", split, metrics, records)


def evaluate_caption(pipeline, world: WorldConfig, split: str, seed: int, samples: int,
                     settings: EvalSettings | None = None) -> TaskResult:
    """Caption each image (greedy, the training captioning question), parse the caption (`caption_parser`) and
    check it against the scene. objects / positions: mean fraction of scene objects named with the right
    colour+shape (/ and position); hallucination_free, sizes_right: fractions of captions; count_right,
    background_right, relations_right: fractions of the captions that state one; overall: fraction of fully
    correct captions (every object named with its colour, shape and position, nothing else named, every
    stated size, total, background and relation true)."""
    settings = settings or EvalSettings()
    scores, records = [], []
    for case in scene_cases(world, split, seed, samples, "caption"):
        image = world_image(case.scene, world)
        out = pipeline.caption(image, question=CAPTION_QUESTIONS[0], max_new_tokens=settings.caption_tokens,
                               temperature=0.0, seed=call_seed(seed, "caption", split, case.index))
        score = score_caption(parse_caption(out.texts[0], world), case.scene)
        scores.append(score)
        records.append(SampleRecord(case.index, [image], ["image"], f"{CAPTION_QUESTIONS[0]} (scene: {case.prompt})",
                                    out.texts[0], score.overall,
                                    score.as_dict()))
    metrics = {name: mean(getattr(s, name) for s in scores)
               for name in ("objects", "positions", "hallucination_free", "sizes_right", "count_right",
                            "background_right", "relations_right", "overall")}
    metrics["n"] = len(scores)
    return TaskResult("caption", split, metrics, records)


def read_back(scenes: list, images: list, world: WorldConfig) -> list[tuple]:
    """(parse, `match_scene` score) of each image against its scene. On reconstructions: what a generator that
    produced exactly the true image's codes would score, the ceiling a tokenizer puts on image generation."""
    parsed = [parse(to_world_size(i, world), world) for i in images]
    return [(p, match_scene(p, s)) for p, s in zip(parsed, scenes)]


def evaluate_tokenizer(pipeline, world: WorldConfig, split: str, seed: int, samples: int,
                       settings: EvalSettings | None = None) -> TaskResult:
    """Reconstruction PSNR (dB, on [0, 1] pixels) of encode -> decode at the pipeline's resolution; overall =
    the mean PSNR; codes_used = distinct codes over these images; scene_match / objects = how much of each
    scene the parser reads back from the reconstruction (fully right / mean fraction of objects right), the
    ceiling for text-to-image, inpainting, extrapolation and stories (PSNR hides small shapes turned to blobs)."""
    cases = scene_cases(world, split, seed, samples, "tokenizer")
    images = [world_image(c.scene, world) for c in cases]
    pixels = torch.stack([preprocess(i, pipeline.resolution) for i in images]).to(pipeline.device)
    stats = evaluate_reconstruction(pipeline.vq, pixels)
    decoded = pipeline.decode_codes(pipeline.encode_images(images), (pipeline.grid_size, pipeline.grid_size))
    each = psnr(pixels.cpu(), torch.stack([image_tensor(d) for d in decoded])).tolist()
    read = read_back([c.scene for c in cases], decoded, world)
    scores = [m for _, m in read]
    records = [SampleRecord(c.index, [i, to_world_size(d, world)], ["image", "reconstruction"], c.prompt,
                            f"PSNR {p:.2f} dB (8-bit image), read back as: {describe_parse(parsed)}",
                            bool(m["overall"]), {"psnr": p, **m})
               for c, i, d, p, (parsed, m) in zip(cases, images, decoded, each, read)]
    metrics = {"psnr": stats["psnr"], "codes_used": stats["codes_used"],
               "scene_match": mean(m["overall"] for m in scores), "objects": mean(m["objects"] for m in scores),
               "overall": stats["psnr"], "n": len(cases)}
    return TaskResult("tokenizer", split, metrics, records)


EVALUATORS: dict[str, Callable[..., TaskResult]] = {
    "t2i": evaluate_t2i, "vqa": evaluate_vqa, "caption": evaluate_caption, "inpaint": evaluate_inpaint,
    "extrapolate": evaluate_extrapolate, "mixed": evaluate_mixed, "tokenizer": evaluate_tokenizer,
}


def check_arguments(seed: int, samples: int, tasks: list[str] | None, world: WorldConfig | None,
                    settings: EvalSettings | None, progress: Callable[[str], None] | None) -> list[str]:
    """The tasks to run; a one-line ConfigError for an argument of the wrong kind or out of range, before any
    scene is drawn."""
    if isinstance(tasks, str) or not (tasks is None or isinstance(tasks, (list, tuple))):
        raise ConfigError(f"tasks must be a list of task names (e.g. ['caption']), got {tasks!r}")
    tasks = list(TASKS) if tasks is None else list(tasks)
    if unknown := [t for t in tasks if t not in EVALUATORS]:
        raise ConfigError(f"unknown evaluation tasks {unknown}; choose from {', '.join(TASKS)}")
    if not is_number(seed, integer=True) or not 0 <= seed < 2 ** 63:
        raise ConfigError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    if not is_number(samples, integer=True) or not 1 <= samples <= MAX_SAMPLES:
        raise ConfigError(f"samples must be an integer in [1, {MAX_SAMPLES}], got {samples!r}")
    if world is not None and not isinstance(world, WorldConfig):
        raise ConfigError(f"world must be a WorldConfig or None, got {type(world).__name__}")
    if settings is not None and not isinstance(settings, EvalSettings):
        raise ConfigError(f"settings must be an EvalSettings or None, got {type(settings).__name__}")
    if progress is not None and not callable(progress):
        raise ConfigError(f"progress must be callable or None, got {type(progress).__name__}")
    return tasks


def evaluate(pipeline, seed: int, samples: int, tasks: list[str] | None = None, world: WorldConfig | None = None,
             settings: EvalSettings | None = None, progress: Callable[[str], None] | None = None,
             ) -> tuple[dict, dict[str, dict[str, list[SampleRecord]]]]:
    """(results as `run_evaluation` returns them, records[task][split key]); `progress("task split")` is called
    after each task and split (for a progress display)."""
    from ..pipelines import ShowoPipeline

    if not isinstance(pipeline, ShowoPipeline):
        raise ConfigError(f"pipeline must be a ShowoPipeline, got {type(pipeline).__name__}")
    tasks = check_arguments(seed, samples, tasks, world, settings, progress)
    world = world or WorldConfig()
    results: dict = {}
    records: dict[str, dict[str, list[SampleRecord]]] = {}
    caught: list[str] = []
    for task in tasks:
        results[task], records[task] = {}, {}
        for key, split in SPLIT_KEYS.items():
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always", ShowoWarning)
                result = EVALUATORS[task](pipeline, world, split, seed, samples, settings)
            for w in seen:  # pipeline warnings are summarised below, anything else passes through
                if issubclass(w.category, ShowoWarning):
                    caught.append(str(w.message))
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            results[task][key], records[task][key] = result.metrics, result.records
            if progress is not None:
                progress(f"{task} {key}")
    if caught:
        warnings.warn(f"{len(caught)} pipeline warnings during evaluation, e.g. {caught[0]}", ShowoWarning,
                      stacklevel=2)
    return results, records


def run_evaluation(pipeline, seed: int, samples: int, tasks: list[str] | None = None, out_dir: Path | None = None,
                   world: WorldConfig | None = None, settings: EvalSettings | None = None,
                   progress: Callable[[str], None] | None = None) -> dict:
    """The `showo eval` JSON object: {task: {"seen": metrics, "heldout": metrics}}; with `out_dir`, also the
    Markdown report (report.md and its PNG grids) there."""
    if out_dir is not None:  # checked before the run, not after it
        out_dir = path_argument(out_dir, "out_dir")
        check_out_dir(out_dir, "out_dir")
    results, records = evaluate(pipeline, seed, samples, tasks, world, settings, progress)
    if out_dir is not None:
        write_report(results, records, out_dir)
    return results
