"""Atomic claims of a synthworld prompt, and their verdicts from a caption or from the detector.

A judge of prompt following (``t2v compare --judge``, T2V-CompBench / DSG style) splits a prompt into atomic
claims — objects, attributes, positions, motions, timed events, the order of events — and checks each one
against what it saw. This module is that judge's rule book in the synthworld vocabulary:

- :func:`claims_of` — a dense prompt (the oracle's vocabulary, any sentence order) → its claims
  (:class:`Fact`), and :func:`write_claim` / :func:`read_claim` between a fact and its one-sentence text;
- :func:`read_caption` — a dense caption → a :class:`Reading` (the objects it describes, their start
  regions and timed events); :func:`read_detection` — the same from the synthworld detector's tracks;
- :func:`verdict` — is a claim true of a reading.

The oracle backend answers a judge's text-only calls with these (a caption from DiffSW, read back); the
detector's verdict on the same claim (:func:`read_detection`, at the video's full frame rate) is what the
judge is validated against.

Rules: the *subject* of a claim ("the red circle") is the object called by that colour and shape (through
colour changes), else the one of that colour, else of that shape, else the only object there is; no
subject, the claim is false. An event is true when its subject has an event of that kind (same direction /
new colour) within ``tol`` seconds (:data:`EVENT_TOL`); an appearance needs an object of that colour and
shape appearing then. An order claim needs both events, one occurrence of the first before one of the
second, at any times.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from synthworld.captions import DIRECTION_PHRASES, REGION_PHRASES
from synthworld.detect import Detection
from synthworld.score.caption_checks import sentence_time, sentences
from synthworld.score.caption_parse import (
    _CLAUSES_ALL,
    _DIRECTION_OF_PHRASE,
    _PLACED,
    _REGION_OF_PHRASE,
)
from synthworld.spec import COLOURS, SHAPES, region_of

CLAIM_TYPES = ("count", "object", "colour", "shape", "position", "motion", "event", "order")
CLAIM_LABELS = {"count": "object count at the start", "object": "objects (colour + shape)",
                "colour": "colours", "shape": "shapes", "position": "start positions", "motion": "motion directions",
                "event": "timed events", "order": "order of events"}
EVENT_TOL = 0.5  # seconds: "at 1.5s" is right when it happens within half a second of 1.5 s
_NUMBERS = ["no", "one", "two", "three", "four", "five", "six"]


# ----------------------------------------------------------------------------- what was read
@dataclass
class Happening:
    """An event: ``kind`` of the object called ``colour shape`` just before it; ``value`` = direction or new colour."""

    t: float | None
    kind: str
    colour: str
    shape: str
    value: str | None = None


@dataclass
class Thing:
    """An object as a caption or the detector reads it."""

    colour: str  # when first seen
    shape: str
    at_start: bool
    region: str | None  # where first seen
    names: set[str] = field(default_factory=set)  # "colour shape" through its colour changes
    events: list[Happening] = field(default_factory=list)


@dataclass
class Reading:
    things: list[Thing]

    def at_start(self) -> list[Thing]:
        return [th for th in self.things if th.at_start]


def read_caption(text: str) -> Reading:
    """A dense caption → the objects its opening places, those that appear later, and every timed event.

    Sentences are read in the order of their times (``At 1.5s``, ``Right from the start`` = 0); sentences
    without a time (the closing summary) add nothing."""
    if not text.strip():
        return Reading([])
    opening, *later = sentences(text)
    things = [Thing(m["colour"], m["shape"], True, _REGION_OF_PHRASE[m["where"]], {f"{m['colour']} {m['shape']}"})
              for m in _PLACED.finditer(opening)]
    current = {id(th): f"{th.colour} {th.shape}" for th in things}
    timed = sorted((t, s) for s in later if (t := sentence_time(s)) is not None)
    for t, s in timed:
        renames: dict[int, str] = {}  # a sentence names objects by their colour before its time: rename after it
        for kind, m in _clauses(s):
            name = f"{m['colour']} {m['shape']}"
            if kind == "appear":
                where = m["where"]
                th = Thing(m["colour"], m["shape"], False, _REGION_OF_PHRASE[where] if where else None, {name})
                th.events.append(Happening(t, "appear", m["colour"], m["shape"]))
                things.append(th)
                current[id(th)] = name
                continue
            th = next((x for x in things if current[id(x)] == name), None) or \
                next((x for x in things if renames.get(id(x)) == name), None)
            if th is None:
                continue
            value = (_DIRECTION_OF_PHRASE[m["way"]] if kind == "move" else m["new"] if kind == "colour" else None)
            th.events.append(Happening(t, kind, m["colour"], m["shape"], value))
            if kind == "colour":
                renames[id(th)] = f"{m['new']} {m['shape']}"
                th.names.add(renames[id(th)])
            elif kind == "disappear":  # gone: a later "the red circle" is another object of that name
                renames[id(th)] = ""
        current.update(renames)
    return Reading(things)


def _clauses(text: str) -> list[tuple[str, re.Match]]:
    """Event clauses of a sentence, in text order."""
    found = sorted(((m.start(), kind, m) for kind, rx in _CLAUSES_ALL for m in rx.finditer(text)), key=lambda c: c[0])
    return [(kind, m) for _, kind, m in found]


def read_detection(det: Detection) -> Reading:
    """The detector's tracks as a :class:`Reading`: a track seen from frame 0 or 1 is there at the start."""
    things = []
    for tr in det.tracks:
        pos = tr.position(tr.first)
        th = Thing(tr.colour, tr.shape, tr.first <= 1, region_of(*pos) if pos else None, {f"{tr.colour} {tr.shape}"})
        colour = tr.colour
        for e in tr.events:
            if e.kind == "appear" and th.at_start:
                continue
            value = e.direction if e.kind == "move" else e.colour if e.kind == "colour" else None
            th.events.append(Happening(e.t, e.kind, colour, tr.shape, value))
            if e.kind == "colour" and e.colour:
                colour = e.colour
                th.names.add(f"{colour} {tr.shape}")
        things.append(th)
    return Reading(things)


# ----------------------------------------------------------------------------- claims
@dataclass
class Fact:
    """One atomic claim: ``type`` (:data:`CLAIM_TYPES`) and what it says.

    count: ``value`` = the number; object/colour/shape/position/motion: ``colour``/``shape`` of the subject
    (colour or shape alone for those two types), ``value`` = region or direction; event: ``events[0]``;
    order: ``events[0]`` before ``events[1]``."""

    type: str
    colour: str | None = None
    shape: str | None = None
    value: str | int | None = None
    events: tuple[Happening, ...] = ()


def claims_of(prompt: str) -> list[Fact]:
    """The atomic claims of a dense prompt: the object count at the start; per object there then its colour,
    shape, both together, start region and each direction it moves in; every event after 0 s with its time;
    and for each two successive event times, their order. Duplicates (two red objects) are kept once."""
    reading = read_caption(prompt)
    start = reading.at_start()
    facts = [Fact("count", value=len(start))]
    for th in start:
        facts += [Fact("object", th.colour, th.shape), Fact("colour", colour=th.colour), Fact("shape", shape=th.shape),
                  Fact("position", th.colour, th.shape, th.region)]
        for d in dict.fromkeys(h.value for h in th.events if h.kind == "move"):
            facts.append(Fact("motion", th.colour, th.shape, d))
    timed = sorted((h for th in reading.things for h in th.events if h.t and h.t > 0), key=lambda h: h.t)
    facts += [Fact("event", events=(h,)) for h in timed]
    firsts = list({h.t: h for h in reversed(timed)}.values())[::-1]  # the first event of each time
    facts += [Fact("order", events=(a, b)) for a, b in zip(firsts, firsts[1:])]
    seen, out = set(), []
    for f in facts:
        if (text := write_claim(f)) not in seen:
            seen.add(text)
            out.append(f)
    return out


def _clause(h: Happening) -> str:
    if h.kind == "appear":
        return f"a {h.colour} {h.shape} appears"
    the = f"the {h.colour} {h.shape}"
    return {"move": f"{the} starts moving {DIRECTION_PHRASES.get(h.value, [h.value])[0]}", "stop": f"{the} stops",
            "colour": f"{the} turns {h.value}", "disappear": f"{the} disappears"}[h.kind]


def _fmt_t(t: float) -> str:
    return f"{t:.2f}".rstrip("0").rstrip(".") + "s"


def _count(n: int) -> str:
    word = _NUMBERS[n] if n < len(_NUMBERS) else str(n)
    return f"There {'is' if n == 1 else 'are'} exactly {word} object{'' if n == 1 else 's'} at the start."


_WRITERS = {  # claim type -> its sentence (the grammar read_claim reads back)
    "count": lambda f: _count(int(f.value)),
    "object": lambda f: f"There is a {f.colour} {f.shape} at the start.",
    "colour": lambda f: f"There is a {f.colour} object at the start.",
    "shape": lambda f: f"There is a {f.shape} at the start.",
    "position": lambda f: f"The {f.colour} {f.shape} starts {REGION_PHRASES[f.value][0]}.",
    "motion": lambda f: f"The {f.colour} {f.shape} moves {DIRECTION_PHRASES[f.value][0]}.",
    "event": lambda f: f"At {_fmt_t(f.events[0].t)}, {_clause(f.events[0])}.",
    "order": lambda f: f"First {_clause(f.events[0])}, then {_clause(f.events[1])}.",
}


def write_claim(f: Fact) -> str:
    """A fact as one plain sentence (the grammar :func:`read_claim` reads back)."""
    if f.type not in _WRITERS:
        raise ValueError(f"write_claim: unknown claim type {f.type!r}; use one of {CLAIM_TYPES}")
    return _WRITERS[f.type](f)


_C, _S = "|".join(COLOURS), "|".join(SHAPES)
_PATTERNS = [
    ("count", re.compile(r"There (?:is|are) exactly (?P<n>\w+) objects? at the start\.$")),
    ("object", re.compile(rf"There is an? (?P<colour>{_C}) (?P<shape>{_S}) at the start\.$")),
    ("colour", re.compile(rf"There is an? (?P<colour>{_C}) object at the start\.$")),
    ("shape", re.compile(rf"There is an? (?P<shape>{_S}) at the start\.$")),
    ("position", re.compile(rf"The (?P<colour>{_C}) (?P<shape>{_S}) starts (?P<where>.+)\.$")),
    ("motion", re.compile(rf"The (?P<colour>{_C}) (?P<shape>{_S}) moves (?P<way>.+)\.$")),
    ("event", re.compile(r"At (?P<t>\d+(?:\.\d+)?)s, (?P<rest>.+)\.$")),
    ("order", re.compile(r"First (?P<a>.+), then (?P<b>.+)\.$")),
]


def read_claim(text: str) -> Fact:
    """A claim sentence of :func:`write_claim`'s grammar → its :class:`Fact`; ``ValueError`` for any other text."""
    text = text.strip()
    for kind, rx in _PATTERNS:
        if not (m := rx.match(text)):
            continue
        if kind == "count":
            n = _NUMBERS.index(m["n"]) if m["n"] in _NUMBERS else int(m["n"]) if m["n"].isdigit() else None
            if n is not None:
                return Fact("count", value=n)
        elif kind in ("object", "colour", "shape"):
            return Fact(kind, m.groupdict().get("colour"), m.groupdict().get("shape"))
        elif kind == "position" and m["where"] in _REGION_OF_PHRASE:
            return Fact("position", m["colour"], m["shape"], _REGION_OF_PHRASE[m["where"]])
        elif kind == "motion" and m["way"] in _DIRECTION_OF_PHRASE:
            return Fact("motion", m["colour"], m["shape"], _DIRECTION_OF_PHRASE[m["way"]])
        elif kind == "event" and len(hs := _happenings(m["rest"], float(m["t"]))) == 1:
            return Fact("event", events=tuple(hs))
        elif kind == "order" and len(a := _happenings(m["a"], None)) == 1 and len(b := _happenings(m["b"], None)) == 1:
            return Fact("order", events=(a[0], b[0]))
    raise ValueError(f"read_claim: {text[:100]!r} is not a claim of the synthworld grammar")


def _happenings(text: str, t: float | None) -> list[Happening]:
    out = []
    for kind, m in _clauses(text):
        value = _DIRECTION_OF_PHRASE[m["way"]] if kind == "move" else m["new"] if kind == "colour" else None
        out.append(Happening(t, kind, m["colour"], m["shape"], value))
    return out


# ----------------------------------------------------------------------------- verdicts
def present(th: Thing, t: float | None, tol: float = EVENT_TOL) -> bool:
    """Is ``th`` in the frame at ``t`` (within ``tol`` of its appearance and disappearance)? Always, for no time."""
    if t is None:
        return True
    came = 0.0 if th.at_start else min((e.t for e in th.events if e.kind == "appear"), default=0.0)
    gone = min((e.t for e in th.events if e.kind == "disappear"), default=float("inf"))
    return came - tol <= t <= gone + tol


def subject(things: list[Thing], colour: str | None, shape: str | None, t: float | None = None) -> Thing | None:
    """The object a claim is about (see the module doc's rules); of several, one in the frame at ``t`` first."""
    name = f"{colour} {shape}"
    things = sorted(things, key=lambda th: not present(th, t))  # stable: reading order among equals
    for ok in (lambda th: name in th.names, lambda th: any(n.split()[0] == colour for n in th.names),
               lambda th: th.shape == shape):
        if hit := next((th for th in things if ok(th)), None):
            return hit
    return things[0] if len(things) == 1 else None


def happened(reading: Reading, h: Happening, tol: float) -> list[float]:
    """The times of the event ``h`` in ``reading``, nearest to ``h.t`` first (those within ``tol`` s of it; when
    ``h.t`` is None, every time in order)."""
    if h.kind == "appear":
        cands = [e.t for th in reading.things if not th.at_start and f"{h.colour} {h.shape}" in th.names
                 for e in th.events if e.kind == "appear"]
    else:
        th = subject(reading.things, h.colour, h.shape, h.t)
        cands = [e.t for e in (th.events if th else [])
                 if e.kind == h.kind and (h.kind not in ("move", "colour") or e.value == h.value)]
    if h.t is None:
        return sorted(t for t in cands if t is not None)
    return sorted((t for t in cands if t is not None and abs(t - h.t) <= tol + 1e-6), key=lambda t: abs(t - h.t))


def verdict(f: Fact, reading: Reading, tol: float = EVENT_TOL) -> bool:
    """Is the claim true of what was read?"""
    start = reading.at_start()
    if f.type == "count":
        return len(start) == f.value
    if f.type == "object":
        return any(th.colour == f.colour and th.shape == f.shape for th in start)
    if f.type == "colour":
        return any(th.colour == f.colour for th in start)
    if f.type == "shape":
        return any(th.shape == f.shape for th in start)
    if f.type in ("position", "motion"):
        th = subject(start, f.colour, f.shape)
        if th is None:
            return False
        if f.type == "position":
            return th.region == f.value
        return any(e.kind == "move" and e.value == f.value for e in th.events)
    if f.type == "event":
        return bool(happened(reading, f.events[0], tol))
    if f.type == "order":  # some occurrence of the first before some occurrence of the second
        a, b = (happened(reading, Happening(None, h.kind, h.colour, h.shape, h.value), tol) for h in f.events)
        return bool(a and b) and a[0] < b[-1]
    raise ValueError(f"verdict: unknown claim type {f.type!r}")
