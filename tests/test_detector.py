"""The synthworld detector recovers ground truth after compression, noise and blur, and is not
fooled by speckle."""

from __future__ import annotations

import numpy as np
import pytest

from clipio.video import open_video, write_mp4
from synthworld.detect import describe, detect_video
from synthworld.generate import random_scene
from synthworld.render import render
from synthworld.score import evaluate_detector, score_detection
from synthworld.spec import BACKGROUNDS, COLOURS, SceneSpec


@pytest.fixture
def mp4_roundtrip(tmp_path):
    def rt(frames, fps):
        path = write_mp4(tmp_path / "rt.mp4", frames, fps, crf=23)
        with open_video(path) as v:
            return v.read_all()

    return rt


def test_detector_recovers_200_scenes_after_mp4_noise_and_blur(mp4_roundtrip):
    """The acceptance bar of the foundation issue: >= 98% on every attribute over 200+ scenes."""
    sc = evaluate_detector(range(50_000, 50_210), size=64, fps=8, seconds=4, noise=8, blur_sigma=0.8,
                           roundtrip=mp4_roundtrip)
    acc = sc.accuracy()
    assert sc.total["found"] >= 200 and sc.total["direction"] >= 150 and sc.total["event"] >= 300
    for attr in ("found", "colour", "shape", "size", "direction", "event", "event_time"):
        assert acc[attr] >= 0.98, (attr, acc, sc.failures[:10])
    assert np.mean(np.abs(sc.time_errors)) < 0.25 / 8  # typically a small fraction of a frame
    assert sc.spurious_events <= 0.05 * sc.total["event"]


def test_detector_reads_a_known_scene():
    spec = SceneSpec.from_dict({
        "background": "gray", "duration": 3.0,
        "objects": [{"shape": "triangle", "colour": "yellow", "size": "large", "region": "left"},
                    {"shape": "square", "colour": "purple", "size": "small", "region": "top-right"},
                    {"shape": "circle", "colour": "cyan", "size": "small", "region": "bottom", "visible": False}],
        "events": [{"t": 0.5, "obj": 0, "kind": "move", "direction": "right", "speed": 0.12},
                   {"t": 1.0, "obj": 2, "kind": "appear"},
                   {"t": 1.5, "obj": 1, "kind": "colour", "colour": "orange"},
                   {"t": 2.0, "obj": 0, "kind": "stop"},
                   {"t": 2.5, "obj": 1, "kind": "disappear"}],
    })
    det = detect_video(render(spec, size=96, fps=10), fps=10)
    assert det.background == "gray"
    found = {(tr.shape, tr.colour, tr.size) for tr in det.tracks}
    assert found == {("triangle", "yellow", "large"), ("square", "purple", "small"), ("circle", "cyan", "small")}
    sc = score_detection(spec, det)
    assert sc.accuracy()["event_time"] == 1.0, describe(det)
    assert sc.spurious_events == 0, describe(det)


def test_wrong_truth_scores_low():
    """The score can fail: a detection compared with another scene's truth does badly."""
    a, b = random_scene(1), random_scene(2)
    sc = score_detection(b, detect_video(render(a), fps=8))
    acc = sc.accuracy()
    assert min(acc.get("colour", 0), acc.get("event", 0)) < 0.5


@pytest.mark.parametrize("density", [0.05, 0.2, 0.4, 0.6, 0.9])
@pytest.mark.parametrize("palette", ["all", "one"])
def test_speckle_has_no_objects(density, palette):
    """Coloured speckle holds the right colours' pixels but no coherent shape: nothing is detected."""
    rng = np.random.default_rng(int(density * 100))
    frames = np.empty((12, 64, 64, 3), np.uint8)
    frames[:] = BACKGROUNDS["gray"]
    mask = rng.random((12, 64, 64)) < density
    colours = np.array(list(COLOURS.values()) if palette == "all" else [COLOURS["red"]], np.uint8)
    frames[mask] = colours[rng.integers(0, len(colours), int(mask.sum()))]
    assert detect_video(frames, fps=8).tracks == []


def test_random_noise_and_blank_frames_have_no_objects():
    rng = np.random.default_rng(0)
    assert detect_video(rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8), fps=8).tracks == []
    assert detect_video(np.full((8, 64, 64, 3), 120, np.uint8), fps=8).tracks == []


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        detect_video(np.zeros((8, 64, 64), np.uint8), fps=8)


def test_scene_following_on_true_videos_beats_shuffled_prompts():
    """Rendered clips follow their own scene; scored against another scene they mostly do not; a blank
    video follows nothing."""
    from synthworld.score import SCENE_CATEGORIES, scene_following

    own = {c: [] for c in ("colour", "shape", "direction", "count")}
    other = {c: [] for c in own}
    specs = [random_scene(s) for s in range(700, 740)]
    dets = [detect_video(render(sp, size=48, fps=8), fps=8) for sp in specs]
    for k, (sp, det) in enumerate(zip(specs, dets)):
        hits, other_hits = scene_following(sp, det), scene_following(specs[(k + 1) % len(specs)], det)
        for c in own:
            own[c] += hits[c]
            other[c] += other_hits[c]
    for c in own:
        assert np.mean(own[c]) >= 0.95, (c, np.mean(own[c]))
    assert np.mean(other["colour"]) < 0.4 and np.mean(other["direction"]) < 0.6
    blank = detect_video(np.full((16, 48, 48, 3), 120, np.uint8), fps=8)
    blank_hits = scene_following(specs[0], blank)
    assert blank_hits["colour"] and blank_hits["direction"]  # there were items to miss
    assert not any(any(blank_hits[c]) for c in SCENE_CATEGORIES if c != "count")


def test_match_event_nearest_unclaimed_same_kind_within_tolerance():
    """The one matcher of score_detection and scene_following: nearest in time among unclaimed events
    of the same kind within the tolerance (a tie: the earlier in the track); `exact` also wants the
    same direction; each detected event answers one true event."""
    from synthworld.detect import DetectedEvent, Track
    from synthworld.score import match_event

    tr = Track(first=0, events=[DetectedEvent(0.75, "move", "left"), DetectedEvent(1.25, "move", "right"),
                                DetectedEvent(1.0, "stop"), DetectedEvent(1.5, "move", "right")])
    te = DetectedEvent(1.0, "move", "right")
    used: set = set()
    assert match_event(te, tr, used, tol=0.1, exact=False) is None  # nothing of its kind within 0.1 s
    first = match_event(te, tr, used, tol=0.3)
    assert first is tr.events[0] and used == {(id(tr), 0)}  # 0.75 and 1.25 tie: the earlier wins; direction ignored
    assert match_event(te, tr, used, tol=0.3) is tr.events[1]  # 0.75 is claimed now
    assert match_event(te, tr, used, tol=0.3) is None  # 1.5 is too far
    used = set()
    assert match_event(te, tr, used, tol=0.3, exact=True) is tr.events[1]  # the left move is not this change
    assert match_event(te, tr, used, tol=0.6, exact=True) is tr.events[3]
    assert match_event(te, None, used, tol=1.0) is None


def test_track_votes_break_ties_by_first_seen_not_by_hash_order():
    """Ties used to go to set-iteration order, which changes with PYTHONHASHSEED from process to process."""
    import subprocess
    import sys

    code = ("from synthworld.detect import Blob, Track\n"
            "b = lambda s: Blob('red', s, 'small', 0.5, 0.5, 0.05, 0.01, 0.0, 0.0)\n"
            "print(Track(0, [b('square'), b('circle'), b('circle'), b('square')]).shape)")
    seen = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**__import__("os").environ, "PYTHONHASHSEED": str(h)}).stdout.strip()
            for h in range(6)}
    assert seen == {"square"}
