"""Compare a detection against a scene's ground truth, attribute by attribute.

Objects are matched to tracks by where they are over the clip (Hungarian assignment on the mean
distance between the true and detected positions in frames where both exist). Then, per object:
colour (when first visible), shape, size; per true event: found (same kind within one frame, same
direction / new colour), direction of each move, and the timing error. Detected events that match
no true event are counted as spurious.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from synthworld.detect import DetectedEvent, Detection, Track
from synthworld.render import frame_times
from synthworld.simulate import states_at
from synthworld.spec import Event, SceneSpec, region_of


@dataclass
class SceneScore:
    """Counts of correct / total per attribute, and event timing errors (seconds)."""

    correct: Counter = field(default_factory=Counter)
    total: Counter = field(default_factory=Counter)
    time_errors: list[float] = field(default_factory=list)
    spurious_events: int = 0
    failures: list[str] = field(default_factory=list)  # human-readable misses, for debugging

    def add(self, attr: str, ok: bool, why: str = "") -> None:
        self.total[attr] += 1
        self.correct[attr] += int(ok)
        if not ok and why:
            self.failures.append(f"{attr}: {why}")

    def merge(self, other: SceneScore) -> SceneScore:
        self.correct.update(other.correct)
        self.total.update(other.total)
        self.time_errors += other.time_errors
        self.spurious_events += other.spurious_events
        self.failures += other.failures
        return self

    def accuracy(self) -> dict[str, float]:
        return {k: self.correct[k] / self.total[k] for k in sorted(self.total)}


def true_events(spec: SceneSpec) -> list[tuple[int, DetectedEvent]]:
    """Ground-truth events as ``(object index, event)`` in the detector's vocabulary."""
    out = []
    colour = {i: o.colour for i, o in enumerate(spec.objects)}
    for e in spec.events:
        ev = DetectedEvent(t=e.t, kind=e.kind, direction=e.direction, speed=e.speed)
        if e.kind == "colour":
            ev.colour, ev.previous = e.colour, colour[e.obj]
            colour[e.obj] = e.colour
        out.append((e.obj, ev))
    return out


def score_detection(spec: SceneSpec, det: Detection, tol_frames: float = 1.0) -> SceneScore:
    """Score ``det`` (from a clip of ``spec`` at ``det.fps``) against the truth."""
    sc = SceneScore()
    times = frame_times(spec.duration, det.fps)[: det.num_frames]
    truth = [states_at(spec, float(t)) for t in times]  # [frame][object]
    n_obj, n_tr = len(spec.objects), len(det.tracks)
    # 1. match objects to tracks by trajectory distance
    cost = np.full((n_obj, max(n_tr, 1)), 10.0)
    for o in range(n_obj):
        for k, tr in enumerate(det.tracks):
            d = [np.hypot(p[0] - truth[i][o].x, p[1] - truth[i][o].y)
                 for i in range(len(times)) if truth[i][o].visible and (p := tr.position(i)) is not None]
            if d:
                cost[o, k] = float(np.mean(d)) + 0.5 * (1 - len(d) / max(len(tr.seen()), 1))
    pairs = {o: k for o, k in zip(*linear_sum_assignment(cost)) if cost[o, k] < 0.1} if n_tr else {}
    # 2. per-object attributes
    for o, obj in enumerate(spec.objects):
        first_vis = next((i for i in range(len(times)) if truth[i][o].visible), None)
        if first_vis is None:
            continue
        k = pairs.get(o)
        name = f"object {o} ({obj.size} {truth[first_vis][o].colour} {obj.shape})"
        if k is None:
            for attr in ("found", "colour", "shape", "size"):
                sc.add(attr, False, f"{name} not detected")
            continue
        tr = det.tracks[k]
        sc.add("found", True)
        sc.add("colour", tr.colour == truth[first_vis][o].colour, f"{name} seen as {tr.colour}")
        sc.add("shape", tr.shape == obj.shape, f"{name} seen as {tr.shape}")
        sc.add("size", tr.size == obj.size, f"{name} seen as {tr.size}")
    # 3. events: each true event must have a detected twin on the matched track within tolerance
    tol = tol_frames / det.fps + 1e-6
    used: set[tuple[int, int]] = set()
    for o, te in true_events(spec):
        k = pairs.get(o)
        cands = [] if k is None else [
            (abs(de.t - te.t), j) for j, de in enumerate(det.tracks[k].events)
            if de.kind == te.kind and (k, j) not in used and abs(de.t - te.t) <= 2 * tol
        ]
        label = f"object {o} {te.kind} at {te.t}s"
        if te.kind == "move":
            any_move = [] if k is None else [
                (abs(de.t - te.t), de) for de in det.tracks[k].events if de.kind == "move" and abs(de.t - te.t) <= 2 * tol
            ]
            got = min(any_move, key=lambda p: p[0])[1].direction if any_move else None
            sc.add("direction", got == te.direction, f"{label}: direction {te.direction} seen as {got}")
        if not cands:
            sc.add("event", False, f"{label}: not detected")
            sc.add("event_time", False)
            continue
        dt, j = min(cands)
        de = det.tracks[k].events[j]
        used.add((k, j))
        sc.time_errors.append(de.t - te.t)
        same = (te.kind != "colour" or de.colour == te.colour) and (te.kind != "move" or de.direction == te.direction)
        sc.add("event", same, f"{label}: seen as {de.kind} {de.direction or de.colour or ''}")
        sc.add("event_time", dt <= tol, f"{label}: seen at {de.t:.3f}s")
    sc.spurious_events = sum(
        1 for k, tr in enumerate(det.tracks) for j, _ in enumerate(tr.events) if (k, j) not in used
    )
    return sc


def evaluate_detector(
    seeds: Iterable[int],
    size: int = 64,
    fps: float = 8.0,
    seconds: float = 4.0,
    noise: float = 8.0,
    blur_sigma: float = 0.8,
    roundtrip: Callable[[np.ndarray, float], np.ndarray] | None = None,
    progress: bool = False,
) -> SceneScore:
    """Render, degrade (blur, noise, then ``roundtrip`` e.g. an mp4 encode/decode), detect and score
    the random scenes of ``seeds``; returns the summed score."""
    from tqdm import tqdm

    from synthworld.degrade import add_noise, blur
    from synthworld.detect import detect_video
    from synthworld.generate import random_scene
    from synthworld.render import render

    total = SceneScore()
    seeds = list(seeds)
    for s in tqdm(seeds, desc="scenes", unit="scene", disable=not progress):
        spec = random_scene(s, duration=seconds)
        frames = add_noise(blur(render(spec, size=size, fps=fps), blur_sigma), noise, seed=s)
        if roundtrip is not None:
            frames = roundtrip(frames, fps)
        sc = score_detection(spec, detect_video(frames, fps))
        sc.failures = [f"seed {s}: {f}" for f in sc.failures]
        total.merge(sc)
    return total


# ----------------------------------------------------------------------------- prompt following
PROMPT_CATEGORIES = ("colour", "shape", "direction", "count")


def _match_start(spec: SceneSpec, det: Detection) -> tuple[list[tuple[int, Track | None]], list[Track]]:
    """Pair the objects visible at t = 0 with the tracks present from the start (first frame ≤ 1).

    Hungarian assignment on colour and shape agreement (a colour mismatch costs 2, a shape mismatch
    1), then start position. Returns ``[(object index, its track or None)]`` and the start tracks.
    """
    start = states_at(spec, 0.0)
    objs = [i for i, s in enumerate(start) if s.visible]
    tracks = [tr for tr in det.tracks if tr.first <= 1]  # present from the start
    cost = np.zeros((len(objs), max(len(tracks), 1))) + 10.0
    for a, i in enumerate(objs):
        for b, tr in enumerate(tracks):
            x, y = tr.position(tr.first) or (0.5, 0.5)
            cost[a, b] = (2.0 * (tr.colour != start[i].colour) + 1.0 * (tr.shape != spec.objects[i].shape)
                          + 0.5 * float(np.hypot(x - start[i].x, y - start[i].y)))
    pairs = dict(zip(*linear_sum_assignment(cost))) if tracks and objs else {}
    return [(i, tracks[pairs[a]] if a in pairs else None) for a, i in enumerate(objs)], tracks


def _start_hits(spec: SceneSpec, matches: list[tuple[int, Track | None]], n_tracks: int,
                out: dict[str, list[bool]]) -> None:
    """Append the ``colour``, ``shape``, ``direction`` and ``count`` hits of :func:`prompt_following` to ``out``."""
    start = states_at(spec, 0.0)
    for i, tr in matches:
        out["colour"].append(tr is not None and tr.colour == start[i].colour)
        out["shape"].append(tr is not None and tr.shape == spec.objects[i].shape)
        moves = {de.direction for de in tr.events if de.kind == "move"} if tr is not None else set()
        for e in spec.events:
            if e.obj == i and e.kind == "move":
                out["direction"].append(e.direction in moves)
    out["count"].append(n_tracks == len(matches))


def prompt_following(spec: SceneSpec, det: Detection) -> dict[str, list[bool]]:
    """How well a (generated) video follows the scene its prompt describes.

    Objects visible at the start are matched to detected tracks (Hungarian on colour and shape
    agreement, then start position). Per object: ``colour`` and ``shape`` of its matched track;
    per move event of a matched object: ``direction`` — the track moves that way at some point;
    ``count``: as many tracks as objects visible at the start. An unmatched object fails them all.
    Returns per category a list of hits (one per judged item).
    """
    out: dict[str, list[bool]] = {c: [] for c in PROMPT_CATEGORIES}
    matches, tracks = _match_start(spec, det)
    _start_hits(spec, matches, len(tracks), out)
    return out


# ----------------------------------------------------------------------------- captions vs truth
_KIND_WORDS = {
    "move": r"(?:mov|slid|heads)",
    "stop": r"(?:stop|halt)",
    "colour": r"(?:turns|switches to|to)",
    "appear": r"(?:appears|pops up)",
    "disappear": r"(?:disappear|vanish)",
}


def timed_sentences(dense: str) -> list[tuple[float, str]]:
    """``(time, sentence)`` for every sentence of a dense caption that states when it happens."""
    out = []
    for s in re.split(r"(?<=\.)\s+", dense):
        if re.match(r"(?:Right from the start|Immediately)\b", s):
            out.append((0.0, s))
        elif m := re.match(r"(?:Then at|At) (\d+(?:\.\d+)?)s\b", s):
            out.append((float(m[1]), s))
    return out


def caption_names_events(spec: SceneSpec, dense: str, tol: float) -> list[tuple[Event, bool]]:
    """For each true event: does a sentence within ``tol`` seconds of it name it?

    Named = the sentence mentions the object (its colour just before the event and its shape), a
    word of the event's kind, and the direction (moves) or the new colour (colour changes).
    """
    sentences = timed_sentences(dense)
    out = []
    for e in spec.events:
        before = states_at(spec, e.t - 1e-6)[e.obj] if e.t > 0 else states_at(spec, 0.0)[e.obj]
        obj = f"{before.colour} {spec.objects[e.obj].shape}"
        if e.kind == "appear":
            obj = f"{states_at(spec, e.t)[e.obj].colour} {spec.objects[e.obj].shape}"
        need = [obj, _KIND_WORDS[e.kind]]
        if e.kind == "move":
            need.append(e.direction)
        if e.kind == "colour":
            need.append(e.colour)
        ok = any(abs(t - e.t) <= tol + 1e-6 and all(re.search(w, c) for w in need)
                 for t, s in sentences for c in re.split(r",? and (?=the |a )|; ", s))
        out.append((e, ok))
    return out


# ----------------------------------------------------------------------------- scene following
SCENE_CATEGORIES = ("colour", "shape", "binding", "position", "direction", "events", "count")


def scene_following(spec: SceneSpec, det: Detection, tol_frames: float = 1.0) -> dict[str, list[bool]]:
    """Prompt following by category, including *when* things happen (for dense, timed prompts).

    Objects visible at t = 0 are matched to the tracks present from the start exactly as in
    :func:`prompt_following`, and ``colour``, ``shape``, ``direction`` and ``count`` are its items.
    Added:

    - ``binding`` — the right colour on the right shape: per object, its matched track has both.
      Judged only when ≥ 2 objects are visible at the start (a lone object cannot mix attributes
      up; it has no items then). The matching weighs colour above shape, so for "a red circle and
      a blue square" a video of a red square and a blue circle is matched colour to colour: it
      hits ``colour`` for both objects, misses ``shape`` and ``binding`` for both. Per object,
      binding is thus colour ∧ shape of the matched track — by design: it counts the objects that
      are entirely right.
    - ``position`` — per object, its matched track starts in the 3×3 region where the object
      starts (the region the dense prompt names: "in the top-left corner", "on the right").
    - ``events`` — the right change at the right second: per true event, a detected event of the
      same kind (same direction for a move or turn, same new colour for a colour change) on the
      object's track, within ``tol_frames`` frames of the true time; each detected event answers
      at most one true event. An ``appear`` hits when some unclaimed track starts within the
      tolerance with the object's colour and shape; that track is then the object's track for its
      later events (so an object that never appears fails them too). Moves at t = 0 are not
      events — the motion is there from the first frame, there is no change to time — they are
      judged as ``direction`` items only.

    Returns per category a list of hits (one per judged item).
    """
    out: dict[str, list[bool]] = {c: [] for c in SCENE_CATEGORIES}
    # 1. objects present from the start: the four categories of prompt_following
    matches, tracks = _match_start(spec, det)
    _start_hits(spec, matches, len(tracks), out)
    # 2. binding: colour and shape together on the matched track
    if len(matches) >= 2:
        start = states_at(spec, 0.0)
        out["binding"] = [tr is not None and tr.colour == start[i].colour and tr.shape == spec.objects[i].shape
                          for i, tr in matches]
    # 3. position: the matched track starts in the 3×3 region the prompt names for the object
    start = states_at(spec, 0.0)
    for i, tr in matches:
        pos = tr.position(tr.first) if tr is not None else None
        out["position"].append(pos is not None and region_of(*pos) == region_of(start[i].x, start[i].y))
    # 4. events, in time order; an object's track changes when it (re)appears
    tol = tol_frames / det.fps + 1e-6
    track_of: dict[int, Track | None] = dict(matches)
    claimed = {id(tr) for tr in track_of.values() if tr is not None}
    used: set[tuple[int, int]] = set()  # (id(track), index of the detected event)
    for o, te in true_events(spec):
        if te.kind == "move" and te.t == 0:
            continue
        if te.kind == "appear":
            st = states_at(spec, te.t)[o]
            cands = [tr for tr in det.tracks if id(tr) not in claimed and abs(tr.first / det.fps - te.t) <= tol
                     and tr.colour == st.colour and tr.shape == spec.objects[o].shape]
            tr = min(cands, key=lambda tr: np.hypot(*np.subtract(tr.position(tr.first), (st.x, st.y))), default=None)
            track_of[o] = tr
            if tr is not None:
                claimed.add(id(tr))
            out["events"].append(tr is not None)
            continue
        tr = track_of.get(o)
        cands = [] if tr is None else [
            (abs(de.t - te.t), j) for j, de in enumerate(tr.events)
            if (id(tr), j) not in used and abs(de.t - te.t) <= tol and de.kind == te.kind
            and (te.kind != "move" or de.direction == te.direction)
            and (te.kind != "colour" or de.colour == te.colour)
        ]
        if cands:
            used.add((id(tr), min(cands)[1]))
        out["events"].append(bool(cands))
    return out
