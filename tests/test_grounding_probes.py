"""bench/position_probe.py and bench/direction_probe.py read where an object is and which way it moves."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from synthworld.render import render
from synthworld.spec import SceneSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from direction_prior import region_prior_score  # noqa: E402
from direction_probe import (  # noqa: E402
    CORNER_SPEED,
    CORNERS,
    END_REGION,
    PHRASES,
    along,
    corner_scenes,
    displacement,
    prompt_sets,
)
from position_probe import centroid  # noqa: E402


def _clip(region: str, direction: str | None = None) -> np.ndarray:
    events = [{"t": 0.0, "obj": 0, "kind": "move", "direction": direction, "speed": 0.07}] if direction else []
    spec = SceneSpec.from_dict({"background": "black", "duration": 4.0, "events": events, "objects": [
        {"shape": "square", "colour": "red", "size": "large", "region": region}]})
    return render(spec, size=48, fps=2.0)  # the tiny preset's 8 frames at 48 px


def test_centroid_reads_the_start_region():
    xl, _ = centroid(_clip("left")[0])
    xr, _ = centroid(_clip("right")[0])
    _, yt = centroid(_clip("top")[0])
    _, yb = centroid(_clip("bottom")[0])
    assert xr - xl > 0.4 and yb - yt > 0.4
    assert np.isnan(centroid(np.zeros((48, 48, 3), np.uint8))[0])  # nothing drawn → NaN, not a position


@pytest.mark.parametrize("direction, sign", [("left", (-1, 0)), ("right", (1, 0)), ("up", (0, -1)), ("down", (0, 1))])
def test_displacement_follows_the_motion(direction, sign):
    dx, dy = displacement(_clip("center", direction))
    assert np.sign(round(dx, 2)) == sign[0] and np.sign(round(dy, 2)) == sign[1], (dx, dy)
    assert max(abs(dx), abs(dy)) > 0.2


def test_displacement_of_a_still_or_empty_clip():
    assert displacement(_clip("center")) == pytest.approx((0.0, 0.0), abs=0.02)
    assert all(np.isnan(displacement(np.zeros((8, 48, 48, 3), np.uint8))))


def test_direction_prompt_sets_match_the_world():
    """The 'caption' prompts name the region a quick move from the centre really reaches (as synthworld's
    closing sentence would); the 'words' prompts differ only in the direction phrase."""
    from synthworld.captions import DIRECTION_PHRASES, REGION_PHRASES
    from synthworld.simulate import states_at
    from synthworld.spec import SPEEDS, region_of

    sets = prompt_sets()
    for k, phrase in PHRASES.items():
        assert phrase in DIRECTION_PHRASES[k]
        spec = SceneSpec.from_dict({"background": "black", "duration": 1.5, "objects": [
            {"shape": "square", "colour": "red", "size": "large", "region": "center"}],
            "events": [{"t": 0.0, "obj": 0, "kind": "move", "direction": k, "speed": SPEEDS["quickly"]}]})
        end = states_at(spec, 1.5)[0]
        assert END_REGION[k] in REGION_PHRASES[region_of(end.x, end.y)], (k, region_of(end.x, end.y))
        assert sets["caption"][k].endswith(f"moving {phrase} {END_REGION[k]}.")
    assert len({p.replace(PHRASES[k], "#") for k, p in sets["words"].items()}) == 1


def test_corner_scenes_differ_only_in_the_way_and_along_reads_rendered_moves():
    """The 'scene' set: the oracle's dense captions of corner scenes that differ only in which inward way the
    square moves; on the true rendered clips `along` reads the slow move's distance, on identical clips 0."""
    prompts = corner_scenes()
    assert len(prompts) == 8
    a, b = prompts["top-left:right"], prompts["top-left:down"]
    assert a != b and "upper left" in a and "upper left" in b
    disp, same = {}, {}
    for corner, ways in CORNERS.items():
        for way in ways:
            events = [{"t": 0.0, "obj": 0, "kind": "move", "direction": way, "speed": CORNER_SPEED}]
            spec = SceneSpec.from_dict({"background": "black", "duration": 4.0, "events": events, "objects": [
                {"shape": "square", "colour": "red", "size": "large", "region": corner}]})
            disp[f"{corner}:{way}"] = np.array([displacement(render(spec, size=48, fps=2.0))] * 2)
            same[f"{corner}:{way}"] = disp[f"{corner}:{ways[0]}"]  # the same video for both ways
    sep = along(disp)
    assert sep.shape == (8,) and sep == pytest.approx(CORNER_SPEED * 3.5, abs=0.05)  # 8 frames at 2 fps: 3.5 s
    assert along(same) == pytest.approx(0.0, abs=1e-9)


def test_region_prior_guesses_the_commonest_way_per_start_region():
    def scene(region, way):
        return SceneSpec.from_dict({"background": "black", "duration": 4.0, "objects": [
            {"shape": "square", "colour": "red", "size": "large", "region": region}],
            "events": [{"t": 0.0, "obj": 0, "kind": "move", "direction": way, "speed": 0.07}] if way else []})

    train = [scene("top-left", "right")] * 3 + [scene("top-left", "down"), scene("left", "right"), scene("top", None)]
    heldout = [scene("top-left", "right"), scene("top-left", "down"), scene("left", "right"), scene("bottom", "up"),
               scene("center", None)]
    res = region_prior_score(train, heldout)
    # top-left guesses right (3 of 4): hit, miss; left guesses right: hit; bottom never moved in training: miss
    assert res["moves"] == 4 and res["score"] == 0.5
    assert res["ways_per_region"]["top-left"] == {"right": 3, "down": 1}
