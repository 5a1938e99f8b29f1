"""``oracle``: a rule-based vision-language backend for synthworld clips (GPT-4V's role in the miniature).

It answers the captioner's requests the way a VLM would — from the *pixels* it is given and the
text of earlier answers — but with rules instead of a network:

- ``detail`` (one key-frame): the synthworld detector finds the shapes in the image; the answer is
  the oracle's caption of that moment (:func:`synthworld.captions.caption_at`).
- ``diff`` (previous key-frame, current key-frame, both times, the previous answer): shapes of the
  two images are matched (shape and size first, then distance); displacement gives motion and its
  speed, a changed colour a colour change, an unmatched shape an appearance or a disappearance.
  Whether a shape was already moving comes from the previous answer's text, as in DiffSW.
- ``summary`` / ``short`` (text only: the timestamped list): the list is read back into a timeline
  and written as the oracle's dense caption / one-sentence caption. Motion that is first seen between
  two key-frames is placed at the earlier one (it started after it); colour changes, appearances and
  disappearances at the later one — so every event lands within one key-frame interval of its time.
- ``fast``: one labelled grid of key-frames; the cells are cut out and captioned as above.
- ``clip_summary``: the dense caption of a sub-span ``[start, end]`` from the stored list.
- ``recaption``: a short prompt (colours, sizes, shapes, background, "moving") → a dense caption of
  a plausible scene with those objects.
- ``claims`` / ``verify`` (a judge's text-only calls, ``t2v compare --judge``): a prompt → its atomic claims
  as JSON lines; a video's caption and one claim → ``yes`` or ``no`` (:mod:`synthworld.score.claims`).

Because it looks at pixels, it also captions generated videos. It reads the structured ``fields``
of a request (times, earlier answers) instead of parsing the prompt prose.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from captioner.backends.base import ChatRequest
from captioner.prompting import fmt_t
from synthworld import captions
from synthworld.detect import background_name, blob_centre, detect_frame, direction_of, estimate_background
from synthworld.score.claims import EVENT_TOL, claims_of, read_caption, read_claim, verdict, write_claim
from synthworld.simulate import check_inside, states_at, sub_span  # noqa: F401 (sub_span: re-exported)
from synthworld.spec import (
    BACKGROUNDS,
    COLOURS,
    DIRECTIONS,
    REGIONS,
    SHAPES,
    SPEEDS,
    Event,
    ObjectSpec,
    SceneSpec,
    region_of,
)

_COL = "|".join(COLOURS)
_SHP = "|".join(SHAPES)
_DIR = "|".join(DIRECTIONS)
_REGION_OF_PHRASE = {p: r for r, ps in captions.REGION_PHRASES.items() for p in ps}
_RGN = "|".join(sorted((re.escape(p) for p in _REGION_OF_PHRASE), key=len, reverse=True))
_SIZE_OF_WORD = {w: s for s, ws in captions.SIZE_WORDS.items() for w in ws}
_SZ = "|".join(_SIZE_OF_WORD)
_MIN_STEP = 0.012  # smallest displacement (frame fractions) counted as motion between two key-frames
_MAX_FLIP_STEP = 0.3  # farthest (frame fractions) a shape read differently may be from where it was, and be it


@dataclass
class Seen:
    """A shape seen in one image (position = bounding-box centre, frame fractions)."""

    colour: str
    shape: str
    size: str
    x: float
    y: float


def see(image: np.ndarray) -> tuple[str, list[Seen]]:
    """Background name and the shapes in one RGB image."""
    bg = estimate_background(image[None])
    out = []
    for b in detect_frame(image, bg):
        x, y = blob_centre(b)
        out.append(Seen(b.colour, b.shape, b.size, float(x), float(y)))
    return background_name(bg), out


def _region_phrase(x: float, y: float) -> str:
    return captions.REGION_PHRASES[region_of(x, y)][0]


# ----------------------------------------------------------------------------- answers from pixels
def detail(image: np.ndarray, t: float) -> str:
    bg, seen = see(image)
    if not seen:
        return f"At {fmt_t(t)}s, the frame shows an empty {bg} background."
    objs = [ObjectSpec(s.shape, s.colour, s.size, s.x, s.y) for s in seen]
    return captions.caption_at(SceneSpec(bg, objs, [], duration=t + 1.0), t)


def moving_in(text: str) -> dict[str, str]:
    """``{colour: direction}`` of the shapes an earlier answer says are moving at its end."""
    moving: dict[str, str] = {}
    for clause in _clauses(text):
        if m := re.match(rf"the ({_COL}) ({_SHP}) (?:starts moving|turns and moves|keeps moving) ({_DIR})", clause):
            moving[m[1]] = m[3]
        elif m := re.match(rf"the ({_COL}) ({_SHP}) (?:stops|disappears)", clause):
            moving.pop(m[1], None)
        elif m := re.match(rf"the ({_COL}) ({_SHP}) turns ({_COL})$", clause):
            if m[1] in moving:
                moving[m[3]] = moving.pop(m[1])
    return moving


def diff(prev: np.ndarray, cur: np.ndarray, t0: float, t1: float, previous: str = "") -> str:
    """What changed between two key-frames, in a fixed grammar the summary step reads back."""
    _, a = see(prev)
    _, b = see(cur)
    before = moving_in(previous)
    cost = np.full((max(len(a), 1), max(len(b), 1)), 10.0)
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            # a shape read differently in the next key-frame is still the same object when its colour and size
            # stay and it is near (a generated video's blob wobbles between square and circle); a shape change
            # with any other change, or far away, is another object
            dist = float(np.hypot(p.x - q.x, p.y - q.y))
            if p.shape != q.shape and (p.colour != q.colour or p.size != q.size or dist > _MAX_FLIP_STEP):
                continue
            cost[i, j] = 1.0 * (p.shape != q.shape) + 1.0 * (p.size != q.size) + dist
    pairs = [(i, j) for i, j in zip(*linear_sum_assignment(cost)) if i < len(a) and j < len(b) and cost[i, j] < 2.0]
    clauses = []
    dt = max(t1 - t0, 1e-6)
    for i, j in pairs:
        p, q = a[i], b[j]
        if q.colour != p.colour:
            clauses.append(f"the {p.colour} {p.shape} turns {q.colour}")
        was = before.get(p.colour)
        dx, dy = q.x - p.x, q.y - p.y
        if max(abs(dx), abs(dy)) >= _MIN_STEP:
            d = direction_of(dx, dy)
            speed = min(SPEEDS, key=lambda k: abs(SPEEDS[k] - max(abs(dx), abs(dy)) / dt))
            if was == d:
                clauses.append(f"the {q.colour} {q.shape} keeps moving {d}")
            elif was:
                clauses.append(f"the {q.colour} {q.shape} turns and moves {d} {speed}")
            else:
                clauses.append(f"the {q.colour} {q.shape} starts moving {d} {speed}")
        elif was:
            clauses.append(f"the {q.colour} {q.shape} stops {_region_phrase(q.x, q.y)}")
    for i in sorted(set(range(len(a))) - {i for i, _ in pairs}):
        clauses.append(f"the {a[i].colour} {a[i].shape} disappears")
    for j in sorted(set(range(len(b))) - {j for _, j in pairs}):
        q = b[j]
        clauses.append(f"a {q.size} {q.colour} {q.shape} appears {_region_phrase(q.x, q.y)}")
    head = f"From {fmt_t(t0)}s to {fmt_t(t1)}s"
    return f"{head}, " + "; ".join(clauses) + "." if clauses else f"{head}, nothing changes."


# ----------------------------------------------------------------------------- answers from text
def _clauses(text: str) -> list[str]:
    body = re.sub(r"^From [\d.]+s to [\d.]+s,\s*", "", text.strip()).rstrip(".")
    return [c.strip() for c in body.split(";") if c.strip()]


def read_timeline(keyframes: list[dict], duration: float) -> SceneSpec:
    """The oracle's own timestamped list (detail caption, then differential captions) → a scene.

    Start positions are region centres (all the text says); times follow the placement rule in the
    module docstring. Raises ``ValueError`` naming the entry it cannot read.
    """
    if not keyframes:
        raise ValueError("read_timeline: the key-frame list is empty")
    first = keyframes[0]["caption"]
    m = re.search(r"(?:plain|empty) (\w+) background", first)
    if not m or m[1] not in BACKGROUNDS:
        raise ValueError(f"read_timeline: no background named in the first key-frame caption {first[:80]!r}")
    background = m[1]
    objects: list[ObjectSpec] = []
    name: dict[str, int] = {}  # current colour -> object index
    for size, colour, shape, where in re.findall(rf"\ba ({_SZ}) ({_COL}) ({_SHP}) ({_RGN})", first):
        x, y = REGIONS[_REGION_OF_PHRASE[where]]
        name[colour] = len(objects)
        objects.append(ObjectSpec(shape, colour, _SIZE_OF_WORD[size], x, y))
    events: list[Event] = []
    votes: dict[int, list[str]] = {i: [o.shape] for i, o in enumerate(objects)}  # shapes an object is called by
    for k, kf in enumerate(keyframes[1:], start=1):
        text = kf["caption"]
        hm = re.match(r"From ([\d.]+)s to ([\d.]+)s,", text)
        t0, t1 = (float(hm[1]), float(hm[2])) if hm else (float(keyframes[k - 1]["t"]), float(kf["t"]))
        for clause in _clauses(text):
            if (m := re.match(rf"the ({_COL}) ({_SHP}) ", clause)) and m[1] in name:
                votes[name[m[1]]].append(m[2])
            if m := re.match(rf"the ({_COL}) ({_SHP}) (?:starts moving|turns and moves) ({_DIR}) (\w+)", clause):
                if m[1] in name:
                    events.append(Event(t0, name[m[1]], "move", direction=m[3], speed=SPEEDS.get(m[4], SPEEDS["slowly"])))
            elif m := re.match(rf"the ({_COL}) ({_SHP}) stops", clause):
                if m[1] in name:
                    events.append(Event(t0, name[m[1]], "stop"))
            elif m := re.match(rf"the ({_COL}) ({_SHP}) turns ({_COL})$", clause):
                if m[1] in name:
                    name[m[3]] = name.pop(m[1])
                    events.append(Event(t1, name[m[3]], "colour", colour=m[3]))
            elif m := re.match(rf"the ({_COL}) ({_SHP}) disappears", clause):
                if m[1] in name:
                    events.append(Event(t1, name.pop(m[1]), "disappear"))
            elif m := re.match(rf"a (\w+) ({_COL}) ({_SHP}) appears ({_RGN})", clause):
                x, y = REGIONS[_REGION_OF_PHRASE[m[4]]]
                name[m[2]] = len(objects)
                votes[len(objects)] = [m[3]]
                objects.append(ObjectSpec(m[3], m[2], m[1] if m[1] in ("small", "large") else "small", x, y,
                                          visible=False))
                events.append(Event(t1, name[m[2]], "appear"))
    # the shape it is called by most often (a tie: the first): a generated blob read as a square in one key-frame
    # and a circle in the next three is a circle
    objects = [dataclasses.replace(o, shape=Counter(votes[i]).most_common(1)[0][0]) for i, o in enumerate(objects)]
    if not objects:
        objects.append(ObjectSpec("circle", "red", "small", 0.5, 0.5, visible=False))  # nothing seen: empty scene
    events = [e for e in events if 0 <= e.t < duration and (e.t > 0 or e.kind == "move")]
    events.sort(key=lambda e: (e.t, e.obj))
    return SceneSpec(background, objects, events, duration=duration)


def recaption(prompt: str, duration: float = 4.0) -> str:
    """A short prompt → a dense caption of a plausible scene with the objects it names."""
    bgm = re.search(r"\b(" + "|".join(BACKGROUNDS) + r")\b", prompt)
    bg = bgm[1] if bgm else "black"
    found = re.findall(rf"\b(?:({_SZ}) )?({_COL}) ({_SHP})", prompt)[:3]
    if not found:
        raise ValueError(f"recaption: the oracle finds no '<colour> <shape>' in the prompt {prompt[:80]!r}")
    seed = int(hashlib.sha1(prompt.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    regions = [str(r) for r in rng.permutation(list(REGIONS))]
    objs = [ObjectSpec(shape, colour, _SIZE_OF_WORD.get(size, "small"), *REGIONS[regions[i]])
            for i, (size, colour, shape) in enumerate(found)]
    moving = re.search(r"\bmov(?:e|es|ing)\b", prompt) is not None
    events: list[Event] = []
    if moving:
        for i in range(len(objs)):
            for d in rng.permutation(list(DIRECTIONS)):
                trial = SceneSpec(bg, objs, sorted(events + [Event(0.5, i, "move", str(d), SPEEDS["slowly"])],
                                                   key=lambda e: (e.t, e.obj)), duration)
                try:
                    check_inside(trial)
                except ValueError:
                    continue
                events = trial.events
                break
    return captions.dense_caption(SceneSpec(bg, objs, events, duration=duration, seed=seed))


# ----------------------------------------------------------------------------- a judge's text-only calls
def judge_claims(prompt: str) -> str:
    """A prompt → its atomic claims (:func:`synthworld.score.claims.claims_of`), one JSON object per line."""
    facts = claims_of(prompt)
    if len(facts) <= 1:  # the count alone: no object or event in the oracle's vocabulary
        raise ValueError(f"claims: the oracle finds no '<colour> <shape>' object in the prompt {prompt[:80]!r}")
    return "\n".join(json.dumps({"type": f.type, "claim": write_claim(f)}) for f in facts)


def judge_verify(caption: str, claim: str, tol: float = EVENT_TOL) -> str:
    """``yes`` / ``no``: is ``claim`` (the oracle's claim grammar) true of the video ``caption`` describes?"""
    return "yes" if verdict(read_claim(claim), read_caption(caption), tol) else "no"


# ----------------------------------------------------------------------------- the backend
def split_grid(image: np.ndarray, rows: int, cols: int, cell: int, label_height: int = 0) -> list[np.ndarray]:
    """Cells of a key-frame grid (left to right, top to bottom), without their label strips."""
    out = []
    for r in range(rows):
        for c in range(cols):
            y0 = r * (cell + label_height) + label_height
            out.append(image[y0:y0 + cell, c * cell:(c + 1) * cell])
    return out


class OracleBackend:
    """The synthworld oracle behind the :class:`~captioner.backends.base.VLMBackend` interface."""

    name = "oracle"

    def generate(self, requests: list[ChatRequest]) -> list[str | Exception]:
        out: list[str | Exception] = []
        for r in requests:
            try:
                out.append(self._answer(r))
            except Exception as e:  # one unreadable request fails alone
                out.append(e)
        return out

    def _answer(self, r: ChatRequest) -> str:
        f, imgs = r.fields, r.images
        if r.task == "detail":
            return detail(imgs[0], float(f["t"]))
        if r.task == "diff":
            return diff(imgs[0], imgs[1], float(f["t_prev"]), float(f["t"]), f.get("previous", ""))
        if r.task in ("summary", "short"):
            kfs = f["keyframes"] if "keyframes" in f else self._grid_timeline(imgs[0], f)  # short in fast mode
            spec = read_timeline(kfs, float(f["duration"]))
            return captions.dense_caption(spec) if r.task == "summary" else captions.short_caption(spec)
        if r.task == "clip_summary":
            spec = read_timeline(f["keyframes"], float(f["duration"]))
            return captions.dense_caption(sub_span(spec, float(f["start"]), float(f["end"])))
        if r.task == "fast":
            return captions.dense_caption(read_timeline(self._grid_timeline(imgs[0], f), float(f["duration"])))
        if r.task == "recaption":
            return recaption(f["prompt"], float(f.get("duration", 4.0)))
        if r.task == "claims":
            return judge_claims(f["prompt"])
        if r.task == "verify":
            return judge_verify(f["caption"], f["claim"], float(f.get("tolerance", EVENT_TOL)))
        raise ValueError(f"the oracle backend cannot answer task {r.task!r} (it answers the captioner's tasks only)")

    @staticmethod
    def _grid_timeline(grid: np.ndarray, f: dict) -> list[dict]:
        """Caption the cells of a key-frame grid as DiffSW would: detail, then differences."""
        cells = split_grid(grid, int(f["rows"]), int(f["cols"]), int(f["cell"]), int(f.get("label_height", 0)))
        times = [float(t) for t in f["times"]]
        kfs = [{"t": times[0], "caption": detail(cells[0], times[0])}]
        for k in range(1, len(times)):
            kfs.append({"t": times[k], "caption": diff(cells[k - 1], cells[k], times[k - 1], times[k],
                                                      kfs[-1]["caption"])})
        return kfs
