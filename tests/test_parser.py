"""The classical scene parser (exact on rendered scenes, tolerant of blur, noise and specks) and the scoring
helpers built on it."""
import io
import random
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageFilter

from showo.data import WorldConfig, image_tensor, render, sample_scene
from showo.data.world import background_array, Scene
from showo.evaluation import answer_correct, match_scene, normalise_answer, parse
from showo.evaluation.parser import components

CONFIG = WorldConfig()


def _scenes(n: int, seed: int, config: WorldConfig = CONFIG) -> list:
    rng = random.Random(seed)
    return [sample_scene(rng, config, heldout=i % 5 == 0, split=None) for i in range(n)]


def _accuracy(scenes, degrade=lambda image: image, config: WorldConfig = CONFIG) -> dict[str, float]:
    """Per-object attribute accuracy (object matched by cell) and per-scene exactness."""
    hits = dict(colour=0, shape=0, size=0, position=0)
    exact = count = background = objects = 0
    for scene in scenes:
        parsed = parse(degrade(render(scene, config)), config)
        result = match_scene(parsed, scene)
        exact += result["overall"]
        count += result["count"]
        background += result["background"]
        by_cell = {(o.col, o.row): o for o in parsed.objects}
        for o in scene.objects:
            objects += 1
            if p := by_cell.get((o.col, o.row)):
                hits["position"] += 1
                for attr in ("colour", "shape", "size"):
                    hits[attr] += getattr(p, attr) == getattr(o, attr)
    out = {k: v / objects for k, v in hits.items()}
    out.update(scene=exact / len(scenes), count=count / len(scenes), background=background / len(scenes))
    return out


def test_parser_is_exact_on_rendered_scenes():
    accuracy = _accuracy(_scenes(500, seed=0))
    print("clean, 500 scenes:", accuracy)
    assert min(accuracy.values()) >= 0.99, accuracy


def _blur_noise_specks(seed: int):
    rng = np.random.default_rng(seed)
    colours = np.asarray(list(CONFIG.colours.values()), dtype=np.float64)

    def degrade(image: Image.Image) -> Image.Image:
        array = np.asarray(image.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float64)
        array = array + rng.normal(0, 6, array.shape)
        ys, xs = rng.integers(0, array.shape[0], 12), rng.integers(0, array.shape[1], 12)
        array[ys, xs] = colours[rng.integers(0, len(colours), 12)]  # stray single pixels
        return Image.fromarray(np.clip(np.round(array), 0, 255).astype(np.uint8))
    return degrade


def test_parser_tolerates_blur_noise_and_stray_pixels():
    accuracy = _accuracy(_scenes(200, seed=1), _blur_noise_specks(0))
    print("blur 0.8 + noise 6 + 12 stray pixels, 200 scenes:", accuracy)
    assert min(accuracy.values()) >= 0.97, accuracy


def test_parser_under_jpeg():
    def jpeg(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=75)
        return Image.open(buffer).convert("RGB")
    accuracy = _accuracy(_scenes(200, seed=2), jpeg)
    print("JPEG quality 75 (4:2:0 chroma), 200 scenes:", accuracy)
    assert min(accuracy.values()) >= 0.85, accuracy


def test_parser_accepts_pil_arrays_and_tensors_and_other_sizes():
    scene = _scenes(1, seed=3)[0]
    image = render(scene, CONFIG)
    expected = parse(image, CONFIG)
    assert parse(np.asarray(image), CONFIG) == expected
    tensor_parse = parse(image_tensor(image), CONFIG)
    assert [(o.colour, o.shape, o.size, o.col, o.row) for o in tensor_parse.objects] == [
        (o.colour, o.shape, o.size, o.col, o.row) for o in expected.objects]
    big = replace(CONFIG, image_size=128)
    accuracy = _accuracy(_scenes(40, seed=4, config=big), config=big)
    assert min(accuracy.values()) == 1.0, accuracy


def test_parser_on_empty_and_gradient_backgrounds():
    for name in CONFIG.backgrounds:
        for gradient in (-CONFIG.gradient, 0, CONFIG.gradient):
            scene = Scene(name, (), gradient, CONFIG.image_size)
            image = Image.fromarray(np.round(background_array(scene, CONFIG)).astype(np.uint8))
            parsed = parse(image, CONFIG)
            assert parsed.background == name and parsed.objects == ()


def test_components_are_four_connected():
    mask = np.zeros((6, 6), dtype=bool)
    mask[0:2, 0:2] = True
    mask[2, 2] = True  # touches the first block only diagonally
    mask[4:6, 1:5] = True
    labels = components(mask)
    assert labels.max() == 3 and labels[0, 0] != labels[2, 2] and len(np.unique(labels[4:6, 1:5])) == 1


def test_match_scene_scores():
    scene = next(s for s in _scenes(50, seed=5) if len(s.objects) == 3)
    parsed = parse(render(scene, CONFIG), CONFIG)
    perfect = match_scene(parsed, scene)
    assert perfect == {"objects": 1.0, "positions": 1.0, "sizes": 1.0, "colours": 1.0, "shapes": 1.0,
                       "count": True, "overall": True, "background": True}
    first, *rest = scene.objects
    other = next(c for c in CONFIG.colours if c != first.colour)
    recoloured = replace(scene, objects=(replace(first, colour=other), *rest))
    score = match_scene(parsed, recoloured)
    assert score["objects"] == pytest.approx(2 / 3) and score["shapes"] == 1.0 and not score["overall"]
    moved = replace(scene, objects=(replace(first, col=(first.col + 1) % 3), *rest))
    score = match_scene(parsed, moved)
    assert score["objects"] == 1.0 and score["positions"] == pytest.approx(2 / 3) and not score["overall"]
    resized = replace(scene, objects=(replace(first, size="large" if first.size == "small" else "small"), *rest))
    assert match_scene(parsed, resized)["sizes"] == pytest.approx(2 / 3) and not match_scene(parsed, resized)["overall"]
    unjudged = match_scene(parsed, resized, judge_size=[False, True, True])  # a size the prompt never stated
    assert unjudged["overall"] and unjudged["sizes"] == pytest.approx(2 / 3)
    assert not match_scene(parsed, resized, judge_size=[True, False, False])["overall"]
    with pytest.raises(ValueError, match="judge_size has 1 entries for 3"):
        match_scene(parsed, resized, judge_size=[True])
    fewer = replace(scene, objects=tuple(rest))
    score = match_scene(parsed, fewer)
    assert score["objects"] == 1.0 and not score["count"] and not score["overall"]


@pytest.mark.parametrize("qtype, predicted, gold, ok", [
    ("colour", "Red.", "red", True),
    ("colour", "red circle", "red", False),
    ("position", "Top-left", "top left", True),
    ("position", "the center", "centre", True),
    ("position", "upper right", "top right", True),
    ("count", "2", "two", True),
    ("count", "Three objects.", "three", True),
    ("count", "four", "three", False),
    ("yesno", "Yes, it is.", "yes", True),
    ("existence", "no", "yes", False),
    ("relation", "Left of", "left of", True),
    ("relation", "a red circle", "red circle", True),
    ("shape", "", "circle", False),
])
def test_answer_correct(qtype, predicted, gold, ok):
    assert answer_correct(qtype, predicted, gold) is ok


def test_normalise_answer():
    assert normalise_answer("  The Light-Grey  background! ") == "light gray background"


def test_assign_prefers_the_cell_over_the_size():
    """Two red circles drawn in the right cells at each other's size pair by cell (colour+shape, then cell, then
    size): swapping the cell and size weights went unseen."""
    from types import SimpleNamespace as Obj

    from showo.evaluation import assign

    targets = [Obj(colour="red", shape="circle", size="small", col=0, row=0),
               Obj(colour="red", shape="circle", size="large", col=2, row=2)]
    found = [Obj(colour="red", shape="circle", size="large", col=0, row=0),
             Obj(colour="red", shape="circle", size="small", col=2, row=2)]
    assert assign(targets, found) == [(0, 0), (1, 1)]
    found[1] = Obj(colour="blue", shape="circle", size="small", col=2, row=2)  # another kind never pairs
    assert assign(targets, found) == [(0, 0)]
