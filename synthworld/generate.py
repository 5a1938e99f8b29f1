"""Random scenes by seed: 1–3 shapes, each with a short story of events, never overlapping."""

from __future__ import annotations

import numpy as np

from synthworld.simulate import check_inside, min_gap, states_at
from synthworld.spec import (
    BACKGROUNDS,
    COLOURS,
    DIRECTIONS,
    REGIONS,
    SHAPES,
    SIZES,
    SPEEDS,
    Event,
    ObjectSpec,
    SceneSpec,
)

MIN_GAP = 0.05  # smallest gap between two objects' boxes (frame fractions): keeps blobs separable
EVENT_STEP = 0.5  # event times fall on a 0.5 s grid, like the paper's timestamps


def random_scene(
    seed: int,
    duration: float = 4.0,
    num_objects: int | None = None,
    max_events_per_object: int = 3,
    max_objects: int = 3,
) -> SceneSpec:
    """A random, valid scene; the same ``seed`` always gives the same scene.

    ``num_objects`` fixes the object count; otherwise it is drawn from 1..``max_objects`` (weights
    0.3/0.4/0.3 for the full world). Each object gets 1..``max_events_per_object`` events.
    """
    if not 1 <= max_objects <= 3:
        raise ValueError(f"max_objects must be 1..3, got {max_objects}")
    if max_events_per_object < 1:
        raise ValueError(f"max_events_per_object must be >= 1, got {max_events_per_object}")
    rng = np.random.default_rng(seed)
    weights = np.array([0.3, 0.4, 0.3][:max_objects])
    n = int(num_objects or rng.choice(np.arange(1, max_objects + 1), p=weights / weights.sum()))
    background = str(rng.choice(list(BACKGROUNDS)))
    colours = [str(c) for c in rng.permutation(list(COLOURS))]
    spare = colours[n:]  # colours no object starts with: used by colour changes, so colours stay unique
    regions = [str(r) for r in rng.permutation(list(REGIONS))]

    spec = SceneSpec(background=background, objects=[], events=[], duration=duration, seed=seed)
    for _ in range(n):
        obj = _place(rng, spec, regions, colours[len(spec.objects)])
        if obj is None:  # no free spot clear of the others' paths: fewer objects
            break
        i = len(spec.objects) - 1
        for _attempt in range(40):
            story = _random_story(rng, spec, i, spare, max_events_per_object)
            trial = SceneSpec(background, spec.objects, sorted(spec.events + story, key=lambda e: e.t),
                              duration, seed)
            obj.visible = not any(e.kind == "appear" for e in story)
            try:
                check_inside(trial)
            except ValueError:
                continue
            if len(spec.objects) == 1 or min_gap(trial) >= MIN_GAP:
                spec.events = trial.events
                for e in story:
                    if e.kind == "colour":
                        spare.remove(e.colour)
                break
        else:
            obj.visible = True  # no story fits: the object stays put
    spec.events.sort(key=lambda e: (e.t, e.obj))
    spec.validate()
    return spec


def _place(rng: np.random.Generator, spec: SceneSpec, regions: list[str], colour: str) -> ObjectSpec | None:
    """Add a still object in the first free region where it keeps clear of every other object's path."""
    shape = str(rng.choice(SHAPES))
    sizes = [str(rng.choice(list(SIZES)))]
    sizes += [s for s in SIZES if s not in sizes]
    while regions:
        region = regions.pop(0)
        cx, cy = REGIONS[region]
        jx, jy = rng.uniform(-0.03, 0.03, size=2)
        for size in sizes:
            h = SIZES[size]
            obj = ObjectSpec(shape=shape, colour=colour, size=size,
                             x=float(np.clip(cx + jx, h, 1 - h)), y=float(np.clip(cy + jy, h, 1 - h)))
            spec.objects.append(obj)
            if len(spec.objects) == 1 or min_gap(spec) >= MIN_GAP:
                return obj
            spec.objects.pop()
    return None


def _random_story(rng: np.random.Generator, spec: SceneSpec, i: int, spare: list[str], max_events: int) -> list[Event]:
    """A few events for object ``i`` at increasing times on the EVENT_STEP grid, at least one step apart."""
    grid = np.arange(0.0, spec.duration - EVENT_STEP / 2, EVENT_STEP)
    k = int(rng.integers(1, max_events + 1))
    times = sorted(rng.choice(grid, size=min(k, len(grid)), replace=False).tolist())
    story: list[Event] = []
    moving: str | None = None
    hidden = bool(rng.random() < 0.15) and times[0] > 0
    free = list(spare)
    for j, t in enumerate(times):
        if j == 0 and hidden:
            story.append(Event(t=t, obj=i, kind="appear"))
            continue
        options = ["move", "move", "colour"] if moving is None else ["stop", "stop", "move", "colour"]
        if j == len(times) - 1 and j > 0:
            options.append("disappear")
        kind = str(rng.choice(options)) if t > 0 else "move"  # at 0 s only motion is an event
        if kind == "colour" and not free:
            kind = "move" if moving is None else "stop"
        if kind == "move":
            dirs = [d for d in DIRECTIONS if d != moving and _room(spec, i, t, d, story) > 0.15]
            if not dirs:
                break
            d = str(rng.choice(dirs))
            story.append(Event(t=t, obj=i, kind="move", direction=d, speed=SPEEDS[str(rng.choice(list(SPEEDS)))]))
            moving = d
        elif kind == "stop":
            story.append(Event(t=t, obj=i, kind="stop"))
            moving = None
        elif kind == "colour":
            c = str(rng.choice(free))
            free.remove(c)
            story.append(Event(t=t, obj=i, kind="colour", colour=c))
        else:
            story.append(Event(t=t, obj=i, kind="disappear"))
            break
    return story


def _room(spec: SceneSpec, i: int, t: float, direction: str, story: list[Event]) -> float:
    """Free distance ahead of object ``i`` in ``direction`` at time ``t`` (frame fractions)."""
    trial = SceneSpec(spec.background, spec.objects, sorted(spec.events + story, key=lambda e: e.t), spec.duration)
    s = states_at(trial, t)[i]
    h = spec.objects[i].half
    dx, dy = DIRECTIONS[direction]
    if dx:
        return (1 - h - s.x) if dx > 0 else (s.x - h)
    return (1 - h - s.y) if dy > 0 else (s.y - h)
