"""The same scene in other words: prompts a user might write, with every fact of the oracle's dense caption.

The oracle writes one sentence pattern (``synthworld.captions``): an opening that places the objects, one timed
sentence per change (``At 1.5s, the red circle starts moving to the left slowly.``), a closing. A model trained
on it may follow that pattern rather than the language. :func:`paraphrase` writes a scene the way people do:

- other words: a circle is a ball, disc or round dot; a square a box or block; big is huge, small is little or
  tiny; gray is grey; "in the top-left corner" is "up in the top left"; "to the left" is "leftwards" or "towards
  the left edge"; "at 1.5s" is "1.5 seconds in", "after 1.5 seconds" or "at the 1.5-second mark";
- other clause orders: the background first or last, each object in a sentence of its own or all in one, the
  time before or after its change, events of one moment in one sentence or several;
- pronouns for a lone object, no closing summary and no count of changes.

Every fact stays: background, each object's size, colour, shape and start region, and each event's second,
kind, direction (with its speed word) or new colour. Colour words stay the canonical ones (gray may be grey).
A generator seeded by the scene and ``phrasing`` picks the wording, so a prompt set is reproducible and
``phrasing`` 1, 2, … are different phrasings of the same scenes.
"""

from __future__ import annotations

import hashlib
import random

from synthworld.simulate import states_at
from synthworld.spec import SceneSpec, region_of, speed_name

NOUNS = {"circle": ["ball", "disc", "round dot", "circle"], "square": ["box", "block", "square"],
         "triangle": ["triangle", "triangular shape"]}
SIZES = {"small": ["little", "tiny", "small"], "large": ["huge", "big", "large"]}
PLACES = {
    "top-left": ["up in the top left", "in the upper-left area", "near the top left corner"],
    "top": ["along the top, in the middle", "up top, centred", "at the top middle"],
    "top-right": ["up in the top right", "in the upper-right area", "near the top right corner"],
    "left": ["at the left, halfway down", "on the left-hand side", "midway down the left"],
    "center": ["in the middle of the frame", "right in the centre", "dead centre"],
    "right": ["at the right, halfway down", "on the right-hand side", "midway down the right"],
    "bottom-left": ["down in the bottom left", "in the lower-left area", "near the bottom left corner"],
    "bottom": ["along the bottom, in the middle", "down low, centred", "at the bottom middle"],
    "bottom-right": ["down in the bottom right", "in the lower-right area", "near the bottom right corner"],
}
WAYS = {"left": ["leftwards", "towards the left edge", "to its left"],
        "right": ["rightwards", "towards the right edge", "to its right"],
        "up": ["upwards", "towards the top", "up the frame"],
        "down": ["downwards", "towards the bottom", "down the frame"]}
PACES = {"slowly": ["at a leisurely pace", "unhurriedly", "slowly"], "quickly": ["rapidly", "at speed", "quickly"]}
STARTS = ["starts drifting", "begins heading", "sets off", "starts to travel"]
TURNS = ["changes course and heads", "swerves and goes", "switches direction, going"]
STOPS = ["comes to rest", "halts", "stops dead"]
RECOLOURS = ["becomes {c}", "changes to {c}", "goes {c}"]
APPEARS = ["shows up {where}", "materialises {where}", "pops into view {where}"]
VANISHES = ["vanishes", "is suddenly gone", "disappears"]
AT_ZERO = ["from the very first frame", "straight away", "as soon as the clip begins", "from the beginning"]
AT_T = ["{t} seconds in", "after {t} seconds", "at the {t}-second mark", "once {t} seconds have passed"]
BACKGROUNDS = ["The background is plain {bg}.", "Everything sits on a flat {bg} backdrop.", "The backdrop is solid {bg}."]


def _rng(spec: SceneSpec, phrasing: int) -> random.Random:
    key = spec.seed if spec.seed is not None else hashlib.sha1(spec.to_json().encode()).hexdigest()
    return random.Random(f"{key}:paraphrase:{phrasing}")


def _secs(t: float) -> str:
    return f"{t:.2f}".rstrip("0").rstrip(".")


def _colour(c: str, rng: random.Random) -> str:
    return rng.choice(["gray", "grey"]) if c == "gray" else c


def paraphrase(spec: SceneSpec, phrasing: int = 1) -> str:
    """The scene in other words and clause orders than the oracle's, every fact kept (see the module doc)."""
    rng = _rng(spec, phrasing)
    nouns = {i: rng.choice(NOUNS[o.shape]) for i, o in enumerate(spec.objects)}  # one noun per object, kept
    lone = len(spec.objects) == 1

    def called(i: int, colour: str, first: bool = False) -> str:
        if lone and not first and rng.random() < 0.6:
            return "it"
        return f"the {_colour(colour, rng)} {nouns[i]}"

    def noun_phrase(i: int, colour: str) -> str:
        size, c = rng.choice(SIZES[spec.objects[i].size]), _colour(colour, rng)
        return rng.choice([f"a {size} {c} {nouns[i]}", f"a {nouns[i]}, {size} and {c},"])

    # 1. who is there at the start, and the background
    start = states_at(spec, 0.0)
    intro = [(noun_phrase(i, s.colour), rng.choice(PLACES[region_of(s.x, s.y)])) for i, s in enumerate(start)
             if s.visible]
    bg = rng.choice(BACKGROUNDS).format(bg=_colour(spec.background, rng))
    if not intro:
        sentences = [f"At first there is nothing but a plain {_colour(spec.background, rng)} backdrop."]
    elif len(intro) == 1 or rng.random() < 0.5:  # one sentence
        parts = [f"{x} {where}" for x, where in intro]
        body = " and ".join(parts) if len(parts) <= 2 else ", ".join(parts[:-1]) + " and " + parts[-1]
        if len(intro) == 1 and rng.random() < 0.4:
            x, where = intro[0]
            lead = f"{where} {rng.choice(['sits', 'rests', 'there is'])} {x.rstrip(',')}."
        else:
            lead = rng.choice(["There is {x}.", "We see {x}.", "The scene holds {x}."]).format(x=body)
        sentences = [bg, _cap(lead)] if rng.random() < 0.5 else [_cap(lead), bg]
    else:  # a sentence per object
        sentences = [bg] + [_cap(f"{where} {rng.choice(['sits', 'there is'])} {x.rstrip(',')}.") if k % 2
                            else _cap(f"There is {x} {where}.") for k, (x, where) in enumerate(intro)]
    # 2. every change, with its second
    moving: dict[int, bool] = {}
    for e in sorted(spec.events, key=lambda e: (e.t, e.obj)):
        before = states_at(spec, e.t - 1e-6)[e.obj] if e.t > 0 else start[e.obj]
        after = states_at(spec, e.t)[e.obj]
        who = called(e.obj, before.colour)
        if e.kind == "move":
            verb = rng.choice(TURNS if moving.get(e.obj) else STARTS)
            what = f"{verb} {rng.choice(WAYS[e.direction])} {rng.choice(PACES[speed_name(e.speed)])}"
            moving[e.obj] = True
        elif e.kind == "stop":
            what, moving[e.obj] = rng.choice(STOPS), False
        elif e.kind == "colour":
            what = rng.choice(RECOLOURS).format(c=_colour(e.colour, rng))
        elif e.kind == "appear":
            o = spec.objects[e.obj]
            who = f"a {rng.choice(SIZES[o.size])} {_colour(after.colour, rng)} {nouns[e.obj]}"
            what = rng.choice(APPEARS).format(where=rng.choice(PLACES[region_of(after.x, after.y)]))
        else:
            what = rng.choice(VANISHES)
        when = rng.choice(AT_ZERO) if e.t == 0 else rng.choice(AT_T).format(t=_secs(e.t))
        clause = f"{who} {what}"
        sentences.append(_cap(f"{when}, {clause}.") if rng.random() < 0.5 else _cap(f"{clause} {when}."))
    if not spec.events:
        sentences.append(rng.choice(["Nothing moves.", "It all stays still.", "Nothing changes at all."]))
    return " ".join(sentences)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]
