"""synthworld: scene specs, determinism, rendering, oracle captions."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from synthworld.captions import caption_at, dense_caption, diff_caption, keyframe_captions, short_caption
from synthworld.generate import MIN_GAP, random_scene
from synthworld.render import render
from synthworld.simulate import min_gap, states_at
from synthworld.spec import COLOURS, REGIONS, SceneSpec


def test_random_scenes_are_deterministic_and_distinct():
    a, b = random_scene(123), random_scene(123)
    assert a.to_json() == b.to_json()
    np.testing.assert_array_equal(render(a, size=64, fps=8), render(b, size=64, fps=8))
    specs = {random_scene(s).to_json() for s in range(50)}
    assert len(specs) == 50


def test_spec_json_round_trip():
    for s in range(20):
        spec = random_scene(s)
        again = SceneSpec.from_json(spec.to_json())
        assert again.to_json() == spec.to_json()
        assert json.loads(spec.to_json())["seed"] == s


def test_random_scenes_are_valid_and_separated():
    kinds = set()
    for s in range(200):
        spec = random_scene(s)
        spec.validate()
        assert 1 <= len(spec.objects) <= 3
        assert min_gap(spec) >= MIN_GAP - 1e-9
        # colours stay unique among objects at every moment, so "the red circle" is unambiguous
        for t in np.linspace(0, spec.duration, 17):
            cols = [st.colour for st in states_at(spec, float(t))]
            assert len(cols) == len(set(cols))
        kinds |= {e.kind for e in spec.events}
    assert kinds == {"move", "stop", "colour", "appear", "disappear"}


def test_render_shape_size_fps():
    spec = random_scene(5, duration=3.0)
    for size, fps in [(32, 4), (64, 8), (256, 10)]:
        frames = render(spec, size=size, fps=fps)
        assert frames.shape == (int(3.0 * fps), size, size, 3) and frames.dtype == np.uint8


def test_explicit_spec_renders_what_it_says():
    spec = SceneSpec.from_dict({
        "background": "black",
        "duration": 2.0,
        "objects": [{"shape": "square", "colour": "red", "size": "large", "region": "left"}],
        "events": [{"t": 0.5, "obj": 0, "kind": "move", "direction": "right", "speed": 0.24},
                   {"t": 1.5, "obj": 0, "kind": "colour", "colour": "blue"}],
    })
    frames = render(spec, size=60, fps=4)  # frames at 0, .25, .5, ... 1.75 s
    red, blue = np.array(COLOURS["red"]), np.array(COLOURS["blue"])

    def centre_of(frame, colour):
        ys, xs = np.nonzero(np.abs(frame.astype(int) - colour).sum(-1) < 30)
        return xs.mean(), ys.mean()

    x0, y0 = centre_of(frames[0], red)
    assert x0 == pytest.approx(REGIONS["left"][0] * 60, abs=0.6) and y0 == pytest.approx(30, abs=0.6)
    assert centre_of(frames[2], red)[0] == pytest.approx(x0, abs=0.3)  # still at 0.5 s
    assert centre_of(frames[4], red)[0] == pytest.approx(x0 + 0.24 * 0.5 * 60, abs=0.6)  # moved right
    assert centre_of(frames[6], blue)[0] == pytest.approx(x0 + 0.24 * 1.0 * 60, abs=0.6)  # now blue


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"background": "plaid"}, "background 'plaid'"),
        ({"objects": [{"shape": "hexagon", "colour": "red", "size": "small", "x": 0.5, "y": 0.5}]}, "shape 'hexagon'"),
        ({"objects": [{"shape": "circle", "colour": "teal", "size": "small", "x": 0.5, "y": 0.5}]}, "colour 'teal'"),
        ({"objects": [{"shape": "circle", "colour": "red", "size": "small", "region": "nowhere"}]}, "region 'nowhere'"),
        ({"events": [{"t": 0.5, "obj": 0, "kind": "move", "direction": "left", "speed": 0.5}]}, "leaves the frame"),
        ({"events": [{"t": 0.5, "obj": 0, "kind": "stop"}]}, "is not moving"),
        ({"events": [{"t": 0.5, "obj": 3, "kind": "stop"}]}, "out of range"),
        ({"events": [{"t": 9.0, "obj": 0, "kind": "disappear"}]}, "time must be in"),
        ({"events": [{"t": 0.0, "obj": 0, "kind": "colour", "colour": "blue"}]}, "only 'move' may happen at 0s"),
        ({"objects": [{"shape": "circle", "colour": "red", "size": "small", "x": 0.5, "y": 0.5, "visible": False}],
          "events": [{"t": 1.0, "obj": 0, "kind": "colour", "colour": "blue"}]}, "object is hidden"),
        ({"colour": "red"}, "unknown key"),
    ],
)
def test_invalid_specs_are_rejected_with_a_named_reason(patch, message):
    d = {"background": "gray", "duration": 2.0,
         "objects": [{"shape": "circle", "colour": "red", "size": "small", "x": 0.3, "y": 0.5}], "events": []}
    d.update(patch)
    with pytest.raises(ValueError, match=re.escape(message)):
        SceneSpec.from_dict(d)


# ----------------------------------------------------------------------------- captions
def _object_words(spec):
    return [f"{o.shape}" for o in spec.objects]


def test_short_caption_is_one_sentence_without_timing():
    for s in range(100):
        spec = random_scene(s)
        cap = short_caption(spec)
        assert cap.count(".") == 1 and cap.endswith(".")
        assert not re.search(r"\d", cap), cap
        for o in spec.objects:
            assert f"{o.colour} {o.shape}" in cap


def test_dense_caption_names_every_event_with_its_time():
    for s in range(100):
        spec = random_scene(s)
        cap = dense_caption(spec)
        assert spec.background in cap
        for e in spec.events:
            assert e.t == 0 or f"{e.t:.1f}s" in cap, (e, cap)
            if e.kind == "move":
                assert e.direction in cap
            if e.kind == "colour":
                assert e.colour in cap
        assert len(re.findall(r"[.!?](\s|$)", cap)) >= 3  # opening, events, closing summary
        assert len(cap.split()) > 2 * len(short_caption(spec).split())


def test_captions_are_deterministic_but_paraphrased():
    spec = random_scene(3)
    assert dense_caption(spec) == dense_caption(random_scene(3))
    openings = {dense_caption(random_scene(s)).split(" on ")[0][:18] for s in range(60)}
    shorts = {re.sub(r"(red|orange|yellow|green|cyan|blue|purple|pink|gray|black|white|small|large|big|"
                     r"circle|square|triangle)", "X", short_caption(random_scene(s))) for s in range(60)}
    assert len(openings) >= 3 and len(shorts) >= 5


def test_caption_at_and_diff_caption():
    spec = SceneSpec.from_dict({
        "background": "white", "duration": 4.0,
        "objects": [{"shape": "triangle", "colour": "green", "size": "small", "region": "top-left"},
                    {"shape": "circle", "colour": "blue", "size": "large", "region": "bottom-right"}],
        "events": [{"t": 1.0, "obj": 0, "kind": "move", "direction": "right", "speed": 0.24},
                   {"t": 2.5, "obj": 1, "kind": "colour", "colour": "pink"},
                   {"t": 3.0, "obj": 0, "kind": "stop"}],
    })
    at0 = caption_at(spec, 0.0)
    assert "green triangle" in at0 and "blue circle" in at0 and "white" in at0
    assert "moving" in caption_at(spec, 2.0)
    d = diff_caption(spec, 2.0, 3.0)
    assert "2.5s" in d and "pink" in d and "3.0s" in d and "blue circle" in d
    assert "from the top-left corner to the top" in diff_caption(spec, 1.0, 3.0)
    assert diff_caption(spec, 0.0, 0.5).endswith("nothing changes.")
    with pytest.raises(ValueError):
        diff_caption(spec, 2.0, 1.0)
    kf = keyframe_captions(spec)
    assert [k["t"] for k in kf] == [0.0, 1.0, 2.5, 3.0]
    assert kf[0]["caption"] == at0 and kf[2]["caption"] == diff_caption(spec, 1.0, 2.5)
