"""Scene specification of the synthetic world: objects, a timeline of events, JSON round trip.

Coordinates are normalised to the frame: ``x`` grows to the right, ``y`` grows *down*, both in
[0, 1]. An object's ``(x, y)`` is the centre of its bounding box and its half-extent is
``SIZES[size]`` (a circle's radius, half a square's side, half a triangle's base and height).
Speeds are in frame-widths per second.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

# Named colours, chosen far apart from each other and from every background (RGB, uint8).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 40, 40),
    "orange": (250, 140, 20),
    "yellow": (245, 225, 30),
    "green": (40, 175, 60),
    "cyan": (30, 210, 225),
    "blue": (40, 80, 230),
    "purple": (150, 50, 210),
    "pink": (255, 130, 200),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "gray": (120, 120, 120),
    "black": (15, 15, 15),
    "white": (240, 240, 240),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: dict[str, float] = {"small": 0.09, "large": 0.14}
SPEEDS: dict[str, float] = {"slowly": 0.12, "quickly": 0.24}
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
EVENT_KINDS: tuple[str, ...] = ("move", "stop", "colour", "appear", "disappear")

# A 3×3 grid of named regions; a region's centre is where a scene places an object by name.
_THIRDS = {0: "top", 1: "", 2: "bottom"}
_COLS = {0: "left", 1: "", 2: "right"}
REGIONS: dict[str, tuple[float, float]] = {}
for _r in range(3):
    for _c in range(3):
        _name = "-".join(p for p in (_THIRDS[_r], _COLS[_c]) if p) or "center"
        REGIONS[_name] = ((2 * _c + 1) / 6, (2 * _r + 1) / 6)


def region_of(x: float, y: float) -> str:
    """Name of the 3×3 grid cell that contains the normalised point (x, y)."""
    col = min(max(int(x * 3), 0), 2)
    row = min(max(int(y * 3), 0), 2)
    return "-".join(p for p in (_THIRDS[row], _COLS[col]) if p) or "center"


def speed_name(speed: float) -> str:
    """The named speed nearest to ``speed`` (frame-widths per second)."""
    return min(SPEEDS, key=lambda k: abs(SPEEDS[k] - speed))


@dataclass
class ObjectSpec:
    """One shape. ``visible=False`` means hidden until an ``appear`` event."""

    shape: str
    colour: str
    size: str
    x: float
    y: float
    visible: bool = True

    @property
    def half(self) -> float:
        return SIZES[self.size]

    @property
    def region(self) -> str:
        return region_of(self.x, self.y)


@dataclass
class Event:
    """Something that happens to object ``obj`` at time ``t`` (seconds).

    kinds: ``move`` (needs ``direction`` and ``speed``; while already moving it changes direction),
    ``stop``, ``colour`` (needs ``colour``: the new colour), ``appear``, ``disappear``.
    """

    t: float
    obj: int
    kind: str
    direction: str | None = None
    speed: float | None = None
    colour: str | None = None


@dataclass
class SceneSpec:
    background: str
    objects: list[ObjectSpec]
    events: list[Event] = field(default_factory=list)
    duration: float = 4.0
    seed: int | None = None

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["events"] = [{k: v for k, v in e.items() if v is not None} for e in d["events"]]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SceneSpec:
        """Build a scene from a dict; an object may give ``region`` instead of ``x``/``y``."""
        d = dict(d)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"scene spec: unknown key(s) {sorted(unknown)}")
        objects = []
        for i, o in enumerate(d.pop("objects", [])):
            o = dict(o)
            if "region" in o:
                region = o.pop("region")
                if region not in REGIONS:
                    raise ValueError(f"scene spec: object {i} region {region!r} is not one of {list(REGIONS)}")
                o.setdefault("x", REGIONS[region][0])
                o.setdefault("y", REGIONS[region][1])
            try:
                objects.append(ObjectSpec(**o))
            except TypeError as e:
                raise ValueError(f"scene spec: object {i}: {e}") from None
        events = []
        for i, e in enumerate(d.pop("events", [])):
            try:
                events.append(Event(**e))
            except TypeError as err:
                raise ValueError(f"scene spec: event {i}: {err}") from None
        spec = cls(objects=objects, events=events, **d)
        spec.validate()
        return spec

    @classmethod
    def from_json(cls, text: str) -> SceneSpec:
        return cls.from_dict(json.loads(text))

    # ------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ``ValueError`` naming the field when the scene is inconsistent or leaves the frame."""
        from synthworld.simulate import check_inside, states_at  # local: simulate imports spec

        if self.background not in BACKGROUNDS:
            raise ValueError(f"scene spec: background {self.background!r} is not one of {list(BACKGROUNDS)}")
        if not 1 <= len(self.objects) <= 3:
            raise ValueError(f"scene spec: {len(self.objects)} objects; a scene has 1 to 3")
        if not self.duration > 0:
            raise ValueError(f"scene spec: duration {self.duration!r} must be > 0 seconds")
        for i, o in enumerate(self.objects):
            if o.shape not in SHAPES:
                raise ValueError(f"scene spec: object {i} shape {o.shape!r} is not one of {list(SHAPES)}")
            if o.colour not in COLOURS:
                raise ValueError(f"scene spec: object {i} colour {o.colour!r} is not one of {list(COLOURS)}")
            if o.size not in SIZES:
                raise ValueError(f"scene spec: object {i} size {o.size!r} is not one of {list(SIZES)}")
        if any(b.t < a.t for a, b in zip(self.events, self.events[1:])):
            raise ValueError("scene spec: events must be sorted by time")
        state = [dict(visible=o.visible, moving=None, colour=o.colour) for o in self.objects]
        for i, e in enumerate(self.events):
            where = f"scene spec: event {i} ({e.kind} of object {e.obj} at {e.t}s)"
            if not 0 <= e.obj < len(self.objects):
                raise ValueError(f"{where}: object index out of range")
            if e.kind not in EVENT_KINDS:
                raise ValueError(f"{where}: kind must be one of {list(EVENT_KINDS)}")
            if not 0 <= e.t < self.duration:
                raise ValueError(f"{where}: time must be in [0, {self.duration})")
            if e.t == 0 and e.kind != "move":
                raise ValueError(f"{where}: only 'move' may happen at 0s; set the object's initial state instead")
            s = state[e.obj]
            if e.kind == "appear":
                if s["visible"]:
                    raise ValueError(f"{where}: object is already visible (set visible=false to hide it first)")
                s["visible"] = True
                continue
            if not s["visible"]:
                raise ValueError(f"{where}: object is hidden; only 'appear' applies to it")
            if e.kind == "move":
                if e.direction not in DIRECTIONS:
                    raise ValueError(f"{where}: direction {e.direction!r} is not one of {list(DIRECTIONS)}")
                if e.speed is None or not e.speed > 0:
                    raise ValueError(f"{where}: speed {e.speed!r} must be > 0 (frame-widths per second)")
                if s["moving"] == e.direction:
                    raise ValueError(f"{where}: already moving {e.direction}")
                s["moving"] = e.direction
            elif e.kind == "stop":
                if s["moving"] is None:
                    raise ValueError(f"{where}: object is not moving")
                s["moving"] = None
            elif e.kind == "colour":
                if e.colour not in COLOURS:
                    raise ValueError(f"{where}: colour {e.colour!r} is not one of {list(COLOURS)}")
                if e.colour == s["colour"]:
                    raise ValueError(f"{where}: object is already {e.colour}")
                s["colour"] = e.colour
            elif e.kind == "disappear":
                s["visible"], s["moving"] = False, None
        # every object stays wholly inside the frame while visible
        check_inside(self)
        states_at(self, self.duration)  # smoke: the timeline simulates to the end
