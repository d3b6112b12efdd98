"""Scores: a parsed image against the scene its prompt described (GenEval-style), a free-text answer against gold.

`match_scene` pairs target and parsed objects one-to-one, preferring pairs that agree on colour and shape,
then on cell, then on size (exact search over subsets: scenes hold at most 9 objects), and reports what
fraction of the target each attribute gets right.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

from ..data.language import NUMBERS

_SYNONYMS = {"grey": "gray", "center": "centre", "middle": "centre", "upper": "top", "lower": "bottom",
             "violet": "purple"}
_ARTICLES = {"the", "a", "an"}


def _same_kind(target, parsed) -> bool:
    return target.colour == parsed.colour and target.shape == parsed.shape


def _same_cell(target, parsed) -> bool:
    return (target.col, target.row) == (parsed.col, parsed.row)


def _pair_score(target, parsed) -> int:
    """Lexicographic preference: colour+shape (100), then cell (10), then size (1)."""
    if not _same_kind(target, parsed):
        return 0
    return 100 + 10 * _same_cell(target, parsed) + (target.size == parsed.size)


def assign(targets, parsed) -> list[tuple[int, int]]:
    """Best one-to-one pairs (target index, parsed index) by `_pair_score`; unpaired objects are left out."""
    if len(targets) > 12:
        raise ValueError(f"too many target objects for an exact assignment: {len(targets)}")
    scores = [[_pair_score(t, p) for p in parsed] for t in targets]
    best: dict[int, tuple[int, tuple[tuple[int, int], ...]]] = {0: (0, ())}  # used targets -> (score, pairs)
    for j in range(len(parsed)):
        grown = dict(best)
        for used, (value, pairs) in best.items():
            for i in range(len(targets)):
                if not used >> i & 1 and scores[i][j] > 0:
                    key, candidate = used | 1 << i, (value + scores[i][j], pairs + ((i, j),))
                    if candidate[0] > grown.get(key, (-1, ()))[0]:
                        grown[key] = candidate
        best = grown
    return sorted(max(best.values(), key=lambda v: v[0])[1])


def _pairs(targets: list, found: list) -> list[tuple[int, object, object]]:
    """`assign`'s pairs as (target index, target object, parsed object)."""
    return [(i, targets[i], found[j]) for i, j in assign(targets, found)]


def drawn_sizes(parsed, target) -> list[str | None]:
    """The size each object of `target` was drawn at: that of the parsed object paired with it (as `match_scene`
    pairs them) when their colour, shape and cell agree; None when none does."""
    sizes: list[str | None] = [None] * len(target.objects)
    for i, t, p in _pairs(list(target.objects), list(parsed.objects)):
        if _same_kind(t, p) and _same_cell(t, p):
            sizes[i] = p.size
    return sizes


def match_scene(parsed, target, judge_size: Sequence[bool] | None = None) -> dict:
    """How well a parsed image (`ParsedScene` or `Scene`) realises a target `Scene`.

    Fractions of target objects: 'objects' (a parsed object of the same colour and shape), 'positions'
    (... also in the same cell), 'sizes' (... also the same size), 'colours' / 'shapes' (multiset overlap,
    ignoring pairing). Booleans: 'count' (as many objects as the target), 'overall' (count right and every
    target object found with its colour, shape, size and cell), 'background'. `judge_size[i]` False leaves
    target object i's size out of 'overall' (a size its prompt never stated); default: every size counts.
    """
    targets, found = list(target.objects), list(parsed.objects)
    judged = [True] * len(targets) if judge_size is None else list(judge_size)
    if len(judged) != len(targets):
        raise ValueError(f"judge_size has {len(judged)} entries for {len(targets)} target objects")
    n = max(1, len(targets))
    kind = [(i, t, p) for i, t, p in _pairs(targets, found) if _same_kind(t, p)]
    placed = [(i, t, p) for i, t, p in kind if _same_cell(t, p)]
    sized = [(i, t, p) for i, t, p in kind if t.size == p.size]
    exact = [(i, t, p) for i, t, p in placed if t.size == p.size or not judged[i]]

    def overlap(attr: str) -> int:
        return sum((Counter(getattr(o, attr) for o in targets) & Counter(getattr(o, attr) for o in found)).values())

    return {
        "objects": len(kind) / n, "positions": len(placed) / n, "sizes": len(sized) / n,
        "colours": overlap("colour") / n, "shapes": overlap("shape") / n,
        "count": len(found) == len(targets), "overall": len(found) == len(targets) == len(exact),
        "background": parsed.background == target.background,
    }


def normalise_answer(text: str) -> str:
    """Lower case, hyphens to spaces, punctuation and articles dropped, digits to number words, a few synonyms."""
    words = re.sub(r"[^a-z0-9 ]", " ", text.lower().replace("-", " ")).split()
    out = []
    for word in words:
        word = NUMBERS[int(word)] if word.isdigit() and int(word) < len(NUMBERS) else word
        word = _SYNONYMS.get(word, word)
        if word not in _ARTICLES:
            out.append(word)
    return " ".join(out)


def answer_correct(question_type: str, predicted_text: str, gold_answer: str) -> bool:
    """Whether a model's answer matches the gold one after `normalise_answer`.

    Yes/no and count questions only look at the first word ('Yes, there is.' is right); everything else must
    match whole ('top left' == 'Top-left.', 'centre' == 'center', '2' == 'two').
    """
    predicted, gold = normalise_answer(predicted_text), normalise_answer(gold_answer)
    if question_type in ("existence", "yesno", "count"):
        return bool(predicted) and predicted.split()[0] == gold
    return predicted == gold
