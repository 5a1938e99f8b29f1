"""True events in the detector's vocabulary, and the one rule that pairs a true event with a detected one.

Both :func:`synthworld.score.score_detection` (the detector vs the truth) and
:func:`synthworld.score.scene_following` (a generated video vs its prompt's scene) answer each true
event with at most one detected event on the object's track: :func:`match_event`.
"""

from __future__ import annotations

from synthworld.detect import DetectedEvent, Track
from synthworld.spec import SceneSpec


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


def same_change(te: DetectedEvent, de: DetectedEvent) -> bool:
    """``de`` is the change ``te`` is: the same direction for a move, the same new colour for a colour change
    (other kinds: nothing more to agree on)."""
    return (te.kind != "colour" or de.colour == te.colour) and (te.kind != "move" or de.direction == te.direction)


def match_event(te: DetectedEvent, track: Track | None, used: set[tuple[int, int]], tol: float,
                exact: bool = False) -> DetectedEvent | None:
    """The detected event on ``track`` that answers the true event ``te``, or None.

    Candidates: events of ``te``'s kind within ``tol`` seconds of it that no earlier true event
    claimed (``used`` holds ``(id(track), index in track.events)``); with ``exact`` they must also be
    :func:`same_change`. The nearest in time wins (a tie: the earlier in the track) and is added to
    ``used``, so each detected event answers at most one true event.
    """
    if track is None:
        return None
    cands = [(abs(de.t - te.t), j) for j, de in enumerate(track.events)
             if (id(track), j) not in used and de.kind == te.kind and abs(de.t - te.t) <= tol
             and (not exact or same_change(te, de))]
    if not cands:
        return None
    j = min(cands)[1]
    used.add((id(track), j))
    return track.events[j]
