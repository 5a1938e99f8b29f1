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
``phrasing`` 1, 2, … are different phrasings of the same scenes. Two vocabularies: :data:`TRAINING` (also what the
manifests' ``captions.varied`` are written in) and :data:`UNSEEN`, words and frames no training caption uses
("orb", "arrowhead", "westward", "at a crawl", "when 1.5 seconds have elapsed") — prompts that test language a
model has not been trained on.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from synthworld.simulate import states_at
from synthworld.spec import SceneSpec, region_of, speed_name


@dataclass(frozen=True)
class Vocabulary:
    """The words and sentence frames a paraphrase draws from."""

    nouns: dict[str, list[str]]  # shape -> nouns
    sizes: dict[str, list[str]]
    places: dict[str, list[str]]  # 3×3 region -> phrases
    ways: dict[str, list[str]]  # direction -> phrases
    paces: dict[str, list[str]]  # speed name -> phrases
    starts: list[str]  # a resting object starts to move ... {way} {pace}
    turns: list[str]  # a moving object changes direction
    stops: list[str]
    recolours: list[str]  # with {c}
    appears: list[str]  # with {where}
    vanishes: list[str]
    at_zero: list[str]
    at_t: list[str]  # with {t}
    backgrounds: list[str]  # sentences with {bg}
    leads: list[str]  # sentences with {x}: the objects at the start
    sits: list[str]  # "{where} sits {x}"
    still: list[str]  # a scene without events


TRAINING = Vocabulary(
    nouns={"circle": ["ball", "disc", "round dot", "circle"], "square": ["box", "block", "square"],
           "triangle": ["triangle", "triangular shape"]},
    sizes={"small": ["little", "tiny", "small"], "large": ["huge", "big", "large"]},
    places={
        "top-left": ["up in the top left", "in the upper-left area", "near the top left corner"],
        "top": ["along the top, in the middle", "up top, centred", "at the top middle"],
        "top-right": ["up in the top right", "in the upper-right area", "near the top right corner"],
        "left": ["at the left, halfway down", "on the left-hand side", "midway down the left"],
        "center": ["in the middle of the frame", "right in the centre", "dead centre"],
        "right": ["at the right, halfway down", "on the right-hand side", "midway down the right"],
        "bottom-left": ["down in the bottom left", "in the lower-left area", "near the bottom left corner"],
        "bottom": ["along the bottom, in the middle", "down low, centred", "at the bottom middle"],
        "bottom-right": ["down in the bottom right", "in the lower-right area", "near the bottom right corner"]},
    ways={"left": ["leftwards", "towards the left edge", "to its left"],
          "right": ["rightwards", "towards the right edge", "to its right"],
          "up": ["upwards", "towards the top", "up the frame"],
          "down": ["downwards", "towards the bottom", "down the frame"]},
    paces={"slowly": ["at a leisurely pace", "unhurriedly", "slowly"], "quickly": ["rapidly", "at speed", "quickly"]},
    starts=["starts drifting", "begins heading", "sets off", "starts to travel"],
    turns=["changes course and heads", "swerves and goes", "switches direction, going"],
    stops=["comes to rest", "halts", "stops dead"],
    recolours=["becomes {c}", "changes to {c}", "goes {c}"],
    appears=["shows up {where}", "materialises {where}", "pops into view {where}"],
    vanishes=["vanishes", "is suddenly gone", "disappears"],
    at_zero=["from the very first frame", "straight away", "as soon as the clip begins", "from the beginning"],
    at_t=["{t} seconds in", "after {t} seconds", "at the {t}-second mark", "once {t} seconds have passed"],
    backgrounds=["The background is plain {bg}.", "Everything sits on a flat {bg} backdrop.",
                 "The backdrop is solid {bg}."],
    leads=["There is {x}.", "We see {x}.", "The scene holds {x}."],
    sits=["sits", "rests", "there is"],
    still=["Nothing moves.", "It all stays still.", "Nothing changes at all."],
)
# words and frames that no training caption uses (neither the oracle's nor TRAINING's): prompts in this
# vocabulary test whether a model follows language it has not seen, not only several wordings it has
UNSEEN = Vocabulary(
    nouns={"circle": ["orb", "round blob"], "square": ["tile", "four-sided patch"],
           "triangle": ["arrowhead", "three-cornered shape"]},
    sizes={"small": ["minute", "petite"], "large": ["massive", "sizeable"]},
    places={  # compass words: no phrase of the oracle's or of TRAINING inside them
        "top-left": ["in the northwest corner", "at the frame's northwest"],
        "top": ["at the north edge, centred", "due north of the midpoint"],
        "top-right": ["in the northeast corner", "at the frame's northeast"],
        "left": ["at the west edge, mid-height", "due west of the midpoint"],
        "center": ["at the exact midpoint of the frame", "at the frame's midpoint"],
        "right": ["at the east edge, mid-height", "due east of the midpoint"],
        "bottom-left": ["in the southwest corner", "at the frame's southwest"],
        "bottom": ["at the south edge, centred", "due south of the midpoint"],
        "bottom-right": ["in the southeast corner", "at the frame's southeast"]},
    ways={"left": ["westward", "toward the west"], "right": ["eastward", "toward the east"],
          "up": ["northward", "skyward"], "down": ["southward", "earthward"]},
    paces={"slowly": ["at a crawl", "lazily"], "quickly": ["briskly", "swiftly"]},
    starts=["begins gliding", "takes off"],
    turns=["veers, then glides", "reverses course, gliding"],
    stops=["freezes in place", "becomes motionless"],
    recolours=["is recoloured {c}", "takes on a {c} hue"],
    appears=["emerges {where}", "is revealed {where}"],
    vanishes=["blinks out", "evaporates"],
    at_zero=["right away", "from frame one"],
    at_t=["when {t} seconds have elapsed", "{t} s into the clip"],
    backgrounds=["The canvas is uniformly {bg}.", "A uniform {bg} field fills the frame."],
    leads=["Picture {x}.", "Shown is {x}."],
    sits=["lies", "is placed"],
    still=["No motion occurs.", "The picture is static."],
)


def _rng(spec: SceneSpec, phrasing: int | str) -> random.Random:
    key = spec.seed if spec.seed is not None else hashlib.sha1(spec.to_json().encode()).hexdigest()
    return random.Random(f"{key}:paraphrase:{phrasing}")


def _secs(t: float) -> str:
    return f"{t:.2f}".rstrip("0").rstrip(".")


def _colour(c: str, rng: random.Random) -> str:
    return rng.choice(["gray", "grey"]) if c == "gray" else c


def paraphrase(spec: SceneSpec, phrasing: int = 1, vocabulary: Vocabulary = TRAINING) -> str:
    """The scene in other words and clause orders than the oracle's, every fact kept (see the module doc);
    ``vocabulary``: :data:`TRAINING` (what ``captions.varied`` uses too) or :data:`UNSEEN` (words no training
    caption uses)."""
    v = vocabulary
    rng = _rng(spec, phrasing if v is TRAINING else f"{phrasing}:unseen")
    nouns = {i: rng.choice(v.nouns[o.shape]) for i, o in enumerate(spec.objects)}  # one noun per object, kept
    lone = len(spec.objects) == 1

    def called(i: int, colour: str, first: bool = False) -> str:
        if lone and not first and rng.random() < 0.6:
            return "it"
        return f"the {_colour(colour, rng)} {nouns[i]}"

    def noun_phrase(i: int, colour: str) -> str:
        size, c = rng.choice(v.sizes[spec.objects[i].size]), _colour(colour, rng)
        return rng.choice([f"a {size} {c} {nouns[i]}", f"{_a(nouns[i])} {nouns[i]}, {size} and {c},"])

    # 1. who is there at the start, and the background
    start = states_at(spec, 0.0)
    intro = [(noun_phrase(i, s.colour), rng.choice(v.places[region_of(s.x, s.y)])) for i, s in enumerate(start)
             if s.visible]
    bg = rng.choice(v.backgrounds).format(bg=_colour(spec.background, rng))
    if not intro:
        sentences = [bg]
    elif len(intro) == 1 or rng.random() < 0.5:  # one sentence
        parts = [f"{x} {where}" for x, where in intro]
        body = " and ".join(parts) if len(parts) <= 2 else ", ".join(parts[:-1]) + " and " + parts[-1]
        if len(intro) == 1 and rng.random() < 0.4:
            x, where = intro[0]
            lead = f"{where} {rng.choice(v.sits)} {x.rstrip(',')}."
        else:
            lead = rng.choice(v.leads).format(x=body)
        sentences = [bg, _cap(lead)] if rng.random() < 0.5 else [_cap(lead), bg]
    else:  # a sentence per object
        sentences = [bg] + [_cap(f"{where} {rng.choice(v.sits)} {x.rstrip(',')}.") if k % 2
                            else _cap(rng.choice(v.leads).format(x=f"{x} {where}")) for k, (x, where) in enumerate(intro)]
    # 2. every change, with its second
    moving: dict[int, bool] = {}
    for e in sorted(spec.events, key=lambda e: (e.t, e.obj)):
        before = states_at(spec, e.t - 1e-6)[e.obj] if e.t > 0 else start[e.obj]
        after = states_at(spec, e.t)[e.obj]
        who = called(e.obj, before.colour)
        if e.kind == "move":
            verb = rng.choice(v.turns if moving.get(e.obj) else v.starts)
            what = f"{verb} {rng.choice(v.ways[e.direction])} {rng.choice(v.paces[speed_name(e.speed)])}"
            moving[e.obj] = True
        elif e.kind == "stop":
            what, moving[e.obj] = rng.choice(v.stops), False
        elif e.kind == "colour":
            what = rng.choice(v.recolours).format(c=_colour(e.colour, rng))
        elif e.kind == "appear":
            o = spec.objects[e.obj]
            who = f"a {rng.choice(v.sizes[o.size])} {_colour(after.colour, rng)} {nouns[e.obj]}"
            what = rng.choice(v.appears).format(where=rng.choice(v.places[region_of(after.x, after.y)]))
        else:
            what = rng.choice(v.vanishes)
        when = rng.choice(v.at_zero) if e.t == 0 else rng.choice(v.at_t).format(t=_secs(e.t))
        clause = f"{who} {what}"
        sentences.append(_cap(f"{when}, {clause}.") if rng.random() < 0.5 else _cap(f"{clause} {when}."))
    if not spec.events:
        sentences.append(rng.choice(v.still))
    return " ".join(sentences)


def _a(word: str) -> str:
    return "an" if word[:1] in "aeio" else "a"


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]
