"""A dense caption parsed back to a scene: 100% on the oracle's captions, and wrong where a caption is wrong."""

from __future__ import annotations

from synthworld.captions import dense_caption, short_caption
from synthworld.generate import random_scene
from synthworld.score.caption_parse import ATTRIBUTES, caption_attributes, parse_dense, true_objects
from synthworld.spec import Event, ObjectSpec, SceneSpec


def test_oracle_dense_captions_parse_back_to_their_scenes():
    counts = dict.fromkeys(ATTRIBUTES, 0)
    kinds = set()
    for seed in range(300):  # the full world: 1-3 objects, moves, stops, colour changes, appearances
        spec = random_scene(seed)
        kinds |= {e.kind for e in spec.events}
        text = dense_caption(spec)
        parsed = parse_dense(text)
        assert parsed.background == spec.background, (seed, text)
        assert len(parsed.objects) == len(true_objects(spec)), (seed, text)
        for attr, verdicts in caption_attributes(spec, text).items():
            assert all(verdicts), (seed, attr, text)
            counts[attr] += len(verdicts)
    assert kinds == {"move", "stop", "colour", "appear", "disappear"}
    assert min(counts.values()) > 300


def _scene() -> SceneSpec:
    return SceneSpec("gray", [ObjectSpec("triangle", "red", "large", 0.15, 0.15),
                              ObjectSpec("circle", "blue", "small", 0.85, 0.5, visible=False)],
                     [Event(0.0, 0, "move", "right", 0.12), Event(1.0, 0, "colour", colour="green"),
                      Event(1.5, 1, "appear"), Event(2.0, 0, "move", "down", 0.12),
                      Event(2.5, 1, "move", "left", 0.24)], duration=4.0, seed=7)


def test_parse_reads_objects_appearances_and_first_directions_through_colour_changes():
    text = ("The clip starts with a big red triangle in the top-left corner on a gray background. "
            "At 2.5s, the blue circle begins to move towards the left quickly. "  # out of time order
            "Right from the start, the red triangle starts moving rightward slowly. "
            "At 1s, the red triangle switches to green. At 1.5s, a small blue circle pops up on the right side. "
            "At 2s, the green triangle turns and moves down slowly.")
    parsed = parse_dense(text)
    assert parsed.background == "gray"
    assert [(o.colour, o.shape, o.size, o.region, o.direction) for o in parsed.objects] == [
        ("red", "triangle", "large", "top-left", "right"), ("blue", "circle", "small", "right", "left")]
    assert all(all(v) for v in caption_attributes(_scene(), text).values())


def test_wrong_captions_score_wrong_on_the_attribute_they_get_wrong():
    spec = _scene()
    good = dense_caption(spec)
    assert all(all(v) for v in caption_attributes(spec, good).values())
    wrong_way = good.replace("rightward", "leftward").replace("to the right", "to the left").replace(
        "towards the right", "towards the left")
    got = caption_attributes(spec, wrong_way)
    assert got["direction"] == [False, True] and all(got["colour"]) and all(got["region"])
    got = caption_attributes(spec, good.replace("large red", "small red").replace("big red", "small red"))
    assert got["size"] == [False, True] and all(got["shape"])
    # a short caption has no regions and no motion clauses; a missing object fails every attribute
    got = caption_attributes(spec, short_caption(spec))
    assert not any(got["region"]) and not any(got["direction"])
    assert caption_attributes(spec, "") == {a: [False, False] for a in ATTRIBUTES}
