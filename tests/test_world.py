"""The procedural world: determinism, held-out pairs, disjoint splits, language that agrees with the images,
consistent stories, and the seeded sample streams."""
import hashlib
import random
import re
from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from showo.data import (NUMBERS, POSITIONS, QTYPES, WorldConfig, WorldStream, captions, image_tensor, lm_text,
                        position_name, qa_pairs, relation, render, sample_scene, split_seed, story, t2i_prompt)
from showo.data.language import AT, MAX_WORDS, RELATIONS, plural, stated_sizes
from showo.data.world import cell_of, fits, has_heldout, layout_split, scene_key
from showo.errors import ConfigError
from showo.evaluation.parser import parse

CONFIG = WorldConfig()
HELD = set(CONFIG.heldout_pairs)
_ALT = "|".join
_POS = _ALT(sorted(POSITIONS, key=len, reverse=True))
OBJECT_RE = re.compile(rf"(?:(small|large) )?({_ALT(CONFIG.colours)}) ({_ALT(CONFIG.shapes)}) "
                       rf"(?:at the |on the |in the )?({_POS})\b", re.IGNORECASE)


def _mentions(text: str) -> Counter:
    """(size or None, colour, shape, position) of every 'size colour shape position' phrase in a text."""
    return Counter((s and s.lower(), c.lower(), sh, p) for s, c, sh, p in OBJECT_RE.findall(text))


def _truth(scene, size: bool) -> Counter:
    return Counter((o.size if size else None, o.colour, o.shape, position_name(o)) for o in scene.objects)


def test_same_seed_same_scene_bytes_and_text():
    for seed in range(20):
        a, b = random.Random(seed), random.Random(seed)
        scene = sample_scene(a, CONFIG)
        assert scene == sample_scene(b, CONFIG)
        assert render(scene, CONFIG).tobytes() == render(scene, CONFIG).tobytes()
        assert (captions(scene, a), t2i_prompt(scene, a), qa_pairs(scene, a)) == (
            captions(scene, b), t2i_prompt(scene, b), qa_pairs(scene, b))
    assert story(random.Random(3)) == story(random.Random(3))
    assert lm_text(random.Random(3)) == lm_text(random.Random(3))
    images = {render(sample_scene(random.Random(seed), CONFIG), CONFIG).tobytes() for seed in range(20)}
    assert len(images) == 20


PINNED = "d8dfc297fdeea51e"


def test_pinned_output():
    """A change here changes every shipped sample and evaluation set: bump deliberately, never by accident."""
    rng = random.Random(1234)
    scene = sample_scene(rng, CONFIG)
    digest = hashlib.sha256(render(scene, CONFIG).tobytes() + t2i_prompt(scene, rng).encode()).hexdigest()
    assert digest[:16] == PINNED, digest


def test_heldout_pairs_never_in_train_and_always_in_heldout():
    rng = random.Random(0)
    train = [sample_scene(rng, CONFIG) for _ in range(2000)]
    seen = {(o.colour, o.shape) for s in train for o in s.objects}
    assert not seen & HELD
    assert seen == set(CONFIG.train_pairs)
    heldout = [sample_scene(rng, CONFIG, heldout=True) for _ in range(300)]
    assert all(has_heldout(s, CONFIG) for s in heldout)
    assert {(o.colour, o.shape) for s in heldout for o in s.objects} & HELD == HELD
    assert Counter(len(s.objects) for s in train).keys() == {1, 2, 3, 4}


def test_train_text_never_names_a_heldout_pair():
    banned = [f"{c} {s}" for c, s in HELD] + [f"{s} {c}" for c, s in HELD]
    for kind in ("t2i", "mmu", "lm", "story"):
        stream = WorldStream.for_split("train", CONFIG, kind)
        for i in range(150 if kind != "story" else 60):
            sample = stream.sample(i)
            text = " ".join(str(sample.get(k, "")) for k in ("prompt", "question", "answer", "text"))
            text = (text + " " + " ".join(sample.get("sentences", []))).lower()
            assert not [b for b in banned if b in text], text


def test_splits_never_share_a_scene():
    assert len({split_seed(s) for s in ("train", "eval", "heldout")}) == 3
    train = {scene_key(WorldStream.for_split("train", CONFIG).scene(i)) for i in range(400)}
    evals = [WorldStream.for_split("eval", CONFIG).scene(i) for i in range(200)]
    assert all(layout_split(s, CONFIG) == "eval" and not has_heldout(s, CONFIG) for s in evals)
    assert not train & {scene_key(s) for s in evals}
    assert all(has_heldout(WorldStream.for_split("heldout", CONFIG).scene(i), CONFIG) for i in range(100))


def test_scene_geometry_is_unambiguous():
    rng = random.Random(7)
    size, border, third = CONFIG.image_size, CONFIG.px(CONFIG.border), CONFIG.image_size / 3
    for _ in range(500):
        scene = sample_scene(rng, CONFIG, split=None)
        assert len({(o.col, o.row) for o in scene.objects}) == len(scene.objects)
        for o in scene.objects:
            assert fits(o, [p for p in scene.objects if p is not o], CONFIG)
            x0, y0, x1, y1 = o.bbox
            assert min(x0, y0) >= border and max(x1, y1) <= size - border
            assert cell_of(o.cx, o.cy, size) == (o.col, o.row)
            # centres stay >= 4 px inside their cell, so a few pixels of error never change a position word
            assert min(abs(o.cx - k * third) for k in (1, 2)) >= 4 and min(abs(o.cy - k * third) for k in (1, 2)) >= 4
        for a in scene.objects:
            for b in scene.objects:
                r = relation(a, b)
                if r in ("left of", "right of"):
                    assert abs(a.cx - b.cx) >= 12 and (r == "left of") == (a.cx < b.cx)
                if r in ("above", "below"):
                    assert abs(a.cy - b.cy) >= 12 and (r == "above") == (a.cy < b.cy)


def test_captions_and_prompts_name_every_object():
    rng = random.Random(11)
    for _ in range(300):
        scene = sample_scene(rng, CONFIG)
        texts = captions(scene, rng)
        prompt = t2i_prompt(scene, rng)
        main = _mentions(texts[0])
        assert Counter(k[1:] for k in main) == Counter(k[1:] for k in _truth(scene, size=False)), texts[0]
        assert _mentions(prompt) == _truth(scene, size=True), prompt
        assert all(len(t.split()) <= MAX_WORDS for t in texts + [prompt])
        assert len(texts) >= 4 and len(set(texts)) == len(texts)


def _resolve(ref: str, scene):
    """The objects a referring phrase ('large red circle', 'object at the top left') can mean."""
    position = next((p for p, phrase in AT.items() if ref.endswith(phrase)), None)
    words = ref.replace(AT[position], "").split() if position else ref.split()
    out = []
    for o in scene.objects:
        if position and position_name(o) != position:
            continue
        if all(w in (o.size, o.colour, o.shape, "object") for w in words):
            out.append(o)
    return out


def _one(ref, scene):
    found = _resolve(ref, scene)
    assert len(found) == 1, (ref, scene)
    return found[0]


def _answer(question: str, scene) -> str:
    """An independent reading of every question template, answered from a (parsed) scene."""
    objs, q = scene.objects, question.rstrip("?")
    yes = {True: "yes", False: "no"}
    if m := re.fullmatch(r"How many (objects are there|shapes are in the image|objects are in the picture)", q):
        return NUMBERS[len(objs)]
    if m := re.fullmatch(r"How many (\w+) objects are there", q):
        return NUMBERS[sum(o.colour == m[1] for o in objs)]
    if m := re.fullmatch(r"How many (\w+) are there", q):
        return NUMBERS[sum(plural(o.shape) == m[1] for o in objs)]
    if m := re.fullmatch(r"(?:Is there|Does the image contain) an? (\w+) (\w+)(?: in the image)?", q):
        return yes[any((o.colour, o.shape) == (m[1], m[2]) for o in objs)]
    if m := re.fullmatch(r"(?:What colour is|Which colour is|What is the colour of) the (.+)", q):
        return _one(m[1], scene).colour
    if m := re.fullmatch(r"(?:What shape is|Which shape is|What kind of shape is) the (.+)", q):
        return _one(m[1], scene).shape
    if m := re.fullmatch(r"(?:Where is|In which part of the image is) the (.+?)(?: located)?", q):
        if " relative to the " not in m[1]:
            return position_name(_one(m[1], scene))
    if m := re.fullmatch(r"Where is the (.+) relative to the (.+)", q):
        return relation(_one(m[1], scene), _one(m[2], scene))
    if m := re.fullmatch(rf"(?:What is|Which object is) ({_ALT(RELATIONS)}) the (.+)", q):
        b = _one(m[2], scene)
        (a,) = [o for o in objs if relation(o, b) == m[1]]
        return f"{a.colour} {a.shape}"
    if m := re.fullmatch(rf"Is the (.+) ({_ALT(RELATIONS)}) the (.+)", q):
        return yes[relation(_one(m[1], scene), _one(m[3], scene)) == m[2]]
    if m := re.fullmatch(rf"Is the (.+) ({_ALT(AT.values())})", q):
        return yes[position_name(_one(m[1], scene)) == next(p for p, v in AT.items() if v == m[2])]
    if m := re.fullmatch(r"Is the (.+) (small|large)", q):
        return yes[_one(m[1], scene).size == m[2]]
    if m := re.fullmatch(rf"Is the (.+) ({_ALT(CONFIG.colours)})", q):
        return yes[_one(m[1], scene).colour == m[2]]
    raise AssertionError(f"unknown question template: {question}")


def test_qa_answers_agree_with_the_parsed_image():
    qtypes, answers = Counter(), Counter()
    for i in range(150):
        scene = sample_scene(random.Random(i), CONFIG, heldout=i % 4 == 0, split=None)
        parsed = parse(render(scene, CONFIG), CONFIG).to_scene()
        pairs = qa_pairs(scene, random.Random(i), CONFIG, heldout=i % 4 == 0)
        # the parse carries the same facts, so the same seed asks the same questions with the same answers
        assert qa_pairs(parsed, random.Random(i), CONFIG, heldout=i % 4 == 0) == pairs
        for question, answer, qtype in pairs:
            assert _answer(question, parsed) == answer, (question, answer, scene)
            qtypes[qtype] += 1
            answers[answer] += 1
    assert set(qtypes) == set(QTYPES)
    assert 0.35 < answers["yes"] / (answers["yes"] + answers["no"]) < 0.65


def _changed(before, after):
    key = lambda o: (o.colour, o.shape, o.size, o.col, o.row)  # noqa: E731
    return Counter(map(key, before.objects)) - Counter(map(key, after.objects)), \
        Counter(map(key, after.objects)) - Counter(map(key, before.objects))


def test_stories_have_consistent_keyframes():
    lengths, flags = Counter(), Counter()
    for i in range(120):
        frames = story(random.Random(i), CONFIG, heldout=i % 6 == 0)
        lengths[len(frames)] += 1
        assert len({(s.background, s.gradient) for s, _ in frames}) == 1
        assert Counter(k[1:] for k in _mentions(frames[0][1])) == Counter(
            k[1:] for k in _truth(frames[0][0], size=False)), frames[0][1]
        stated = stated_sizes([f for f, _ in frames], [t for _, t in frames])
        # the opening caption names every size or none
        assert set(stated[0]) == {bool(re.search(r"\b(small|large)\b", frames[0][1]))}, frames[0][1]
        for k, ((before, _), (after, sentence)) in enumerate(zip(frames, frames[1:])):
            was, now = dict(zip(before.objects, stated[k])), dict(zip(after.objects, stated[k + 1]))
            assert all(now[o] == was[o] for o in after.objects if o in was)  # a stated size stays stated
            gone, new = _changed(before, after)
            m = re.fullmatch(r"(?:The (.+) (moves|slides) to the (.+)|(?:A|An) (.+) (appears|shows up) (.+)|"
                             r"The (.+) (turns|becomes|changes to) (\w+)|The (.+) (disappears|vanishes))\.", sentence)
            assert m, sentence
            if m[2]:  # move: one object, same look, new cell named by the sentence
                (old,), (moved,) = gone, new
                assert old[:3] == moved[:3] and position_name(_one(m[1], before)) != m[3]
                assert position_name(_one(m[1], before)) == position_name(
                    next(o for o in before.objects if (o.col, o.row) == old[3:]))
                assert POSITIONS[moved[4] * 3 + moved[3]] == m[3]
                (after_obj,) = [o for o in after.objects if o not in was]
                flags[now[after_obj] == (was[_one(m[1], before)] or moved[2] in m[1].split())] += 1
            elif m[5]:  # appear
                assert not gone and sum(new.values()) == 1
                assert [now[o] for o in after.objects if o not in was] == [True]  # 'a small red square appears'
                assert _mentions(f"{m[4]} {m[6]}") == Counter([(k[2], k[0], k[1], POSITIONS[k[4] * 3 + k[3]])
                                                                for k in new])
            elif m[8]:  # recolour
                (old,), (changed,) = gone, new
                assert old[1:] == changed[1:] and changed[0] == m[9] and _one(m[7], before).colour == old[0]
                (after_obj,) = [o for o in after.objects if o not in was]
                flags[now[after_obj] == (was[_one(m[7], before)] or changed[2] in m[7].split())] += 1
            else:  # disappear
                assert not new and sum(gone.values()) == 1
                assert (_one(m[10], before).colour, _one(m[10], before).shape) == next(iter(gone))[:2]
        if i < 30:  # every keyframe image shows exactly its scene
            for scene, _ in frames:
                assert _truth(parse(render(scene, CONFIG), CONFIG).to_scene(), True) == _truth(scene, True)
    assert set(lengths) == {3, 4}
    assert flags[True] > 50 and not flags[False]  # a move or recolour states a size its phrase names


def test_stream_samples_are_deterministic_and_well_formed():
    for kind in ("t2i", "mmu", "lm", "story"):
        a, b = WorldStream.for_split("train", CONFIG, kind), WorldStream.for_split("train", CONFIG, kind)
        x, y = a.sample(17), b.sample(17)
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]) if torch.is_tensor(x[key]) else x[key] == y[key]
    t2i = WorldStream.for_split("train", CONFIG, "t2i").sample(3)
    assert t2i["image"].shape == (3, 64, 64) and t2i["image"].dtype == torch.float32
    assert -1 <= t2i["image"].min() and t2i["image"].max() <= 1
    stream = WorldStream.for_split("train", CONFIG, "t2i")
    assert torch.equal(image_tensor(render(stream.scene(3), CONFIG)), t2i["image"])
    frames = WorldStream.for_split("eval", CONFIG, "story").sample(0)
    assert frames["images"].shape[0] == len(frames["sentences"]) in (3, 4)
    mmu = [WorldStream.for_split("train", CONFIG, "mmu").sample(i) for i in range(200)]
    assert {m["qtype"] for m in mmu} == set(QTYPES) | {"caption"}
    big = WorldStream.for_split("train", WorldConfig(image_size=128), "t2i").sample(0)
    assert big["image"].shape == (3, 128, 128)


def test_stream_sharding_and_resume():
    ranks = [WorldStream(0, CONFIG, "lm", rank=r, world_size=2) for r in range(2)]
    seen = [[s["index"] for _, s in zip(range(4), iter(r))] for r in ranks]
    assert seen == [[0, 2, 4, 6], [1, 3, 5, 7]]
    stream = WorldStream(0, CONFIG, "lm")
    it = iter(stream)
    first = [next(it)["index"] for _ in range(3)]
    resumed = WorldStream(0, CONFIG, "lm")
    resumed.load_state_dict(stream.state_dict())
    assert first == [0, 1, 2] and next(iter(resumed)) == next(it)
    with pytest.raises(Exception):
        WorldStream(1, CONFIG, "lm").load_state_dict(stream.state_dict())
    loader = DataLoader(WorldStream(0, CONFIG, "t2i"), batch_size=2, num_workers=2)
    batches = [batch for _, batch in zip(range(4), loader)]
    assert sorted(int(i) for b in batches for i in b["index"]) == list(range(8))


def test_qtype_weights_shift_the_question_mix_and_leave_the_default_draw_alone():
    def asked(stream, n=300):
        return [(d["question"], d["answer"], d["qtype"]) for d in (stream.sample(i) for i in range(n))]

    plain = asked(WorldStream.for_split("train", CONFIG, "mmu"), 50)
    # the unweighted draw is the one every earlier recipe trained on (pinned before qtype weights existed)
    assert hashlib.sha256(repr(plain).encode()).hexdigest()[:16] == "b218eb4d90969bc7"
    counts = {}
    for weights in (None, {"relation": 4.0, "position": 4}):
        stream = WorldStream.for_split("train", CONFIG, "mmu", caption_fraction=0.0, qtype_weights=weights)
        counts[bool(weights)] = Counter(qtype for _, _, qtype in asked(stream))
    share = {k: (c["relation"] + c["position"]) / sum(c.values()) for k, c in counts.items()}
    # these 300 rows: 0.22 unweighted (relation needs two objects), 0.55 with both weighted 4
    assert share[False] < 0.4 < 0.5 < share[True], share
    assert set(counts[True]) == set(QTYPES)  # the other types are still asked
    for bad, match in (({"colour": 0}, "colour.*> 0"), ({"size": 1}, "unknown question type 'size'"),
                       ({"shape": "2"}, "shape.*> 0"), ({"shape": True}, "shape.*> 0")):
        with pytest.raises(ConfigError, match=match):
            WorldStream.for_split("train", CONFIG, "mmu", qtype_weights=bad)


@pytest.mark.parametrize("kwargs, match", [
    ({"gradient": -1}, "gradient must be >= 0"),  # was: empty range for randrange() while drawing
    ({"eval_fraction": 1.0}, r"eval_fraction must be in \(0, 1\)"),  # was: the train split spun, then gave up
    ({"eval_fraction": 0.0}, r"eval_fraction must be in \(0, 1\)"),
    ({"sizes": {"small": 0.0}}, r"sizes must be fractions of the image in \(0, 1\]"),
    ({"border": -0.1}, "border must be >= 0"),
    ({"image_size": 64.5}, "image_size must be an integer"),
])
def test_world_values_the_generator_cannot_use_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        WorldConfig(**kwargs)


def test_no_heldout_pairs_means_no_heldout_split_and_full_grids_still_tell_stories():
    with pytest.raises(ConfigError, match="no 'heldout' split"):  # was: IndexError when sampling it
        WorldStream.for_split("heldout", WorldConfig(heldout_pairs=()), "t2i")
    full = WorldStream.for_split("train", WorldConfig(min_objects=9, max_objects=9), "story")
    assert all(len(full.sample(i)["sentences"]) >= 2 for i in range(8))  # was: IndexError in _free_cell


def test_language_texts_follow_their_split():
    """The lm stream drew training-split scenes for every split: held-out texts never named a held-out pair."""
    config = WorldConfig()
    named = lambda text: any(f"{c} {s}" in text for c, s in config.heldout_pairs)  # noqa: E731
    heldout = WorldStream.for_split("heldout", config, "lm")
    assert sum(named(heldout.sample(i)["text"]) for i in range(40)) >= 30
    train = WorldStream.for_split("train", config, "lm")
    texts = [train.sample(i)["text"] for i in range(40)]
    assert not any(named(t) for t in texts)
    # the training texts every recipe read are unchanged (pinned before the split was passed on)
    assert hashlib.sha256(repr(texts).encode()).hexdigest()[:16] == "567145c486cdbbb0"
