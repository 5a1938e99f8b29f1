"""Oracle captions: what GPT-4V writes in the paper, written here from the ground truth.

- ``short_caption``: one sentence, no timing — the Panda-70M style the paper compares against.
- ``dense_caption``: the opening scene, every change with its second, and a closing summary.
- ``caption_at`` / ``diff_caption``: a detailed caption of one moment and a differential caption
  of what changed between two moments — the two calls of differential sliding-window captioning,
  so the captioner can use the oracle as a backend.
- ``keyframe_captions``: a DiffSW-style list: detailed caption of the first key-frame, then one
  differential caption per following key-frame (the manifest's ``keyframes``).

Wording is drawn from templates with paraphrases, chosen by a generator seeded from the scene, so
the same scene always gets the same caption but a model cannot learn one sentence. Colour, shape,
size and direction words are always the canonical ones (``red``, ``triangle``, ``left``, ``up``…).
"""

from __future__ import annotations

import hashlib
import random

from synthworld.simulate import states_at
from synthworld.spec import SceneSpec, region_of, speed_name

REGION_PHRASES: dict[str, list[str]] = {
    "top-left": ["in the top-left corner", "at the upper left"],
    "top": ["at the top", "near the top edge"],
    "top-right": ["in the top-right corner", "at the upper right"],
    "left": ["on the left", "on the left side"],
    "center": ["in the centre", "in the middle"],
    "right": ["on the right", "on the right side"],
    "bottom-left": ["in the bottom-left corner", "at the lower left"],
    "bottom": ["at the bottom", "near the bottom edge"],
    "bottom-right": ["in the bottom-right corner", "at the lower right"],
}
REGION_NOUNS: dict[str, str] = {
    "top-left": "the top-left corner", "top": "the top", "top-right": "the top-right corner",
    "left": "the left side", "center": "the centre", "right": "the right side",
    "bottom-left": "the bottom-left corner", "bottom": "the bottom", "bottom-right": "the bottom-right corner",
}
DIRECTION_PHRASES: dict[str, list[str]] = {
    "left": ["to the left", "leftward", "towards the left"],
    "right": ["to the right", "rightward", "towards the right"],
    "up": ["up", "upward", "upwards"],
    "down": ["down", "downward", "downwards"],
}
SPEED_PHRASES: dict[str, list[str]] = {
    "slowly": ["slowly", "at a slow pace", "gently"],
    "quickly": ["quickly", "fast", "at a quick pace"],
}
SIZE_WORDS: dict[str, list[str]] = {"small": ["small", "small"], "large": ["large", "big"]}
# event verbs that a caption reader (synthworld.score.caption_parse) looks for
START_VERBS = ["starts moving", "begins to move", "starts sliding"]  # a resting object starts to move
TURN_VERBS = ["turns and moves", "changes direction and heads"]  # a moving object changes direction
APPEAR_VERBS = ["appears", "pops up"]


def _rng(spec: SceneSpec, purpose: str) -> random.Random:
    key = spec.seed if spec.seed is not None else hashlib.sha1(spec.to_json().encode()).hexdigest()
    return random.Random(f"{key}:{purpose}")


def _fmt_t(t: float) -> str:
    """``1.5s``, ``0.0s``, ``1.25s``: one decimal, two when the time needs them."""
    s = f"{t:.2f}"
    return f"{s[:-1] if s.endswith('0') else s}s"


def _join(parts: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c`` — or with semicolons when the parts hold commas."""
    if len(parts) <= 1:
        return "".join(parts)
    sep = "; " if any("," in p for p in parts) else ", "
    return sep.join(parts[:-1]) + (sep if sep == "; " else " ") + "and " + parts[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _noun(spec: SceneSpec, i: int, colour: str, rng: random.Random) -> str:
    o = spec.objects[i]
    return f"a {rng.choice(SIZE_WORDS[o.size])} {colour} {o.shape}"


def _the(spec: SceneSpec, i: int, colour: str) -> str:
    return f"the {colour} {spec.objects[i].shape}"


def _motion(direction: str, speed: float, rng: random.Random) -> str:
    return f"{rng.choice(DIRECTION_PHRASES[direction])} {rng.choice(SPEED_PHRASES[speed_name(speed)])}"


# ----------------------------------------------------------------------------- short
def short_caption(spec: SceneSpec) -> str:
    """One sentence, no timing: objects (as first seen) and background."""
    rng = _rng(spec, "short")
    objs = _join([_noun(spec, i, o.colour, rng) for i, o in enumerate(spec.objects)])
    moves = any(e.kind == "move" for e in spec.events)
    bg = spec.background
    templates = [
        "{objs} on a {bg} background",
        "a {bg} background with {objs}",
        "{objs} against a plain {bg} backdrop",
        "a plain {bg} scene showing {objs}",
    ]
    if moves:
        templates = [
            "{objs} moving on a {bg} background",
            "a {bg} background with {objs} moving around",
            "{objs} against a plain {bg} backdrop, some of them moving",
        ]
    return _cap(rng.choice(templates).format(objs=objs, bg=bg)) + "."


# ----------------------------------------------------------------------------- one moment
def _describe_state(spec: SceneSpec, t: float, rng: random.Random, with_motion: bool = True) -> list[str]:
    parts = []
    for i, s in enumerate(states_at(spec, t)):
        if not s.visible:
            continue
        p = f"{_noun(spec, i, s.colour, rng)} {rng.choice(REGION_PHRASES[region_of(s.x, s.y)])}"
        if with_motion and s.direction:
            p += f", moving {_motion(s.direction, s.speed, rng)}"
        parts.append(p)
    return parts


def caption_at(spec: SceneSpec, t: float) -> str:
    """A detailed caption of the frame at ``t`` seconds (the first key-frame's caption in DiffSW)."""
    rng = _rng(spec, f"at:{t:.3f}")
    parts = _describe_state(spec, t, rng)
    if not parts:
        return f"At {_fmt_t(t)}, the frame shows an empty {spec.background} background."
    verb = "is" if len(parts) == 1 else "are"
    return f"At {_fmt_t(t)}, {_join(parts)} {verb} visible on a plain {spec.background} background."


# ----------------------------------------------------------------------------- changes
def _event_phrases(spec: SceneSpec, t0: float, t1: float, rng: random.Random) -> list[tuple[float, str]]:
    """``(time, clause)`` for every event with ``t0 < t <= t1`` (``t0=-1`` includes time 0)."""
    out = []
    for e in spec.events:
        if not t0 < e.t <= t1:
            continue
        before = states_at(spec, e.t - 1e-6)[e.obj] if e.t > 0 else None
        after = states_at(spec, e.t)[e.obj]
        colour = before.colour if before is not None else spec.objects[e.obj].colour
        the = _the(spec, e.obj, colour)
        where = rng.choice(REGION_PHRASES[region_of(after.x, after.y)])
        if e.kind == "move":
            if before is not None and before.direction:
                verb = rng.choice(TURN_VERBS)
            else:
                verb = rng.choice(START_VERBS)
            clause = f"{the} {verb} {_motion(e.direction, e.speed, rng)}"
        elif e.kind == "stop":
            clause = f"{the} {rng.choice(['stops', 'comes to a halt', 'stops moving'])} {where}"
        elif e.kind == "colour":
            clause = f"{the} " + rng.choice([f"turns {e.colour}", f"changes colour from {colour} to {e.colour}",
                                             f"switches to {e.colour}"])
        elif e.kind == "appear":
            clause = f"{_noun(spec, e.obj, after.colour, rng)} {rng.choice(APPEAR_VERBS)} {where}"
        else:
            clause = f"{the} {rng.choice(['disappears', 'vanishes', 'disappears from view'])}"
        out.append((e.t, clause))
    return out


def _grouped(items: list[tuple[float, str]]) -> list[tuple[float, list[str]]]:
    groups: list[tuple[float, list[str]]] = []
    for t, clause in items:
        if groups and abs(groups[-1][0] - t) < 1e-9:
            groups[-1][1].append(clause)
        else:
            groups.append((t, [clause]))
    return groups


def diff_caption(spec: SceneSpec, t0: float, t1: float) -> str:
    """What changed between the frames at ``t0`` and ``t1`` (the differential caption of DiffSW)."""
    if not t1 > t0:
        raise ValueError(f"diff_caption: t1 ({t1}) must be after t0 ({t0})")
    rng = _rng(spec, f"diff:{t0:.3f}:{t1:.3f}")
    clauses = [f"at {_fmt_t(t)} " + _join(cs) for t, cs in _grouped(_event_phrases(spec, t0, t1, rng))]
    s0, s1 = states_at(spec, t0), states_at(spec, t1)
    for i, (a, b) in enumerate(zip(s0, s1)):  # where moving objects went
        if a.visible and b.visible and (a.x, a.y) != (b.x, b.y):
            r0, r1 = region_of(a.x, a.y), region_of(b.x, b.y)
            if r0 != r1:
                clauses.append(f"{_the(spec, i, b.colour)} travels from {REGION_NOUNS[r0]} to {REGION_NOUNS[r1]}")
            elif not any(e.obj == i and t0 < e.t <= t1 for e in spec.events):
                clauses.append(f"{_the(spec, i, b.colour)} keeps moving {DIRECTION_PHRASES[b.direction or a.direction][0]}")
    head = f"From {_fmt_t(t0)} to {_fmt_t(t1)}"
    if not clauses:
        return f"{head}, nothing changes."
    return f"{head}, " + "; ".join(clauses) + "."


# ----------------------------------------------------------------------------- dense
def dense_caption(spec: SceneSpec) -> str:
    """Opening scene, every change with its time, and a closing summary — several sentences."""
    rng = _rng(spec, "dense")
    start = _describe_state(spec, 0.0, rng, with_motion=False)
    bg = spec.background
    if start:
        opening = rng.choice([
            "The video opens on a plain {bg} background with {objs}.",
            "The clip starts with {objs} on a {bg} background.",
            "At the start, a plain {bg} background shows {objs}.",
        ]).format(bg=bg, objs=_join(start))
    else:
        opening = f"The video opens on an empty {bg} background."
    sentences = [opening]
    for t, clauses in _grouped(_event_phrases(spec, -1.0, spec.duration, rng)):
        lead = rng.choice(["Right from the start", "Immediately"]) if t == 0 else rng.choice(["At {t}", "At {t}", "Then at {t}"]).format(t=_fmt_t(t))
        sentences.append(f"{lead}, {_join(clauses)}.")
    if len(sentences) == 1:
        sentences.append("Nothing moves or changes for the whole clip.")
    sentences.append(_closing(spec, rng))
    return " ".join(sentences)


def _closing(spec: SceneSpec, rng: random.Random) -> str:
    end = states_at(spec, spec.duration)
    parts = []
    for i, s in enumerate(end):
        the = _the(spec, i, s.colour)
        if not s.visible:
            if any(e.obj == i and e.kind == "disappear" for e in spec.events):
                parts.append(f"{the} is gone")
            continue
        where = REGION_PHRASES[region_of(s.x, s.y)][0]
        parts.append(f"{the} is still moving {DIRECTION_PHRASES[s.direction][0]} {where}" if s.direction
                     else f"{the} rests {where}")
    n = len(spec.events)
    summary = f"In total, {n} change{'s' if n != 1 else ''} happen{'s' if n == 1 else ''} over {spec.duration:g} seconds."
    lead = rng.choice(["By the end of the clip", "In the final frame", "By the end"])
    return f"{lead}, {_join(parts)}. {summary}" if parts else summary


# ----------------------------------------------------------------------------- key-frames
def keyframe_times(spec: SceneSpec) -> list[float]:
    """0 and every distinct event time: the moments a perfect key-frame selector would keep."""
    return sorted({0.0} | {round(e.t, 6) for e in spec.events})


def keyframe_captions(spec: SceneSpec, times: list[float] | None = None) -> list[dict]:
    """DiffSW-style captions: ``[{"t": t0, "caption": detailed}, {"t": t1, "caption": diff(t0, t1)}, …]``."""
    times = sorted(times if times is not None else keyframe_times(spec))
    out = [{"t": times[0], "caption": caption_at(spec, times[0])}]
    for a, b in zip(times, times[1:]):
        out.append({"t": b, "caption": diff_caption(spec, a, b)})
    return out
