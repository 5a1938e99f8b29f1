"""Video quality you can see, read by the detector: jitter, fragments, background drift, shape flips.

VBench's flicker (one mean frame difference) hides most of what a synthworld video does wrong frame
by frame. These four figures name the defects one by one; each is about 0 for a perfect video (the
true scene rendered: jitter < 0.1 px, the others 0), and lower is better:

- :func:`track_jitter` — how far an object's detected centre strays from a constant-velocity path,
  in pixels of the video (RMS);
- :func:`fragment_rate` — share of frames where the detector finds more objects than the scene has
  visible (an object split into pieces, or a spurious blob);
- :func:`background_drift` — standard deviation over frames of the border's mean colour, 0–255;
- :func:`shape_flips` — share of an object's frames where its detected shape is not the one the
  detector sees on that track most often.

:func:`video_quality` computes all four for one video (the per-prompt unit of ``t2v compare``).
"""

from __future__ import annotations

import numpy as np

from synthworld.detect import Blob, Detection
from synthworld.simulate import states_at
from synthworld.spec import SceneSpec

VIDEO_QUALITY = ("jitter", "fragments", "bg_drift", "shape_flips")
BORDER_PX = 3  # width of the border ring that background drift reads
_EPS = 1e-6


def track_jitter(det: Detection, size_px: int, breaks: tuple[float, ...] = ()) -> float | None:
    """RMS distance (pixels) of each track's detected centre from a constant-velocity fit; mean over tracks.

    The scene's motion is piecewise linear: it changes only at its events (``breaks``, seconds: a move,
    stop, appearance or disappearance). Between two breaks each track's centroid ``(x(t), y(t))`` is
    fitted by a least-squares line per axis, and the residuals pooled as ``sqrt(Σ r² / Σ (n − 2))``
    (``r²`` summed over both axes, ``n`` frames per piece: two fitted numbers per axis). With that
    correction, random displacements of RMS length ``d`` pixels added to a steady path read as ``d``.
    A frame exactly at a break belongs to both pieces; pieces with fewer than 3 seen frames (which a
    line fits exactly) do not count. None when no track has such a piece.
    """
    edges = [-np.inf, *sorted(t for t in breaks if t > 0), np.inf]
    per_track = []
    for tr in det.tracks:
        seen = tr.seen()
        t = np.array([i / det.fps for i, _ in seen])  # (n,) seconds
        xy = np.array([(b.cx, b.cy) for _, b in seen]) * size_px  # (n, 2) pixels
        rss, dof = 0.0, 0
        for lo, hi in zip(edges, edges[1:]):
            keep = (t >= lo - _EPS) & (t <= hi + _EPS)
            n = int(keep.sum())
            if n < 3:
                continue
            A = np.stack([np.ones(n), t[keep]], axis=1)  # (n, 2): intercept, velocity
            coef = np.linalg.lstsq(A, xy[keep], rcond=None)[0]  # (2, 2)
            rss += float(((xy[keep] - A @ coef) ** 2).sum())
            dof += n - 2
        if dof:
            per_track.append(np.sqrt(rss / dof))
    return float(np.mean(per_track)) if per_track else None


def fragment_rate(det: Detection, spec: SceneSpec) -> float:
    """Share of frames in which the detector finds more blobs than the scene has visible objects.

    Counts every blob the detector accepts in a frame (before tracking, so a piece seen for one frame
    counts), against the objects :func:`synthworld.simulate.states_at` says are visible at ``i / fps``.
    """
    if len(det.frame_blobs) != det.num_frames:
        raise ValueError(f"fragment_rate: the detection has blobs for {len(det.frame_blobs)} of its "
                         f"{det.num_frames} frames; use synthworld.detect.detect_video")
    if det.num_frames == 0:
        raise ValueError("fragment_rate: the detection has no frames")
    extra = [len(blobs) > sum(s.visible for s in states_at(spec, i / det.fps))
             for i, blobs in enumerate(det.frame_blobs)]
    return float(np.mean(extra))


def _object_box(b: Blob, S: int) -> tuple[float, float, float]:
    """A square around a blob that holds it and its soft edge: centre and half-side in pixels.
    1.5 half-extents reach a triangle's apex from its centroid (4/3); 2 px more take the blur."""
    return b.cx * S, b.cy * S, 1.5 * b.half * S + 2.0


def background_drift(frames: np.ndarray, det: Detection, ring: int = BORDER_PX) -> float | None:
    """Standard deviation over frames of the mean colour of the outer ``ring`` pixels, in 0–255 units.

    Per frame: the mean RGB of the ring of pixels within ``ring`` of the frame's edge, leaving out the
    pixels near any blob the detector found in that frame (an object touching the border is not the
    background). Over frames: the population std per channel, combined as the root of the mean
    variance over the three channels (a brightness ramp added to every channel reads as the ramp's
    std). None when fewer than two frames have background in the ring.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"background_drift: frames must be (T, H, W, 3), got {frames.shape}")
    T, H, W = frames.shape[:3]
    if len(det.frame_blobs) != T:
        raise ValueError(f"background_drift: {T} frames but the detection has blobs for {len(det.frame_blobs)}")
    S = min(H, W)
    yy, xx = np.mgrid[:H, :W] + 0.5  # (H, W) pixel centres
    border = (np.minimum(yy, H - yy) < ring) | (np.minimum(xx, W - xx) < ring)  # (H, W)
    means = []
    for frame, blobs in zip(frames, det.frame_blobs):
        keep = border.copy()
        for b in blobs:
            cx, cy, r = _object_box(b, S)
            keep &= ~((np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r))
        if keep.any():
            means.append(frame[keep].astype(np.float64).mean(axis=0))  # (3,)
    if len(means) < 2:
        return None
    return float(np.sqrt(np.var(np.stack(means), axis=0).mean()))


def shape_flips(det: Detection) -> float | None:
    """Share of tracked frames whose detected shape differs from their track's majority shape.

    Pooled over tracks (a track of 8 frames weighs four times one of 2). None without tracks.
    """
    flips = [b.shape != tr.shape for tr in det.tracks for _, b in tr.seen()]
    return float(np.mean(flips)) if flips else None


def motion_breaks(spec: SceneSpec) -> tuple[float, ...]:
    """The times at which the scene's motion changes: its move, stop, appear and disappear events."""
    return tuple(sorted({e.t for e in spec.events if e.kind != "colour"}))


def video_quality(frames: np.ndarray, det: Detection, spec: SceneSpec) -> dict[str, float | None]:
    """The four figures of :data:`VIDEO_QUALITY` for uint8 ``frames (T, H, W, 3)`` that ``det`` read,
    against the scene the video should show (None where a figure has nothing to measure)."""
    size = min(np.asarray(frames).shape[1:3])
    return {"jitter": track_jitter(det, size, motion_breaks(spec)),
            "fragments": fragment_rate(det, spec),
            "bg_drift": background_drift(frames, det),
            "shape_flips": shape_flips(det)}
