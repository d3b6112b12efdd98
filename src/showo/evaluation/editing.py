"""Evaluators of the editing and story tasks: inpainting, extrapolation, interleaved stories (see `harness`).

The scoring of each sample is a separate function of images, so oracles (rendered ground truth) can be
checked against exactly the rules the evaluators apply.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from PIL import Image

from ..data.language import predecessors, stated_sizes
from ..data.world import Scene, WorldConfig, position_name
from ..pipelines.interleaved import generate_interleaved, split_segments
from ..tokenizers.image_io import mask_to_grid
from .cases import (ExtrapolateCase, InpaintCase, SampleRecord, TaskResult, call_seed, extrapolate_cases, inpaint_cases,
                    mean, story_cases, to_world_size, world_image)
from .matching import drawn_sizes, match_scene
from .parser import parse
from .settings import EvalSettings


def mask_image(case: InpaintCase, world: WorldConfig) -> Image.Image:
    """The inpainting mask ('L', world size): white on the token-aligned box around the replaced object."""
    mask = Image.new("L", (world.image_size, world.image_size), 0)
    x0, y0, x1, y1 = case.box
    mask.paste(255, (x0, y0, x1, y1))
    return mask


def inpaint_region_correct(image: Image.Image, case: InpaintCase, world: WorldConfig) -> tuple[bool, dict]:
    """Whether the edited cell holds exactly one object, of the new colour and shape (parse at world size);
    also `match_scene` of the whole image against the edited scene."""
    parsed = parse(to_world_size(image, world), world)
    cell = (case.new.col, case.new.row)
    inside = [o for o in parsed.objects if (o.col, o.row) == cell]
    ok = len(inside) == 1 and (inside[0].colour, inside[0].shape) == (case.new.colour, case.new.shape)
    return ok, {"scene_match": bool(match_scene(parsed, case.edited)["overall"]),
                "found": [f"{o.colour} {o.shape}" for o in inside]}


def evaluate_inpaint(pipeline, world: WorldConfig, split: str, seed: int, samples: int,
                     settings: EvalSettings | None = None) -> TaskResult:
    """Replace one object by another colour-shape pair (held-out split: by a held-out pair): mask its box grown
    to whole tokens, prompt with the full t2i prompt of the edited scene, inpaint.

    region: fraction where the edited cell holds exactly the new colour+shape; preserved_fraction: mean share
    of the codes outside the mask equal to the encoded original (must be 1.0); scene_match: fraction where
    the whole image matches the edited scene; overall: fraction with region right and every code outside
    the mask preserved.
    """
    settings = settings or EvalSettings()
    g = pipeline.grid_size
    rows, records = [], []
    for case in inpaint_cases(world, split, seed, samples, g):
        original, mask = world_image(case.scene, world), mask_image(case, world)
        out = pipeline.inpaint(original, mask, case.prompt, num_inference_steps=settings.image_steps,
                               guidance_scale=settings.guidance_scale, temperature=settings.image_temperature,
                               seed=call_seed(seed, "inpaint", split, case.index))
        regenerated = mask_to_grid(mask, pipeline.resolution, (g, g))
        kept = ~regenerated
        before = pipeline.encode_images([original]).cpu()[0]
        preserved = float((out.codes[0][kept] == before[kept]).float().mean()) if kept.any() else 1.0
        region, extra = inpaint_region_correct(out.images[0], case, world)
        rows.append((region, preserved, extra["scene_match"]))
        new = case.new
        records.append(SampleRecord(
            case.index, [original, mask.convert("RGB"), to_world_size(out.images[0], world)],
            ["original", "mask", "inpainted"], case.prompt,
            f"wanted {new.colour} {new.shape} {position_name(new)}; found {', '.join(extra['found']) or 'nothing'}",
            region and preserved == 1.0, {"preserved_fraction": preserved, "masked_tokens": int(regenerated.sum()),
                                          **extra}))
    metrics = {"region": mean(r for r, _, _ in rows), "preserved_fraction": mean(p for _, p, _ in rows),
               "scene_match": mean(m for _, _, m in rows),
               "overall": mean(r and p == 1.0 for r, p, _ in rows), "n": len(rows)}
    return TaskResult("inpaint", split, metrics, records)


def seam_score(canvas: Image.Image, seam: int, noise: float = 1.0) -> float:
    """Continuity of a vertical seam between pixel columns seam-1 and seam: (d_within + noise) / (d_seam +
    noise), capped at 1, where d_seam is the mean |difference| (0..255, over rows and channels) across the
    seam and d_within the same over every other pair of neighbouring columns of the canvas."""
    a = np.asarray(canvas.convert("RGB"), dtype=np.float64)
    steps = np.abs(np.diff(a, axis=1)).mean(axis=(0, 2))  # [W-1]: step between column j and j+1
    d_seam = float(steps[seam - 1])
    d_within = float(np.delete(steps, seam - 1).mean()) if steps.size > 1 else 0.0
    return min(1.0, (d_within + noise) / (d_seam + noise))


def extrapolation_scores(canvas: Image.Image, case: ExtrapolateCase, world: WorldConfig, grid: int,
                         noise: float = 1.0) -> tuple[bool, float, str]:
    """(new strip right, seam_score, what was parsed) of an extrapolated canvas (any resolution).

    The window (the canvas's last square, what the model generated into) is parsed at world size; its
    right-column objects must match `case.fresh` exactly (`match_scene` overall: same count, colour, shape,
    size and cell). The seam lies where the original image ends.
    """
    width, height = canvas.size
    window = canvas.crop((width - height, 0, width, height))
    parsed = parse(to_world_size(window, world), world)
    right = replace(parsed, objects=tuple(o for o in parsed.objects if o.col == 2))
    ok = bool(match_scene(right, case.fresh)["overall"])
    seam = round(width * grid / (grid + case.new_tokens))
    found = ", ".join(f"{o.colour} {o.shape} {position_name(o)}" for o in right.objects) or "nothing"
    return ok, seam_score(canvas, seam, noise), found


def evaluate_extrapolate(pipeline, world: WorldConfig, split: str, seed: int, samples: int,
                         settings: EvalSettings | None = None) -> TaskResult:
    """Extrapolate to the right by grid//2 token columns, prompting with the t2i prompt of the window scene
    (`cases.ExtrapolateCase`): the input's objects sit in the window's left column, new ones must appear in
    its right column (in the new strip).

    new_object: fraction where the new strip's objects match exactly; seam_score: mean of `seam_score`;
    seam_continuous: fraction with seam_score >= settings.seam_threshold (0.5: the step across the seam at
    most about twice the image's mean neighbouring-column step, give or take the noise floor); preserved_fraction:
    share of the input's codes kept; overall: fraction with the new strip right and the seam continuous.
    """
    settings = settings or EvalSettings()
    g = pipeline.grid_size
    rows, records = [], []
    for case in extrapolate_cases(world, split, seed, samples, g):
        source = world_image(case.source, world)
        out = pipeline.extrapolate(source, case.prompt, "right", num_inference_steps=settings.image_steps,
                                   guidance_scale=settings.guidance_scale, temperature=settings.image_temperature,
                                   seed=call_seed(seed, "extrapolate", split, case.index))
        ok, seam, found = extrapolation_scores(out.images[0], case, world, g, settings.seam_noise)
        before = pipeline.encode_images([source]).cpu()[0].reshape(g, g)
        after = out.codes[0].reshape(out.grid)[:, :g]
        preserved = float((after == before).float().mean())
        continuous = seam >= settings.seam_threshold
        rows.append((ok, seam, continuous, preserved))
        wanted = ", ".join(f"{o.colour} {o.shape} {position_name(o)}" for o in case.fresh.objects)
        scale = world.image_size / out.images[0].height
        wide = out.images[0].resize((round(out.images[0].width * scale), world.image_size), Image.BICUBIC)
        records.append(SampleRecord(case.index, [source, world_image(case.window, world), wide],
                                    ["input", "target window", "extrapolated"], case.prompt,
                                    f"new strip wanted {wanted}; found {found}; seam {seam:.2f}",
                                    ok and continuous, {"seam_score": seam, "preserved_fraction": preserved}))
    metrics = {"new_object": mean(r[0] for r in rows), "seam_score": mean(r[1] for r in rows),
               "seam_continuous": mean(r[2] for r in rows), "preserved_fraction": mean(r[3] for r in rows),
               "overall": mean(r[0] and r[2] for r in rows), "n": len(rows)}
    return TaskResult("extrapolate", split, metrics, records)


@torch.no_grad()
def story_keyframes(pipeline, sentences: list[str], settings: EvalSettings, seed: int) -> list[Image.Image]:
    """One generated image per sentence, in our interleaved layout with the gold text teacher-forced:
    keyframe k is generated after `[<lvg>, bos, s_0, <soi> img_0 <eoi>, ' ' s_1, ..., ' ' s_k]`, with every
    earlier image the model's own (the layout of the training stories; `generate_interleaved` forced to open
    one image at once), each guided against the null story by `settings.story_guidance_scale`."""
    vocab, n = pipeline.vocab, pipeline.model.config.num_vq_tokens
    generator = torch.Generator(device=pipeline.device).manual_seed(seed)
    prefix: list[int] = []
    images = []
    for k, sentence in enumerate(sentences):
        prefix += pipeline.tokenizer.encode((" " if k else "") + sentence)
        result = generate_interleaved(pipeline.model, vocab, prefix, n, max_images=1, max_new_tokens=1,
                                      num_inference_steps=settings.image_steps,
                                      guidance_scale=settings.story_guidance_scale,
                                      image_temperature=settings.image_temperature, generator=generator,
                                      force_sentence_end=lambda segment: True)
        codes = [p for p in split_segments(result, vocab, n) if isinstance(p, torch.Tensor)][0]
        prefix += [vocab.soi, *vocab.codes_to_ids(codes.cpu()).tolist(), vocab.eoi]
        images.append(pipeline.decode_codes(codes[None])[0])
    return images


def judge_story(images: list[Image.Image], scenes: list[Scene], sentences: list[str],
                world: WorldConfig) -> tuple[list[bool], list[bool], list[bool]]:
    """(right, exactly right) per keyframe (`match_scene` overall at world size; right judges only the sizes the
    story has stated, `language.stated_sizes`), and, for every object whose size no sentence stated, drawn in a
    keyframe and in the one before: whether it kept the size it was drawn at."""
    stated = stated_sizes(scenes, sentences)
    parsed = [parse(to_world_size(image, world), world) for image in images]
    right = [bool(match_scene(p, s, judge)["overall"]) for p, s, judge in zip(parsed, scenes, stated)]
    exact = [bool(match_scene(p, s)["overall"]) for p, s in zip(parsed, scenes)]
    drawn = [drawn_sizes(p, s) for p, s in zip(parsed, scenes)]
    kept = []
    for k in range(1, len(scenes)):
        earlier = dict(zip(scenes[k - 1].objects, drawn[k - 1]))
        for pred, said, size in zip(predecessors(scenes[k - 1], scenes[k]), stated[k], drawn[k]):
            if not said and pred is not None and size is not None and earlier[pred] is not None:
                kept.append(size == earlier[pred])
    return right, exact, kept


def evaluate_mixed(pipeline, world: WorldConfig, split: str, seed: int, samples: int,
                   settings: EvalSettings | None = None) -> TaskResult:
    """Stories (`language.story`, 3-4 keyframes): generate each keyframe after its sentence (`story_keyframes`)
    and match it against the keyframe's scene on everything the story's text has stated by then: count, and
    every object's colour, shape and cell, and its size where stated (`language.stated_sizes`; an opening
    caption often names no size). overall: fraction of keyframes right; first / later: the same for opening
    keyframes / for the changes after them; stories: fraction of stories entirely right; exact_scene: fraction
    of keyframes right with every size judged (this task's 'overall' before sizes were judged only where
    stated); unstated_sizes_kept: fraction of objects of unstated size drawn at the size they had in the
    keyframe before (`judge_story`; not part of overall)."""
    settings = settings or EvalSettings()
    verdicts: list[list[bool]] = []
    exact: list[bool] = []
    sizes_kept: list[bool] = []
    records = []
    for case in story_cases(world, split, seed, samples):
        images = story_keyframes(pipeline, case.sentences, settings, call_seed(seed, "mixed", split, case.index))
        right, exactly, kept = judge_story(images, case.scenes, case.sentences, world)
        exact += exactly
        sizes_kept += kept
        verdicts.append(right)
        shown = [x for scene, image in zip(case.scenes, images) for x in (world_image(scene, world),
                                                                         to_world_size(image, world))]
        labels = [x for k in range(len(images)) for x in (f"scene {k}", f"keyframe {k}")]
        records.append(SampleRecord(case.index, shown, labels, " ".join(case.sentences),
                                    " ".join("✓" if r else "✗" for r in right), all(right), {"keyframes": right}))
    metrics = {"overall": mean(v for r in verdicts for v in r), "first": mean(r[0] for r in verdicts),
               "later": mean(v for r in verdicts for v in r[1:]), "stories": mean(all(r) for r in verdicts),
               "exact_scene": mean(exact), "unstated_sizes_kept": mean(sizes_kept),
               "keyframes": sum(len(r) for r in verdicts), "n": len(verdicts)}
    return TaskResult("mixed", split, metrics, records)
