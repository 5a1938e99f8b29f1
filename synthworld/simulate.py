"""The world's physics: where every object is, what colour, whether visible, at any time.

Motion is piecewise linear. An event at time ``t`` is in effect at ``t`` itself (a frame rendered at
exactly ``t`` already shows it); a move starting at ``t0`` has moved ``speed · (t − t0)`` by time t.
"""

from __future__ import annotations

from dataclasses import dataclass

from synthworld.spec import DIRECTIONS, Event, ObjectSpec, SceneSpec

_EPS = 1e-9


@dataclass(frozen=True)
class ObjectState:
    x: float
    y: float
    colour: str
    visible: bool
    direction: str | None  # None when still
    speed: float


def states_at(spec: SceneSpec, t: float) -> list[ObjectState]:
    """State of every object at time ``t`` (seconds), in object order."""
    out = []
    for i, o in enumerate(spec.objects):
        x, y, colour, visible, direction, speed, t_last = o.x, o.y, o.colour, o.visible, None, 0.0, 0.0
        for e in spec.events:
            if e.obj != i or e.t > t + _EPS:
                continue
            if direction is not None:  # integrate the motion up to this event
                dx, dy = DIRECTIONS[direction]
                x, y = x + dx * speed * (e.t - t_last), y + dy * speed * (e.t - t_last)
            t_last = e.t
            if e.kind == "move":
                direction, speed = e.direction, float(e.speed)
            elif e.kind == "stop":
                direction, speed = None, 0.0
            elif e.kind == "colour":
                colour = e.colour
            elif e.kind == "appear":
                visible = True
            elif e.kind == "disappear":
                visible, direction, speed = False, None, 0.0
        if direction is not None:
            dx, dy = DIRECTIONS[direction]
            x, y = x + dx * speed * (t - t_last), y + dy * speed * (t - t_last)
        out.append(ObjectState(x, y, colour, visible, direction, speed))
    return out


def sample_times(spec: SceneSpec, step: float = 1 / 32) -> list[float]:
    """Times covering the clip finely enough to check bounds and overlaps (plus every event time)."""
    n = int(spec.duration / step) + 1
    times = {round(k * step, 9) for k in range(n)} | {e.t for e in spec.events} | {spec.duration}
    return sorted(times)


def check_inside(spec: SceneSpec, margin: float = 0.0) -> None:
    """Raise ``ValueError`` naming the object and time if a visible object leaves the frame."""
    for t in sample_times(spec):
        for i, (o, s) in enumerate(zip(spec.objects, states_at(spec, t))):
            if not s.visible:
                continue
            h = o.half + margin
            if s.x - h < -_EPS or s.x + h > 1 + _EPS or s.y - h < -_EPS or s.y + h > 1 + _EPS:
                raise ValueError(
                    f"scene spec: object {i} ({o.size} {o.shape}) leaves the frame at {t:.2f}s "
                    f"(centre at x={s.x:.3f}, y={s.y:.3f}); lower its speed or stop it earlier"
                )


def min_gap(spec: SceneSpec) -> float:
    """Smallest gap between the bounding boxes of two visible objects over the clip (< 0: overlap)."""
    gap = float("inf")
    for t in sample_times(spec):
        st = states_at(spec, t)
        for i in range(len(st)):
            for j in range(i + 1, len(st)):
                if not (st[i].visible and st[j].visible):
                    continue
                reach = spec.objects[i].half + spec.objects[j].half
                gap = min(gap, max(abs(st[i].x - st[j].x), abs(st[i].y - st[j].y)) - reach)
    return gap


def sub_span(spec: SceneSpec, start: float, end: float) -> SceneSpec:
    """The part of a scene between ``start`` and ``end`` seconds as a scene of its own (times from 0)."""
    objs = []
    for o, s in zip(spec.objects, states_at(spec, start)):
        objs.append(ObjectSpec(o.shape, s.colour, o.size, s.x, s.y, visible=s.visible))
    events = [Event(max(e.t - start, 0.0), e.obj, e.kind, e.direction, e.speed, e.colour)
              for e in spec.events if start < e.t < end]
    for i, s in enumerate(states_at(spec, start)):  # shapes already moving keep moving from 0 s
        if s.direction and s.visible:
            events.append(Event(0.0, i, "move", direction=s.direction, speed=s.speed))
    events.sort(key=lambda e: (e.t, e.obj))
    return SceneSpec(spec.background, objs, events, duration=end - start)
