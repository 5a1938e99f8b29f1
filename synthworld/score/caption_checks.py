"""Caption checks against a scene's truth: the timed sentences of a dense caption, and whether they
name each true event (the object, the kind of change, its direction or new colour) at its time."""

from __future__ import annotations

import re

from synthworld.simulate import states_at
from synthworld.spec import Event, SceneSpec

_KIND_WORDS = {
    "move": r"(?:mov|slid|heads)",
    "stop": r"(?:stop|halt)",
    "colour": r"(?:turns|switches to|to)",
    "appear": r"(?:appears|pops up)",
    "disappear": r"(?:disappear|vanish)",
}


def sentences(text: str) -> list[str]:
    """A caption's sentences (split after each full stop)."""
    return re.split(r"(?<=\.)\s+", text.strip())


def sentence_time(sentence: str) -> float | None:
    """The second a dense caption's sentence says it happens at (``At 1.5s, …``, ``Right from the start, …``)."""
    if re.match(r"(?:Right from the start|Immediately)\b", sentence):
        return 0.0
    m = re.match(r"(?:Then at|At) (\d+(?:\.\d+)?)s\b", sentence)
    return float(m[1]) if m else None


def timed_sentences(dense: str) -> list[tuple[float, str]]:
    """``(time, sentence)`` for every sentence of a dense caption that states when it happens."""
    return [(t, s) for s in sentences(dense) if (t := sentence_time(s)) is not None]


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
