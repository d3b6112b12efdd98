"""Templated English about world scenes: captions, text-to-image prompts, question-answer pairs, stories, LM text.

The vocabulary is closed (colour, shape, size and position words plus a few dozen function words) and captions
and prompts stay within `MAX_WORDS` words, so a model with a ~32-token text window sees them whole. Several
templates per kind vary the phrasing. Objects are always listed in reading order (row, then column).
Training text never names a held-out colour-shape pair, not even in a question whose answer is "no".
"""
from __future__ import annotations

import random
from dataclasses import replace

from ..errors import ConfigError
from ..fields import is_number
from .world import (POSITIONS, Scene, SceneObject, WorldConfig, admissible, fits, make_object, ordered,
                    position_name, relation, sample_scene)

MAX_WORDS = 24
NUMBERS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
QTYPES: tuple[str, ...] = ("colour", "shape", "count", "position", "existence", "relation", "yesno")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
AT = {name: ("on the " if name in ("left", "right") else "in the " if name == "centre" else "at the ") + name
      for name in POSITIONS}  # "at the top left", "on the left", "in the centre"
_REFS = (("shape",), ("colour", "shape"), ("size", "shape"), ("size", "colour", "shape"), ("colour",),
         ("size", "colour"), ("size",))


def plural(word: str) -> str:
    return word + ("es" if word.endswith(("s", "x", "sh", "ch")) else "s")


def article(phrase: str) -> str:
    """'a' or 'an' for the phrase ('an orange circle')."""
    return "an" if phrase[0] in "aeiou" else "a"


def noun(obj: SceneObject, size: bool = True) -> str:
    """'large red circle' (or 'red circle' with size=False)."""
    return f"{obj.size} {obj.colour} {obj.shape}" if size else f"{obj.colour} {obj.shape}"


def at(obj: SceneObject) -> str:
    """The object's place as a phrase: 'at the top left', 'on the right', 'in the centre'."""
    return AT[position_name(obj)]


def _a(phrase: str) -> str:
    return f"{article(phrase)} {phrase}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fits(text: str, max_words: int) -> bool:
    return len(text.split()) <= max_words


def _describe(obj: SceneObject, attrs: tuple[str, ...]) -> str:
    words = [getattr(obj, a) for a in ("size", "colour") if a in attrs]
    return " ".join(words + [obj.shape if "shape" in attrs else "object"])


def refer(obj: SceneObject, scene: Scene, exclude: tuple[str, ...] = (), rng: random.Random | None = None,
          ) -> str | None:
    """A phrase that picks out `obj` alone in `scene` ('circle', 'red circle', 'object at the top left').

    Attributes in `exclude` ('colour', 'shape', 'size', 'position') are not used, so a question never gives
    its answer away. Without rng the shortest phrase; with rng, half the time a random valid one. None when
    no phrase is unique.
    """
    options = []
    for attrs in _REFS:
        if not set(attrs) & set(exclude):
            matches = sum(all(getattr(o, a) == getattr(obj, a) for a in attrs) for o in scene.objects)
            if matches == 1:
                options.append(_describe(obj, attrs))
    if "position" not in exclude:  # every object has a cell of its own
        options.append(f"{_describe(obj, tuple(a for a in ('colour', 'shape') if a not in exclude))} {at(obj)}")
    if not options:
        return None
    return options[0] if rng is None or rng.random() < 0.5 else rng.choice(options)


def _main_captions(objs: tuple[SceneObject, ...]) -> list[str]:
    """Captions naming every object's colour, shape and position."""
    n = len(objs)
    bare = [f"{_a(noun(o, False))} {at(o)}" for o in objs]
    return [
        _cap(_join([f"{_a(noun(o))} {at(o)}" for o in objs])) + ".",
        _cap(_join(bare)) + ".",
        (f"There is {bare[0]}." if n == 1 else f"{_cap(NUMBERS[n])} objects: {', '.join(bare)}."),
        _cap(", ".join(f"{noun(o)} {position_name(o)}" for o in objs)) + ".",
        f"An image of {_join(bare)}.",
    ]  # index 3 is the compact list (the only one short enough for four objects)


def _other_captions(scene: Scene, objs: tuple[SceneObject, ...]) -> list[str]:
    """Partial captions: background, counts, sizes, one relation."""
    n, bg = len(objs), f"{_a(scene.background)} background"
    shapes = sorted({o.shape for o in objs}, key=[o.shape for o in objs].index)
    tally = [_a(s) if (k := sum(o.shape == s for o in objs)) == 1 else f"{NUMBERS[k]} {plural(s)}" for s in shapes]
    out = [
        _cap(_join([_a(noun(o, False)) for o in objs])) + f" on {bg}.",
        f"{_cap(NUMBERS[n])} object{'s' if n > 1 else ''} on {bg}.",
        f"{_cap(NUMBERS[n])} shape{'s' if n > 1 else ''}: {_join(tally)}.",
        _cap(_join([_a(noun(o)) for o in objs])) + ".",
    ]
    related = [(a, b, r) for a in objs for b in objs if a is not b and (r := relation(a, b))]
    if related:
        a, b, r = related[0]
        out.append(f"{_cap(_a(noun(a, False)))} is {r} {_a(noun(b, False))}.")
    return out


def describe(scene: Scene, rng: random.Random, max_words: int = MAX_WORDS) -> str:
    """One full sentence naming every object's colour, shape and position (compact list if nothing else fits)."""
    objs = ordered(scene.objects)
    options = _main_captions(objs)
    sentences = [c for i, c in enumerate(options) if i != 3 and _fits(c, max_words)]
    return rng.choice(sentences) if sentences else options[3]


def captions(scene: Scene, rng: random.Random, max_words: int = MAX_WORDS) -> list[str]:
    """Several captions of a scene; the first names every object's colour, shape and position."""
    objs = ordered(scene.objects)
    main = rng.choice([c for c in _main_captions(objs) if _fits(c, max_words)])
    others = [c for c in _other_captions(scene, objs) if _fits(c, max_words)]
    rng.shuffle(others)
    return [main] + others


def t2i_prompt(scene: Scene, rng: random.Random, max_words: int = MAX_WORDS) -> str:
    """A prompt that pins the image down: size, colour, shape and position of every object (count implied)."""
    objs = ordered(scene.objects)
    n = len(objs)
    compact = ", ".join(f"{noun(o)} {position_name(o)}" for o in objs)
    options = [compact, _join([f"{_a(noun(o))} {at(o)}" for o in objs]),
               f"{NUMBERS[n]} object{'s' if n > 1 else ''}: {compact}"]
    return rng.choice([p for p in options if _fits(p, max_words)])


def _colours_for(shape: str, config: WorldConfig, heldout: bool) -> list[str]:
    held = set(config.heldout_pairs)
    return [c for c in config.colours if heldout or (c, shape) not in held]


def _q_colour(scene, objs, rng, config, heldout):
    o = rng.choice(objs)
    template = rng.choice(("What colour is the {}?", "Which colour is the {}?", "What is the colour of the {}?"))
    return template.format(refer(o, scene, ("colour",), rng)), o.colour


def _q_shape(scene, objs, rng, config, heldout):
    o = rng.choice(objs)
    template = rng.choice(("What shape is the {}?", "Which shape is the {}?", "What kind of shape is the {}?"))
    return template.format(refer(o, scene, ("shape",), rng)), o.shape


def _q_count(scene, objs, rng, config, heldout):
    kind = rng.randrange(3)
    if kind == 0:
        q = rng.choice(("How many objects are there?", "How many shapes are in the image?",
                        "How many objects are in the picture?"))
        return q, NUMBERS[len(objs)]
    attr = "colour" if kind == 1 else "shape"
    values = list(config.colours) if kind == 1 else list(config.shapes)
    value = rng.choice([getattr(o, attr) for o in objs]) if rng.random() < 0.7 else rng.choice(values)
    q = f"How many {value} objects are there?" if kind == 1 else f"How many {plural(value)} are there?"
    return q, NUMBERS[sum(getattr(o, attr) == value for o in objs)]


def _q_position(scene, objs, rng, config, heldout):
    known = [(o, r) for o in objs if (r := refer(o, scene, ("position",), rng))]
    if not known:
        return None
    o, ref = rng.choice(known)
    template = rng.choice(("Where is the {}?", "In which part of the image is the {}?", "Where is the {} located?"))
    return template.format(ref), position_name(o)


def _q_existence(scene, objs, rng, config, heldout):
    present = {(o.colour, o.shape) for o in objs}
    if rng.random() < 0.5:
        (c, s), answer = rng.choice(sorted(present)), "yes"
    else:
        absent = [p for p in (config.pairs if heldout else config.train_pairs) if p not in present]
        (c, s), answer = rng.choice(absent), "no"
    template = rng.choice(("Is there {} {}?", "Is there {} {} in the image?", "Does the image contain {} {}?"))
    return template.format(article(c), f"{c} {s}"), answer


def _related(scene, objs, rng):
    """(a, b, relation, ref of a, ref of b) for a clear-cut pair, refs without position words; None if none."""
    pairs = [(a, b, r) for a in objs for b in objs if a is not b and (r := relation(a, b))]
    rng.shuffle(pairs)
    for a, b, r in pairs:
        ra, rb = refer(a, scene, ("position",), rng), refer(b, scene, ("position",), rng)
        if ra and rb:
            return a, b, r, ra, rb
    return None


def _q_relation(scene, objs, rng, config, heldout):
    if not (found := _related(scene, objs, rng)):
        return None
    a, b, r, ra, rb = found
    if rng.random() < 0.5 and sum(relation(o, b) == r for o in objs) == 1:
        return rng.choice(("What is {} the {}?", "Which object is {} the {}?")).format(r, rb), noun(a, False)
    return f"Where is the {ra} relative to the {rb}?", r


def _q_yesno(scene, objs, rng, config, heldout):
    truth = rng.random() < 0.5
    kind = rng.choice(("colour", "position", "size", "relation"))
    if kind == "relation" and (found := _related(scene, objs, rng)):
        a, b, r, ra, rb = found
        return f"Is the {ra} {r if truth else OPPOSITE[r]} the {rb}?", "yes" if truth else "no"
    o = rng.choice(objs)
    if kind == "position" and (ref := refer(o, scene, ("position",), rng)):
        name = position_name(o) if truth else rng.choice([p for p in POSITIONS if p != position_name(o)])
        return f"Is the {ref} {AT[name]}?", "yes" if truth else "no"
    if kind == "size" and len(config.sizes) > 1:
        size = o.size if truth else rng.choice([s for s in config.sizes if s != o.size])
        return f"Is the {refer(o, scene, ('size',), rng)} {size}?", "yes" if truth else "no"
    wrong = [c for c in _colours_for(o.shape, config, heldout) if c != o.colour]
    colour = o.colour if truth or not wrong else rng.choice(wrong)
    return f"Is the {refer(o, scene, ('colour',), rng)} {colour}?", "yes" if colour == o.colour else "no"


_QUESTIONS = {"colour": _q_colour, "shape": _q_shape, "count": _q_count, "position": _q_position,
              "existence": _q_existence, "relation": _q_relation, "yesno": _q_yesno}


def check_qtype_weights(weights: dict[str, float], what: str = "qtype weights") -> dict[str, float]:
    """Question-type weights as floats, after checking they map qtypes to positive numbers (`what` names them
    in the error)."""
    if not isinstance(weights, dict):
        raise ConfigError(f"{what} must be a mapping of question type to weight, got {weights!r}")
    for name, weight in weights.items():
        if name not in QTYPES:
            raise ConfigError(f"unknown question type {name!r} in {what} (known: {', '.join(QTYPES)})")
        if not is_number(weight) or not weight > 0:
            raise ConfigError(f"{what}: the weight of {name!r} must be a number > 0, got {weight!r}")
    return {name: float(weight) for name, weight in weights.items()}


def qa_pairs(scene: Scene, rng: random.Random, config: WorldConfig | None = None, heldout: bool = False,
             ) -> list[tuple[str, str, str]]:
    """(question, answer, qtype) pairs, about one per qtype (two for count and yesno) where the scene allows.

    Answers come from a closed set: colour, shape and position names, number words, 'yes'/'no', relation
    words ('left of', 'above'...) and 'colour shape' phrases. heldout=False never mentions a held-out pair.
    """
    config = config or WorldConfig()
    objs = ordered(scene.objects)
    out = []
    for qtype in QTYPES + ("count", "yesno"):
        if qa := _QUESTIONS[qtype](scene, objs, rng, config, heldout):
            out.append((qa[0], qa[1], qtype))
    return out


def _with(prev: Scene, objects: list[SceneObject]) -> Scene:
    return Scene(prev.background, ordered(objects), prev.gradient, prev.image_size)


def _free_cell(prev: Scene, rng: random.Random) -> tuple[int, int]:
    taken = {(o.col, o.row) for o in prev.objects}
    return rng.choice([(c, r) for r in range(3) for c in range(3) if (c, r) not in taken])


def _event(prev: Scene, config: WorldConfig, rng: random.Random, heldout: bool) -> tuple[Scene, str] | None:
    """One change to a scene (move / appear / recolour / disappear) and the sentence that says it."""
    objs = list(prev.objects)
    full = len(objs) == 9  # every cell of the 3x3 grid taken: nothing can move or appear
    kinds = ["move", "recolour"][full:] + (["appear"] if len(objs) < config.max_objects and not full else []) + (
        ["disappear"] if len(objs) > 1 else [])
    kind = rng.choice(kinds)
    if kind == "appear":
        colour, shape = rng.choice(config.pairs if heldout else config.train_pairs)
        new = make_object(config, shape, colour, rng.choice(list(config.sizes)), *_free_cell(prev, rng), rng)
        if not fits(new, objs, config):
            return None
        return _with(prev, objs + [new]), f"{_cap(_a(noun(new)))} {rng.choice(('appears', 'shows up'))} {at(new)}."
    obj = rng.choice(objs)
    rest = [o for o in objs if o is not obj]
    ref = refer(obj, prev, rng=rng)
    if kind == "move":
        new = make_object(config, obj.shape, obj.colour, obj.size, *_free_cell(prev, rng), rng)
        if not fits(new, rest, config):
            return None
        return _with(prev, rest + [new]), f"The {ref} {rng.choice(('moves', 'slides'))} to the {position_name(new)}."
    if kind == "recolour":
        colours = [c for c in _colours_for(obj.shape, config, heldout) if c != obj.colour]
        if not colours:
            return None
        colour = rng.choice(colours)
        verb = rng.choice(("turns", "becomes", "changes to"))
        return _with(prev, rest + [replace(obj, colour=colour)]), f"The {ref} {verb} {colour}."
    return _with(prev, rest), f"The {ref} {rng.choice(('disappears', 'vanishes'))}."


def story(rng: random.Random, config: WorldConfig | None = None, heldout: bool = False,
          split: str | None = "train") -> list[tuple[Scene, str]]:
    """3-4 keyframes: a caption of the opening scene, then one sentence per change (move, appear, recolour,
    disappear). Every keyframe obeys the same held-out/split rules as `sample_scene`."""
    config = config or WorldConfig()
    opening = replace(config, max_objects=max(config.min_objects, config.max_objects - 1))
    for _ in range(100):
        scene = sample_scene(rng, opening, heldout, split)
        frames = [(scene, describe(scene, rng))]
        length = rng.choice((3, 4))
        for _ in range(50 * length):
            step = _event(frames[-1][0], config, rng, heldout)
            if step and admissible(step[0], config, heldout, split):
                frames.append(step)
            if len(frames) == length:
                return frames
    raise RuntimeError("could not build a story under these constraints")


def stated_sizes(scenes: list[Scene], sentences: list[str]) -> list[list[bool]]:
    """For each keyframe of a `story`, whether its text so far states each object's size (`scene.objects` order).

    The opening caption states every size or none (`describe`); an appearing object's sentence states its size;
    a move or recolour states it when its referring phrase does; a stated size stays stated. Sizes never stated
    are free: a keyframe drawn with either size still matches its sentences.
    """
    stated = [[noun(o).lower() in sentences[0].lower() for o in scenes[0].objects]]
    for before, after, sentence in zip(scenes, scenes[1:], sentences[1:]):
        known = dict(zip(before.objects, stated[-1]))
        named = sentence.lower().rstrip(".").split()  # the sentence is about the changed object only
        flags = []
        for obj, pred in zip(after.objects, predecessors(before, after)):
            if pred is obj:  # unchanged
                flags.append(known[obj])
            else:  # moved or recoloured (pred), or new (None)
                flags.append((pred is not None and known[pred]) or obj.size in named)
        stated.append(flags)
    return stated


def predecessors(before: Scene, after: Scene) -> list[SceneObject | None]:
    """For each object of a story keyframe `after` (one `_event` after `before`), the object it was in `before`:
    itself when unchanged, the moved or recoloured object for the changed one, None for one that appeared."""
    gone = [o for o in before.objects if o not in after.objects]
    return [o if o in before.objects else (gone[0] if gone else None) for o in after.objects]


def lm_text(rng: random.Random, config: WorldConfig | None = None, heldout: bool = False,
            split: str | None = "train") -> str:
    """Plain training text about the world: a story, a caption of another scene, and one question with its answer;
    its scenes obey the held-out/split rules of `sample_scene`."""
    config = config or WorldConfig()
    parts = [sentence for _, sentence in story(rng, config, heldout, split)]
    scene = sample_scene(rng, config, heldout, split)
    parts.append(rng.choice(captions(scene, rng)))
    question, answer, _ = rng.choice(qa_pairs(scene, rng, config))
    parts.append(f"{question} {_cap(answer)}.")
    return " ".join(parts)
