"""Prompt following: how well a (generated) video follows the scene its prompt describes.

The synthworld detector reads the video; :func:`scene_following` scores what it read against the
scene, per category of :data:`SCENE_CATEGORIES` (the categories of a ``t2v compare`` report).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from synthworld.detect import Detection, Track
from synthworld.score.events import match_event, true_events
from synthworld.simulate import states_at
from synthworld.spec import SceneSpec, region_of

SCENE_CATEGORIES = ("colour", "shape", "binding", "position", "direction", "events", "count")


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
    """Append the ``colour``, ``shape``, ``direction`` and ``count`` hits of :func:`scene_following` to ``out``."""
    start = states_at(spec, 0.0)
    for i, tr in matches:
        out["colour"].append(tr is not None and tr.colour == start[i].colour)
        out["shape"].append(tr is not None and tr.shape == spec.objects[i].shape)
        moves = {de.direction for de in tr.events if de.kind == "move"} if tr is not None else set()
        for e in spec.events:
            if e.obj == i and e.kind == "move":
                out["direction"].append(e.direction in moves)
    out["count"].append(n_tracks == len(matches))


def scene_following(spec: SceneSpec, det: Detection, tol_frames: float = 1.0) -> dict[str, list[bool]]:
    """Prompt following by category, including *when* things happen (for dense, timed prompts).

    Objects visible at t = 0 are matched to the tracks present from the start (Hungarian on colour
    and shape agreement, then start position). Per object: ``colour`` and ``shape`` of its matched
    track; per move event of a matched object: ``direction`` — the track moves that way at some
    point; ``count``: as many tracks present from the start as objects visible then. An unmatched
    object fails them all. And:

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
    # 1. objects present from the start: colour, shape, direction, count
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
        hit = match_event(te, track_of.get(o), used, tol, exact=True)
        out["events"].append(hit is not None)
    return out
