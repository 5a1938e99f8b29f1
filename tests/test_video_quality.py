"""Video quality read by the detector: each defect is ~0 on a rendered scene and reads back what was added."""

from __future__ import annotations

import numpy as np
import pytest

from synthworld.detect import detect_video
from synthworld.generate import random_scene
from synthworld.render import frame_times, render, render_frame
from synthworld.score.video_quality import (
    VIDEO_QUALITY,
    background_drift,
    fragment_rate,
    motion_breaks,
    shape_flips,
    track_jitter,
    video_quality,
)
from synthworld.simulate import states_at
from synthworld.spec import BACKGROUNDS, Event, ObjectSpec, SceneSpec

SIZE, FPS = 48, 8.0  # the demo's frame size; 4 s at 8 fps = 32 frames


def _scene(**obj) -> SceneSpec:
    """A large cyan square on gray that starts moving right at 0.5 s (breaks: 0.5 s)."""
    o = {"shape": "square", "colour": "cyan", "size": "large", "x": 0.3, "y": 0.5, **obj}
    return SceneSpec("gray", [ObjectSpec(**o)], [Event(0.5, 0, "move", "right", 0.12)], duration=4.0)


def _render_edited(spec: SceneSpec, edit) -> np.ndarray:
    """The scene frame by frame, after ``edit(frame index, objects at that time) -> objects``: (T, H, W, 3)."""
    frames = []
    for i, t in enumerate(frame_times(spec.duration, FPS)):
        objs = [ObjectSpec(o.shape, s.colour, o.size, s.x, s.y, s.visible)
                for o, s in zip(spec.objects, states_at(spec, float(t)))]
        frames.append(render_frame(SceneSpec(spec.background, edit(i, objs), duration=spec.duration), 0.0, SIZE))
    return np.stack(frames)


def test_a_rendered_scene_has_no_defects():
    """True scenes of the full world (1–3 objects; moves, stops, turns, colour changes, appearances):
    jitter within a tenth of a pixel, and no fragments, drift or shape flips."""
    for seed in range(10):
        spec = random_scene(seed, duration=4.0)
        frames = render(spec, size=SIZE, fps=FPS)
        q = video_quality(frames, detect_video(frames, FPS), spec)
        assert list(q) == list(VIDEO_QUALITY)
        assert q["jitter"] is not None and q["jitter"] < 0.1, (seed, q)
        assert q["fragments"] == 0 and q["bg_drift"] == 0 and q["shape_flips"] == 0, (seed, q)


def test_jitter_reads_the_added_displacement():
    """Random displacements (σ = 0.7 px per axis) added to a steady path read back as their own RMS
    distance from a constant-velocity fit, ≈ √2 σ; the path itself reads under a tenth of a pixel."""
    spec = _scene()
    rng = np.random.default_rng(0)
    d = rng.normal(0.0, 0.7, size=(32, 2))  # (T, 2) pixels

    def shake(i, objs):
        return [ObjectSpec(o.shape, o.colour, o.size, o.x + d[i, 0] / SIZE, o.y + d[i, 1] / SIZE) for o in objs]

    frames = _render_edited(spec, shake)
    det = detect_video(frames, FPS)
    assert len(det.tracks) == 1 and len(det.tracks[0].seen()) == 32
    # what the added displacement alone gives: the same pieces (t ≤ 0.5 s, t ≥ 0.5 s), two lines per piece
    t = np.arange(32) / FPS
    rss, dof = 0.0, 0
    for keep in (t <= 0.5, t >= 0.5):
        A = np.stack([np.ones(keep.sum()), t[keep]], axis=1)
        rss += float(((d[keep] - A @ np.linalg.lstsq(A, d[keep], rcond=None)[0]) ** 2).sum())
        dof += int(keep.sum()) - 2
    jitter = track_jitter(det, SIZE, motion_breaks(spec))
    assert jitter == pytest.approx(np.sqrt(rss / dof), abs=0.1)
    assert jitter == pytest.approx(np.sqrt(2) * 0.7, rel=0.2)
    clean = render(spec, size=SIZE, fps=FPS)
    assert track_jitter(detect_video(clean, FPS), SIZE, motion_breaks(spec)) < 0.1
    # without the scene's break at 0.5 s, the start of the motion itself would read as jitter
    assert track_jitter(detect_video(clean, FPS), SIZE) > 0.3


def test_fragment_rate_counts_frames_with_more_blobs_than_visible_objects():
    """A large circle split into two small ones in 3 of 32 frames: 3/32. An object hidden by the scene
    (appearing at 2 s) is not a fragment after it appears, and is one before, where the scene has none."""
    spec = _scene(shape="circle", y=0.4)
    split = {5, 6, 20}

    def fragment(i, objs):
        if i not in split:
            return objs
        o = objs[0]
        return [ObjectSpec("circle", o.colour, "small", o.x + dx, o.y) for dx in (-0.12, 0.12)]

    frames = _render_edited(spec, fragment)
    det = detect_video(frames, FPS)
    assert [len(det.frame_blobs[i]) for i in sorted(split)] == [2, 2, 2]
    assert fragment_rate(det, spec) == pytest.approx(3 / 32)

    late = SceneSpec("gray", [*spec.objects, ObjectSpec("triangle", "red", "small", 0.7, 0.8, visible=False)],
                     [*spec.events, Event(2.0, 1, "appear")], duration=4.0)
    frames = render(late, size=SIZE, fps=FPS)
    assert fragment_rate(detect_video(frames, FPS), late) == 0
    always = SceneSpec("gray", late.objects[:1], late.events[:1], duration=4.0)  # the scene without the triangle
    assert fragment_rate(detect_video(frames, FPS), always) == pytest.approx(16 / 32)


def test_background_drift_reads_a_brightness_ramp_and_ignores_objects_on_the_border():
    """A ramp of −8 … +8 added to the background reads as the ramp's std; a square that slides onto the
    border ring changes the ring's raw mean but not the drift (its pixels are left out)."""
    spec = _scene()
    frames = render(spec, size=SIZE, fps=FPS).astype(np.int16)
    ramp = np.linspace(-8.0, 8.0, len(frames))
    bg = np.all(frames == BACKGROUNDS["gray"], axis=-1)  # (T, H, W): pure background pixels
    frames = np.where(bg[..., None], frames + np.rint(ramp)[:, None, None, None].astype(np.int16), frames)
    frames = frames.astype(np.uint8)
    assert background_drift(frames, detect_video(frames, FPS)) == pytest.approx(np.std(np.rint(ramp)), abs=0.05)

    to_edge = SceneSpec("gray", [ObjectSpec("square", "cyan", "large", 0.3, 0.5)],
                        [Event(0.0, 0, "move", "left", 0.24), Event(0.6, 0, "stop")], duration=4.0)
    frames = render(to_edge, size=SIZE, fps=FPS)
    ring = np.ones(frames.shape[1:3], bool)
    ring[3:-3, 3:-3] = False
    assert np.std(frames[:, ring].mean(axis=1)) > 1.0  # the object does reach the ring
    assert background_drift(frames, detect_video(frames, FPS)) == pytest.approx(0.0, abs=0.01)


def test_shape_flips_count_frames_off_the_tracks_usual_shape():
    """A large square drawn as a circle in 4 of 32 frames: 4/32; a blob-free video has no figure."""
    spec = _scene()
    flipped = {3, 10, 11, 25}

    def flip(i, objs):
        return [ObjectSpec("circle" if i in flipped else o.shape, o.colour, o.size, o.x, o.y) for o in objs]

    det = detect_video(_render_edited(spec, flip), FPS)
    assert len(det.tracks) == 1
    assert shape_flips(det) == pytest.approx(4 / 32)
    empty = detect_video(np.full((8, SIZE, SIZE, 3), 120, np.uint8), FPS)
    assert shape_flips(empty) is None and track_jitter(empty, SIZE) is None


def test_inputs_that_do_not_fit_are_errors():
    spec = _scene()
    frames = render(spec, size=SIZE, fps=FPS)
    det = detect_video(frames, FPS)
    with pytest.raises(ValueError, match=r"background_drift: 31 frames"):
        background_drift(frames[:-1], det)
    det.frame_blobs = det.frame_blobs[:-1]
    with pytest.raises(ValueError, match=r"fragment_rate: .* 31 of its 32 frames"):
        fragment_rate(det, spec)
