"""The evaluation harness (`showo eval`): result layout, determinism, the caption parser on the world's own
text, and oracles (ground truth fed through the metrics) scoring 1.0."""
import json
import random
import warnings
from collections import Counter
from dataclasses import replace

import pytest
import torch
from PIL import Image

from showo.data import WorldConfig, captions, describe, position_name, render, sample_scene, t2i_prompt
from showo.data.language import stated_sizes, story
from showo.data.world import make_object
from showo.errors import ConfigError, OutputError
from showo.evaluation import editing
from showo.evaluation.caption_parser import parse_caption, score_caption
from showo.evaluation.cases import extrapolate_cases, inpaint_cases, scene_cases, story_cases, world_image
from showo.evaluation.editing import (evaluate_inpaint, evaluate_mixed, extrapolation_scores,
                                      inpaint_region_correct, mask_image)
from showo.evaluation.harness import evaluate_caption, evaluate_t2i, evaluate_vqa, read_back, run_evaluation
from showo.evaluation.settings import MAX_SAMPLES, TASKS, EvalSettings
from showo.pipelines.interleaved import generate_interleaved
from showo.pipelines.outputs import ImageOutput, TextOutput
from showo.tiny import tiny_random_pipeline
from showo.tokenizers.image_io import mask_to_grid

pytestmark = pytest.mark.filterwarnings("ignore::showo.pipelines.inputs.ShowoWarning")  # tiny tokenizer truncates
WORLD = WorldConfig()
SPLITS = ("eval", "heldout")


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    return tiny_random_pipeline()


@pytest.fixture(scope="module")
def full_run(pipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    with warnings.catch_warnings():  # the tiny byte-level tokenizer truncates long prompts (one summary warning)
        warnings.simplefilter("ignore")
        results = run_evaluation(pipe, seed=3, samples=2, out_dir=out)
    return results, out


def test_layout_every_task_both_splits_overall_in_range(full_run):
    results, _ = full_run
    assert list(results) == list(TASKS) == ["t2i", "vqa", "caption", "inpaint", "extrapolate", "mixed", "tokenizer"]
    json.loads(json.dumps(results))  # plain JSON
    for task, by_split in results.items():
        assert set(by_split) == {"seen", "heldout"}
        for metrics in by_split.values():
            overall = metrics["overall"]
            assert isinstance(overall, float)
            if task != "tokenizer":
                assert 0.0 <= overall <= 1.0
    for split in ("seen", "heldout"):
        assert results["inpaint"][split]["preserved_fraction"] == 1.0
    assert results["extrapolate"]["seen"]["preserved_fraction"] == 1.0


def test_report_has_a_grid_per_task_and_split(full_run):
    _, out = full_run
    text = (out / "report.md").read_text()
    for task in TASKS:
        assert f"## {task}" in text
        for split in ("seen", "heldout"):
            assert f"({task}_{split}.png)" in text
            assert Image.open(out / f"{task}_{split}.png").size[0] > 0


def test_deterministic_for_a_seed(pipe, full_run):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = run_evaluation(pipe, seed=3, samples=2)
        other = run_evaluation(pipe, seed=4, samples=2, tasks=["t2i", "mixed"])
    assert again == full_run[0]
    assert list(other) == ["t2i", "mixed"]


def test_unknown_task_and_bad_samples_are_refused(pipe):
    with pytest.raises(ConfigError):
        run_evaluation(pipe, seed=0, samples=1, tasks=["nope"])
    with pytest.raises(ConfigError):
        run_evaluation(pipe, seed=0, samples=0, tasks=["t2i"])
    with pytest.raises(ConfigError, match=r"samples must be an integer in \[1, 10000\], got 10001"):
        run_evaluation(pipe, seed=0, samples=MAX_SAMPLES + 1, tasks=["t2i"])
    with pytest.raises(ConfigError, match="pipeline must be a ShowoPipeline, got NoneType"):  # an AttributeError
        run_evaluation(None, seed=0, samples=1, tasks=["vqa"])



@pytest.mark.parametrize("kwargs, match", [
    ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*63\), got -1"),  # each of these ran, or failed deep inside
    ({"seed": None}, "seed must be an integer"), ({"seed": "0"}, "seed must be an integer"),
    ({"seed": 1.5}, "seed must be an integer"), ({"seed": 2 ** 64}, "seed must be an integer"),
    ({"tasks": "caption"}, r"tasks must be a list of task names \(e.g. \['caption'\]\), got 'caption'"),
    ({"world": {"image_size": 64}}, "world must be a WorldConfig or None, got dict"),
    ({"settings": {"image_steps": 2}}, "settings must be an EvalSettings or None, got dict"),
    ({"progress": "bar"}, "progress must be callable or None, got str"),
    ({"out_dir": ""}, "out_dir must be a non-empty path"),
])
def test_evaluation_arguments_are_checked_before_the_run(pipe, tmp_path, monkeypatch, kwargs, match):
    from showo.evaluation import harness

    monkeypatch.setattr(harness, "EVALUATORS", {**harness.EVALUATORS, "t2i": None})  # a run would fail otherwise
    with pytest.raises(ConfigError, match=match):
        run_evaluation(pipe, **{"seed": 0, "samples": 1, "tasks": ["t2i"], **kwargs})


def test_a_report_directory_that_is_a_file_is_refused_before_the_run(pipe, tmp_path, monkeypatch):
    from showo.evaluation import harness

    (tmp_path / "out").write_text("x")
    monkeypatch.setattr(harness, "evaluate", lambda *a: pytest.fail("ran before out_dir was checked"))
    for out_dir in (tmp_path / "out", tmp_path / "out" / "report"):  # a parent that is a file too
        with pytest.raises(OutputError, match="out_dir .*: .*out exists and is not a directory"):
            run_evaluation(pipe, seed=0, samples=1, tasks=["t2i"], out_dir=out_dir)


@pytest.mark.parametrize("field, value, match", [("image_steps", 1001, "num_inference_steps must be at most 1000"),
                                                 ("story_guidance_scale", 101.0, "story_guidance_scale must be"),
                                                 ("image_temperature", -1.0, "image_temperature must be"),
                                                 ("answer_tokens", 0, "answer_tokens must be a positive integer"),
                                                 ("caption_tokens", 1.5, "caption_tokens must be a positive"),
                                                 ("seam_threshold", float("nan"), "seam_threshold must be a finite"),
                                                 ("seam_noise", -1.0, "seam_noise must be a finite number >= 0")])
def test_eval_settings_are_checked_when_made(field, value, match):
    """Python callers get the pipeline's bounds when the settings are built, before any model work."""
    from showo.errors import InputError

    with pytest.raises(InputError, match=match):
        EvalSettings(**{field: value})


def test_cases_are_split_clean_and_prefix_stable():
    held = set(WORLD.heldout_pairs)
    for split in SPLITS:
        cases = scene_cases(WORLD, split, 0, 6, "t2i")
        assert [c.index for c in cases[:3]] == [c.index for c in scene_cases(WORLD, split, 0, 3, "t2i")]
        for c in cases:
            has = any((o.colour, o.shape) in held for o in c.scene.objects)
            assert has == (split == "heldout")
    for c in inpaint_cases(WORLD, "heldout", 0, 4, 4):
        assert (c.new.colour, c.new.shape) in held
    for c in extrapolate_cases(WORLD, "heldout", 0, 4, 4):
        assert any((o.colour, o.shape) in held for o in c.fresh.objects)


def test_caption_parser_is_exact_on_world_captions():
    """Full captions (captions()[0], describe, t2i prompts) parse back to exactly the scene's objects; every
    other caption parses to facts that are all true."""
    rng = random.Random(0)
    full = partial = 0
    for k in range(200):
        scene = sample_scene(rng, WORLD, heldout=k % 4 == 0, split=None)
        texts = captions(scene, rng)
        for j, text in enumerate(texts + [describe(scene, rng), t2i_prompt(scene, rng)]):
            parsed = parse_caption(text, WORLD)
            score = score_caption(parsed, scene)
            if j == 0 or j >= len(texts):
                got = Counter((m.colour, m.shape, m.position, m.count) for m in parsed.mentions)
                assert got == Counter((o.colour, o.shape, position_name(o), 1) for o in scene.objects), text
                assert score.overall, text
                full += 1
            else:
                assert score.hallucination_free and score.sizes_right, text
                assert False not in (score.count_right, score.background_right, score.relations_right), text
                partial += 1
    assert full == 600 and partial > 400


def test_caption_parser_catches_errors():
    scene = sample_scene(random.Random(5), replace(WORLD, min_objects=2, max_objects=2), split=None)
    a, b = scene.objects
    right = f"A {a.colour} {a.shape} {position_name(a)}, a {b.colour} {b.shape} {position_name(b)}."
    assert score_caption(parse_caption(right), scene).overall
    other = next(c for c in WORLD.colours if c not in (a.colour, b.colour))
    wrong_colour = right.replace(f"{a.colour} {a.shape}", f"{other} {a.shape}", 1)
    extra = right[:-1] + f" and a {other} {a.shape} at the centre."
    moved = right.replace(position_name(a), "bottom right" if position_name(a) != "bottom right" else "top left", 1)
    missing = f"A {a.colour} {a.shape} {position_name(a)}."
    for text in (wrong_colour, extra, moved, missing, "Two objects on a beige background."):
        assert not score_caption(parse_caption(text), scene).overall, text
    assert not score_caption(parse_caption(extra), scene).hallucination_free
    assert score_caption(parse_caption("Centre at the left of"), scene).objects == 0.0  # no shape, no mention


def _lookup(split: str, task: str, samples: int):
    return {c.prompt: c.scene for c in scene_cases(WORLD, split, 7, samples, task)}


def test_t2i_oracle_scores_one(pipe, monkeypatch):
    """A fake model that draws the prompt's own scene gets every image right (the metric end to end)."""
    for split in SPLITS:
        scenes = _lookup(split, "t2i", 6)

        def fake(prompt, **kwargs):
            return ImageOutput([render(scenes[prompt], WORLD)], torch.zeros(1, 16, dtype=torch.long), (4, 4), [])

        monkeypatch.setattr(pipe, "text_to_image", fake)
        result = evaluate_t2i(pipe, WORLD, split, 7, 6)
        assert result.metrics["overall"] == result.metrics["position"] == 1.0
        assert all(r.correct for r in result.records)


def test_vqa_and_caption_oracles_score_one(pipe, monkeypatch):
    for split in SPLITS:
        gold = {(world_image(c.scene, WORLD).tobytes(), q): a
                for c in scene_cases(WORLD, split, 7, 6, "vqa") for q, a, _ in c.questions}
        monkeypatch.setattr(pipe, "ask", lambda image, questions, **kw: TextOutput(
            [gold[(image.tobytes(), q)] for q in questions], [], []))
        result = evaluate_vqa(pipe, WORLD, split, 7, 6)
        assert result.metrics["overall"] == 1.0 and result.metrics["n"] >= 6 * 7
        assert all(v in (None, 1.0) for v in result.metrics.values() if isinstance(v, float))

        rng = random.Random(1)
        truth = {world_image(c.scene, WORLD).tobytes(): describe(c.scene, rng)
                 for c in scene_cases(WORLD, split, 7, 6, "caption")}
        monkeypatch.setattr(pipe, "caption", lambda image, **kw: TextOutput([truth[image.tobytes()]], [], []))
        assert evaluate_caption(pipe, WORLD, split, 7, 6).metrics["overall"] == 1.0


def test_inpaint_mask_is_token_aligned_and_codes_outside_are_kept(pipe):
    for split in SPLITS:
        for case in inpaint_cases(WORLD, split, 0, 4, pipe.grid_size):
            regenerated = mask_to_grid(mask_image(case, WORLD), pipe.resolution, (4, 4)).reshape(4, 4)
            cell = WORLD.image_size // 4
            x0, y0, x1, y1 = case.box
            expected = torch.zeros(4, 4, dtype=torch.bool)
            expected[y0 // cell:y1 // cell, x0 // cell:x1 // cell] = True
            assert torch.equal(regenerated, expected)
            assert inpaint_region_correct(render(case.edited, WORLD), case, WORLD)[0]  # oracle
            assert not inpaint_region_correct(render(case.scene, WORLD), case, WORLD)[0]  # unedited
        result = evaluate_inpaint(pipe, WORLD, split, 0, 2)
        assert result.metrics["preserved_fraction"] == 1.0


def test_extrapolation_oracle_and_a_broken_seam():
    """The perfect canvas (input + the window scene's new strip) scores right with seam 1.0; a strip on
    another background breaks the seam."""
    for split in SPLITS:
        for case in extrapolate_cases(WORLD, split, 0, 4, grid=4):
            source, window = render(case.source, WORLD), render(case.window, WORLD)
            assert source.crop((32, 0, 64, 64)).tobytes() == window.crop((0, 0, 32, 64)).tobytes()
            canvas = Image.new("RGB", (96, 64))
            canvas.paste(source, (0, 0))
            canvas.paste(window.crop((32, 0, 64, 64)), (64, 0))
            ok, seam, _ = extrapolation_scores(canvas, case, WORLD, grid=4)
            assert ok and seam == 1.0
            other = next(b for b in WORLD.backgrounds if b != case.window.background)
            broken = render(replace(case.window, background=other), WORLD).crop((32, 0, 64, 64))
            canvas.paste(broken, (64, 0))
            assert extrapolation_scores(canvas, case, WORLD, grid=4)[1] < 0.5


def test_mixed_oracle_scores_one(pipe, monkeypatch):
    for split in SPLITS:
        frames = {" ".join(c.sentences): c.scenes for c in story_cases(WORLD, split, 2, 3)}
        monkeypatch.setattr(editing, "story_keyframes", lambda p, sentences, settings, seed: [
            render(s, WORLD) for s in frames[" ".join(sentences)]])
        metrics = evaluate_mixed(pipe, WORLD, split, 2, 3).metrics
        assert metrics["overall"] == metrics["stories"] == metrics["exact_scene"] == 1.0
        assert metrics["unstated_sizes_kept"] == 1.0


def _shrink(scene, which):
    """The scene with the large objects `which` marks drawn small (same shape, colour and cell)."""
    rng = random.Random(0)
    return replace(scene, objects=tuple(
        make_object(WORLD, o.shape, o.colour, "small", o.col, o.row, rng) if w and o.size == "large" else o
        for o, w in zip(scene.objects, which)))


@pytest.mark.parametrize("stated", [False, True])
def test_mixed_judges_only_the_sizes_the_story_states(pipe, monkeypatch, stated):
    """Keyframes drawn with a large object small: right when the story never stated that size (an opening
    caption often names none), wrong when it did; `exact_scene` judges every size either way."""
    frames, shrunk = {}, 0
    for case in story_cases(WORLD, "eval", 2, 12):
        marks = [[s == stated for s in flags] for flags in stated_sizes(case.scenes, case.sentences)]
        frames[" ".join(case.sentences)] = [_shrink(s, m) for s, m in zip(case.scenes, marks)]
        shrunk += sum(o.size == "large" and m for s, ms in zip(case.scenes, marks) for o, m in zip(s.objects, ms))
    monkeypatch.setattr(editing, "story_keyframes", lambda p, sentences, settings, seed: [
        render(s, WORLD) for s in frames[" ".join(sentences)]])
    metrics = evaluate_mixed(pipe, WORLD, "eval", 2, 12).metrics
    assert shrunk >= 5  # enough objects of each kind drawn with the other size
    assert metrics["exact_scene"] < 1.0
    assert metrics["overall"] < 1.0 if stated else metrics["overall"] == 1.0


def test_story_keyframes_follow_the_interleaved_layout(pipe, monkeypatch):
    scales = []

    def generate(*args, **kwargs):
        scales.append(kwargs["guidance_scale"])
        return generate_interleaved(*args, **kwargs)

    monkeypatch.setattr(editing, "generate_interleaved", generate)
    frames = story(random.Random(0), WORLD)
    settings = EvalSettings(image_steps=2, story_guidance_scale=0.5)
    images = editing.story_keyframes(pipe, [s for _, s in frames], settings, seed=0)
    assert len(images) == len(frames) and all(i.size == (pipe.resolution,) * 2 for i in images)
    assert scales == [0.5] * len(frames)  # every keyframe guided against the null story


def test_read_back_is_the_generation_ceiling_of_a_tokenizer(full_run):
    """A perfect tokenizer (reconstruction = the rendered scene) reads back fully right; an empty image reads
    back as nothing. The tokenizer task reports it for both splits."""
    cases = scene_cases(WORLD, "eval", 1, 8, "tokenizer")
    scenes = [c.scene for c in cases]
    perfect = read_back(scenes, [world_image(s, WORLD) for s in scenes], WORLD)
    assert all(m["overall"] and m["objects"] == 1.0 for _, m in perfect)
    blank = Image.new("RGB", (WORLD.image_size, WORLD.image_size), (128, 128, 128))
    assert not any(m["overall"] for _, m in read_back(scenes, [blank] * len(scenes), WORLD))
    for metrics in full_run[0]["tokenizer"].values():
        assert 0.0 <= metrics["scene_match"] <= metrics["objects"] + 1e-9 <= 1.0 + 1e-9


def test_mixed_reports_whether_unstated_sizes_are_kept(pipe, monkeypatch):
    """Last keyframes drawn with their unstated large objects small: each still matches its sentences (overall 1)
    but has changed a size the story had shown; `unstated_sizes_kept` counts that."""
    frames, changed = {}, 0
    for case in story_cases(WORLD, "eval", 2, 12):
        last = [not s for s in stated_sizes(case.scenes, case.sentences)[-1]]
        frames[" ".join(case.sentences)] = case.scenes[:-1] + [_shrink(case.scenes[-1], last)]
        changed += sum(o.size == "large" and m for o, m in zip(case.scenes[-1].objects, last))
    monkeypatch.setattr(editing, "story_keyframes", lambda p, sentences, settings, seed: [
        render(s, WORLD) for s in frames[" ".join(sentences)]])
    metrics = evaluate_mixed(pipe, WORLD, "eval", 2, 12).metrics
    assert changed >= 3 and metrics["overall"] == 1.0
    assert 0.5 < metrics["unstated_sizes_kept"] < 1.0
