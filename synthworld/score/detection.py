"""Compare a detection against a scene's ground truth, attribute by attribute.

Objects are matched to tracks by where they are over the clip (Hungarian assignment on the mean
distance between the true and detected positions in frames where both exist). Then, per object:
colour (when first visible), shape, size; per true event: found (same kind within one frame, same
direction / new colour), direction of each move, and the timing error. Detected events that match
no true event are counted as spurious.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from synthworld.detect import Detection
from synthworld.render import frame_times
from synthworld.score.events import match_event, same_change, true_events
from synthworld.simulate import states_at
from synthworld.spec import SceneSpec


@dataclass
class SceneScore:
    """Counts of correct / total per attribute, and event timing errors (seconds)."""

    correct: Counter = field(default_factory=Counter)
    total: Counter = field(default_factory=Counter)
    time_errors: list[float] = field(default_factory=list)
    spurious_events: int = 0
    failures: list[str] = field(default_factory=list)  # human-readable misses, for debugging

    def add(self, attr: str, ok: bool, why: str = "") -> None:
        self.total[attr] += 1
        self.correct[attr] += int(ok)
        if not ok and why:
            self.failures.append(f"{attr}: {why}")

    def merge(self, other: SceneScore) -> SceneScore:
        self.correct.update(other.correct)
        self.total.update(other.total)
        self.time_errors += other.time_errors
        self.spurious_events += other.spurious_events
        self.failures += other.failures
        return self

    def accuracy(self) -> dict[str, float]:
        return {k: self.correct[k] / self.total[k] for k in sorted(self.total)}


def score_detection(spec: SceneSpec, det: Detection, tol_frames: float = 1.0) -> SceneScore:
    """Score ``det`` (from a clip of ``spec`` at ``det.fps``) against the truth."""
    sc = SceneScore()
    times = frame_times(spec.duration, det.fps)[: det.num_frames]
    truth = [states_at(spec, float(t)) for t in times]  # [frame][object]
    n_obj, n_tr = len(spec.objects), len(det.tracks)
    # 1. match objects to tracks by trajectory distance
    cost = np.full((n_obj, max(n_tr, 1)), 10.0)
    for o in range(n_obj):
        for k, tr in enumerate(det.tracks):
            d = [np.hypot(p[0] - truth[i][o].x, p[1] - truth[i][o].y)
                 for i in range(len(times)) if truth[i][o].visible and (p := tr.position(i)) is not None]
            if d:
                cost[o, k] = float(np.mean(d)) + 0.5 * (1 - len(d) / max(len(tr.seen()), 1))
    pairs = {o: k for o, k in zip(*linear_sum_assignment(cost)) if cost[o, k] < 0.1} if n_tr else {}
    # 2. per-object attributes
    for o, obj in enumerate(spec.objects):
        first_vis = next((i for i in range(len(times)) if truth[i][o].visible), None)
        if first_vis is None:
            continue
        k = pairs.get(o)
        name = f"object {o} ({obj.size} {truth[first_vis][o].colour} {obj.shape})"
        if k is None:
            for attr in ("found", "colour", "shape", "size"):
                sc.add(attr, False, f"{name} not detected")
            continue
        tr = det.tracks[k]
        sc.add("found", True)
        sc.add("colour", tr.colour == truth[first_vis][o].colour, f"{name} seen as {tr.colour}")
        sc.add("shape", tr.shape == obj.shape, f"{name} seen as {tr.shape}")
        sc.add("size", tr.size == obj.size, f"{name} seen as {tr.size}")
    # 3. events: each true event must have a detected twin on the matched track within tolerance
    tol = tol_frames / det.fps + 1e-6
    used: set[tuple[int, int]] = set()  # (id(track), index of the detected event)
    for o, te in true_events(spec):
        k = pairs.get(o)
        tr = None if k is None else det.tracks[k]
        label = f"object {o} {te.kind} at {te.t}s"
        if te.kind == "move":  # the direction of the nearest move, claimed or not
            any_move = [] if tr is None else [
                (abs(de.t - te.t), de) for de in tr.events if de.kind == "move" and abs(de.t - te.t) <= 2 * tol
            ]
            got = min(any_move, key=lambda p: p[0])[1].direction if any_move else None
            sc.add("direction", got == te.direction, f"{label}: direction {te.direction} seen as {got}")
        de = match_event(te, tr, used, 2 * tol)  # same kind, up to two tolerances off: found, then judged
        if de is None:
            sc.add("event", False, f"{label}: not detected")
            sc.add("event_time", False)
            continue
        sc.time_errors.append(de.t - te.t)
        sc.add("event", same_change(te, de), f"{label}: seen as {de.kind} {de.direction or de.colour or ''}")
        sc.add("event_time", abs(de.t - te.t) <= tol, f"{label}: seen at {de.t:.3f}s")
    sc.spurious_events = sum(1 for tr in det.tracks for j in range(len(tr.events)) if (id(tr), j) not in used)
    return sc


def evaluate_detector(
    seeds: Iterable[int],
    size: int = 64,
    fps: float = 8.0,
    seconds: float = 4.0,
    noise: float = 8.0,
    blur_sigma: float = 0.8,
    roundtrip: Callable[[np.ndarray, float], np.ndarray] | None = None,
    progress: bool = False,
) -> SceneScore:
    """Render, degrade (blur, noise, then ``roundtrip`` e.g. an mp4 encode/decode), detect and score
    the random scenes of ``seeds``; returns the summed score."""
    from tqdm import tqdm

    from synthworld.degrade import add_noise, blur
    from synthworld.detect import detect_video
    from synthworld.generate import random_scene
    from synthworld.render import render

    total = SceneScore()
    seeds = list(seeds)
    for s in tqdm(seeds, desc="scenes", unit="scene", disable=not progress):
        spec = random_scene(s, duration=seconds)
        frames = add_noise(blur(render(spec, size=size, fps=fps), blur_sigma), noise, seed=s)
        if roundtrip is not None:
            frames = roundtrip(frames, fps)
        sc = score_detection(spec, detect_video(frames, fps))
        sc.failures = [f"seed {s}: {f}" for f in sc.failures]
        total.merge(sc)
    return total
