"""A dense caption parsed back to a scene, and scored per attribute against the true scene.

This is how a captioner is measured against ground truth: the caption is read back into objects (colour, shape,
size, start region) and each object's first motion direction, with no look at the truth, and the result is
compared with the scene the clip was rendered from. The reading follows the oracle's vocabulary
(``synthworld.captions``: canonical colour/shape/direction words, its region phrases and event verbs) but not
its sentence order, so a learned captioner that words things its own way within that vocabulary is read too.

- Objects are the ones the opening describes, in the order it names them (``a large cyan square in the
  top-left corner``), then the ones that appear later (``a small red circle appears on the right``), with
  the region they appear in.
- An object's direction is that of the first move clause about it (``the cyan square starts moving to the
  left``), following its name through colour changes (``the cyan square turns pink``).
- Scoring (``caption_attributes``) pairs the i-th object of the truth (those visible at the start in scene
  order, then those that appear, in order of appearance) with the i-th parsed object: a missing object scores
  0 on every attribute; direction is scored for objects that move.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from synthworld.captions import (
    APPEAR_VERBS,
    DIRECTION_PHRASES,
    REGION_PHRASES,
    SIZE_WORDS,
    START_VERBS,
    TURN_VERBS,
)
from synthworld.score.caption_checks import sentence_time, sentences
from synthworld.spec import BACKGROUNDS, COLOURS, SHAPES, SceneSpec

ATTRIBUTES = ("colour", "shape", "size", "region", "direction")
_SIZE = {w: size for size, words in SIZE_WORDS.items() for w in words}  # "big" -> large


def _alt(words) -> str:
    """A regex alternation, longest first, so ``in the top-left corner`` wins over ``on the left``."""
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_REGION_OF_PHRASE = {p: region for region, ps in REGION_PHRASES.items() for p in ps}
_DIRECTION_OF_PHRASE = {p: d for d, ps in DIRECTION_PHRASES.items() for p in ps}
_COLOUR, _SHAPE = _alt(COLOURS), _alt(SHAPES)
_NOUN = rf"\ba (?P<size>{_alt(_SIZE)}) (?P<colour>{_COLOUR}) (?P<shape>{_SHAPE})"
_PLACED = re.compile(rf"{_NOUN} (?P<where>{_alt(_REGION_OF_PHRASE)})")
_APPEARS = re.compile(rf"{_NOUN} (?:{_alt(APPEAR_VERBS)}) (?P<where>{_alt(_REGION_OF_PHRASE)})")
_THE = rf"\bthe (?P<colour>{_COLOUR}) (?P<shape>{_SHAPE})"
_MOVES = re.compile(rf"{_THE} (?:{_alt(START_VERBS + TURN_VERBS)}) (?P<way>{_alt(_DIRECTION_OF_PHRASE)})(?![a-z])")
_RECOLOURS = re.compile(rf"{_THE} (?:turns|switches to|changes colour from (?:{_COLOUR}) to) (?P<new>{_COLOUR})\b")
_CLAUSES = (("appear", _APPEARS), ("move", _MOVES), ("colour", _RECOLOURS))
# every event clause, for readers of whole timelines (synthworld.score.claims): an appearance may leave out
# size and place ("a blue square appears"), and stops and disappearances are read too
_APPEAR_ANY = re.compile(rf"\ban? (?:(?P<size>{_alt(_SIZE)}) )?(?P<colour>{_COLOUR}) (?P<shape>{_SHAPE}) "
                         rf"(?:{_alt(APPEAR_VERBS)})(?: (?P<where>{_alt(_REGION_OF_PHRASE)}))?")
_STOPS = re.compile(rf"{_THE} (?:stops|comes to a halt)\b")
_VANISHES = re.compile(rf"{_THE} (?:disappears|vanishes)\b")
_CLAUSES_ALL = (("appear", _APPEAR_ANY), ("move", _MOVES), ("colour", _RECOLOURS), ("stop", _STOPS),
                ("disappear", _VANISHES))
_BACKGROUND = re.compile(rf"\b(?P<bg>{_alt(BACKGROUNDS)}) (?:background|backdrop)\b")


@dataclass
class ParsedObject:
    colour: str
    shape: str
    size: str
    region: str
    direction: str | None = None  # of its first move clause
    names: set[str] = field(default_factory=set)  # "colour shape" it is called by, through colour changes


@dataclass
class ParsedCaption:
    background: str | None
    objects: list[ParsedObject]


def parse_dense(text: str) -> ParsedCaption:
    """Read a dense caption back into a background, its objects and their first directions (see module doc)."""
    opening, *later = sentences(text)
    bg = _BACKGROUND.search(opening)
    objects = [ParsedObject(m["colour"], m["shape"], _SIZE[m["size"]], _REGION_OF_PHRASE[m["where"]],
                            names={f"{m['colour']} {m['shape']}"}) for m in _PLACED.finditer(opening)]
    # the rest in the order of their times (a caption may not list them in order), untimed ones last;
    # within a sentence, clauses in text order
    rest = sorted(later, key=lambda s: t if (t := sentence_time(s)) is not None else float("inf"))
    for s in rest:
        found = sorted(((m.start(), kind, m) for kind, rx in _CLAUSES for m in rx.finditer(s)), key=lambda c: c[0])
        for _, kind, m in found:
            name = f"{m['colour']} {m['shape']}"
            if kind == "appear":
                objects.append(ParsedObject(m["colour"], m["shape"], _SIZE[m["size"]],
                                            _REGION_OF_PHRASE[m["where"]], names={name}))
                continue
            obj = next((o for o in objects if name in o.names), None)
            if obj is None:
                continue
            if kind == "move" and obj.direction is None:
                obj.direction = _DIRECTION_OF_PHRASE[m["way"]]
            elif kind == "colour":
                obj.names.add(f"{m['new']} {m['shape']}")
    return ParsedCaption(bg["bg"] if bg else None, objects)


def true_objects(spec: SceneSpec) -> list[dict]:
    """The truth in the order ``caption_attributes`` pairs it: visible at the start, then by appearance."""
    first_move = {}
    appear_at = {}
    for e in sorted(spec.events, key=lambda e: e.t):
        if e.kind == "move":
            first_move.setdefault(e.obj, e.direction)
        if e.kind == "appear":
            appear_at.setdefault(e.obj, e.t)
    order = [i for i, o in enumerate(spec.objects) if o.visible] + sorted(appear_at, key=appear_at.get)
    return [{"colour": spec.objects[i].colour, "shape": spec.objects[i].shape, "size": spec.objects[i].size,
             "region": spec.objects[i].region, "direction": first_move.get(i)} for i in order]


def caption_attributes(spec: SceneSpec, text: str) -> dict[str, list[bool]]:
    """Per attribute, one verdict per true object (direction: per moving object) — the caption parsed back."""
    parsed = parse_dense(text).objects
    out: dict[str, list[bool]] = {a: [] for a in ATTRIBUTES}
    for i, truth in enumerate(true_objects(spec)):
        got = parsed[i] if i < len(parsed) else None
        for a in ATTRIBUTES:
            if a == "direction" and truth["direction"] is None:
                continue
            out[a].append(got is not None and getattr(got, a) == truth[a])
    return out
