"""Read a caption back into facts about a scene, over the world's closed vocabulary, and score it.

The world's captions (`showo.data.language`) are lists of noun phrases, `[number|a|an] [size] [colour] shape`,
each optionally followed by a position (`at the top left`, `on the right`, `in the centre`, or bare `top
left` in the compact list), plus a few other facts: `<number> objects|shapes` (the total),
`on a <background> background`, and `<mention> is <left of|right of|above|below> <mention>`. The parser is a
deterministic left-to-right scan; words it does not know are skipped, so it also reads free model output.
A phrase without a colour (`two circles`, `a square` in a tally) is a count claim about that shape.

`score_caption` checks a parse against the scene it should describe: a caption is fully correct when it
names every object with its colour, shape and position, names nothing that is not there, and every other
fact it states (sizes, total, background, relation) is true.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..data.language import NUMBERS, RELATIONS, plural
from ..data.world import POSITIONS, Scene, WorldConfig, relation
from .matching import assign

POSITION_CELLS: dict[str, tuple[int, int]] = {name: (i % 3, i // 3) for i, name in enumerate(POSITIONS)}
_SYNONYMS = {"grey": "gray", "center": "centre", "violet": "purple"}
_PREPOSITIONS = (("at", "the"), ("on", "the"), ("in", "the"))


@dataclass(frozen=True)
class Mention:
    """One noun phrase: `count` objects of a shape, with the colour, size and position it states (or None)."""

    shape: str
    colour: str | None = None
    size: str | None = None
    position: str | None = None
    count: int = 1

    @property
    def cell(self) -> tuple[int, int] | None:
        return POSITION_CELLS[self.position] if self.position else None


@dataclass(frozen=True)
class RelationClaim:
    """`subject is <relation> object` (relation: 'left of', 'right of', 'above', 'below')."""

    subject: Mention
    relation: str
    object: Mention


@dataclass(frozen=True)
class ParsedCaption:
    mentions: tuple[Mention, ...]
    relations: tuple[RelationClaim, ...] = ()
    total: int | None = None  # 'three objects' / 'three shapes'
    background: str | None = None


@dataclass(frozen=True)
class CaptionScore:
    """How a caption fares against its scene. Fractions are of the scene's objects."""

    objects: float  # named with the right colour and shape
    positions: float  # ... and with the right position
    hallucination_free: bool  # no named colour-shape object (or shape count) beyond what the scene holds
    sizes_right: bool  # every stated size of a named object is right
    count_right: bool | None  # the stated total (None: not stated)
    background_right: bool | None
    relations_right: bool | None
    overall: bool

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class _Lexicon:
    """Multi-word phrases of the closed vocabulary, for longest-match lookups."""

    def __init__(self, config: WorldConfig):
        self.sizes = {(s,): s for s in config.sizes}
        self.colours = {tuple(c.split()): c for c in config.colours}
        self.backgrounds = {tuple(b.split()): b for b in config.backgrounds}
        self.shapes = {(s,): s for s in config.shapes}
        self.plurals = {(plural(s),): s for s in config.shapes}
        self.positions = {tuple(p.split()): p for p in POSITIONS}
        self.relations = {tuple(r.split()): r for r in RELATIONS}
        self.numbers = {(w,): i for i, w in enumerate(NUMBERS)} | {("a",): 1, ("an",): 1}


def tokenize(text: str) -> list[str]:
    """Lower-case words, digits as number words, punctuation as its own tokens (phrases never cross it)."""
    words = re.findall(r"[a-z]+|[0-9]+|[,.;:!?]", text.lower().replace("-", " "))
    out = []
    for w in words:
        if w.isdigit():
            w = NUMBERS[int(w)] if int(w) < len(NUMBERS) else w
        out.append(_SYNONYMS.get(w, w))
    return out


def _match(tokens: list[str], i: int, table: dict) -> tuple[object, int] | None:
    """(value, next index) of the longest phrase of `table` starting at `i`, or None."""
    for length in sorted({len(k) for k in table}, reverse=True):
        key = tuple(tokens[i:i + length])
        if len(key) == length and key in table:
            return table[key], i + length
    return None


def _position(tokens: list[str], i: int, lex: _Lexicon) -> tuple[str, int] | None:
    """A position after a noun: `at/on/in the <position>` or a bare `<position>`, never `left of` (a relation)."""
    for prep in _PREPOSITIONS:
        if tuple(tokens[i:i + 2]) == prep:
            i += 2
            break
    found = _match(tokens, i, lex.positions)
    if found is None or (found[1] < len(tokens) and tokens[found[1]] == "of"):
        return None
    return found  # type: ignore[return-value]


def _mention(tokens: list[str], i: int, lex: _Lexicon) -> tuple[Mention, int] | None:
    """`[number] [size] [colour] shape|shapes [position]` starting at `i`."""
    count, j = 1, i
    if number := _match(tokens, j, lex.numbers):
        count, j = number
    size = colour = None
    if found := _match(tokens, j, lex.sizes):
        size, j = found
    if found := _match(tokens, j, lex.colours):
        colour, j = found
    shape = _match(tokens, j, lex.shapes) or _match(tokens, j, lex.plurals)
    if shape is None:
        return None
    name, j = shape
    position = None
    if found := _position(tokens, j, lex):
        position, j = found
    return Mention(name, colour, size, position, count), j


def parse_caption(text: str, config: WorldConfig | None = None) -> ParsedCaption:
    """The mentions, relations, stated total and background of a caption (see the module docstring)."""
    lex = _Lexicon(config or WorldConfig())
    tokens = tokenize(text)
    mentions: list[Mention] = []
    relations: list[RelationClaim] = []
    total = background = None
    i = 0
    while i < len(tokens):
        found = _match(tokens, i, lex.backgrounds)
        if found and found[1] < len(tokens) and tokens[found[1]] == "background":
            background, i = found[0], found[1] + 1
            continue
        number = _match(tokens, i, lex.numbers)
        if number and number[1] < len(tokens) and tokens[number[1]] in ("object", "objects", "shape", "shapes"):
            total, i = number[0], number[1] + 1
            continue
        if found := _mention(tokens, i, lex):
            mention, i = found
            mentions.append(mention)
            if tokens[i:i + 1] == ["is"] and (rel := _match(tokens, i + 1, lex.relations)):
                if other := _mention(tokens, rel[1], lex):
                    relations.append(RelationClaim(mention, rel[0], other[0]))
                    mentions.append(other[0])
                    i = other[1]
            continue
        i += 1
    return ParsedCaption(tuple(mentions), tuple(relations), total, background)


def _fits(mention: Mention, obj) -> bool:
    """Whether a scene object is one the mention could be (stated attributes only)."""
    return (obj.shape == mention.shape and mention.colour in (None, obj.colour)
            and mention.size in (None, obj.size) and mention.cell in (None, (obj.col, obj.row)))


@dataclass(frozen=True)
class _Slot:
    """A named object in the shape `matching.assign` pairs on (colour, shape, cell, size)."""

    colour: str
    shape: str
    col: int | None
    row: int | None
    size: str | None
    mention: Mention


def score_caption(parsed: ParsedCaption, scene: Scene) -> CaptionScore:
    """Score a parsed caption against its scene (fields of `CaptionScore`; `overall` = fully correct)."""
    objects = list(scene.objects)
    n = max(1, len(objects))
    named = [m for m in parsed.mentions if m.colour is not None]
    slots = [_Slot(m.colour, m.shape, *(m.cell or (None, None)), m.size, m) for m in named for _ in range(m.count)]
    pairs = [(objects[i], slots[j]) for i, j in assign(objects, slots)]
    kind = [(o, s) for o, s in pairs if (o.colour, o.shape) == (s.colour, s.shape)]
    placed = [(o, s) for o, s in kind if s.mention.cell == (o.col, o.row)]
    sizes_right = all(s.size in (None, o.size) for o, s in kind)
    counts_ok = all(sum(_fits(m, o) for o in objects) == m.count for m in parsed.mentions if m.colour is None)
    hallucination_free = len(kind) == len(slots) and counts_ok
    relations_right = None
    if parsed.relations:
        relations_right = all(any(relation(a, b) == claim.relation for a in objects if _fits(claim.subject, a)
                                  for b in objects if b is not a and _fits(claim.object, b))
                              for claim in parsed.relations)
    count_right = None if parsed.total is None else parsed.total == len(objects)
    background_right = None if parsed.background is None else parsed.background == scene.background
    fraction_objects, fraction_positions = len(kind) / n, len(placed) / n
    overall = (fraction_objects == 1.0 and fraction_positions == 1.0 and hallucination_free and sizes_right
               and count_right is not False and background_right is not False and relations_right is not False)
    return CaptionScore(fraction_objects, fraction_positions, hallucination_free, sizes_right, count_right,
                        background_right, relations_right, overall)
