"""Detector: frames → objects per frame → tracks → events.

It reads a rendered, compressed or *generated* clip back into the world's vocabulary, so it is
both the ground-truth check of the renderer and, later, the judge of generated videos. It must not
be fooled by noise: an object exists only as one coherent blob of plausible size whose core colour
is a palette colour, so a frame of coloured speckle holds no objects.

Per frame (``detect_frame``):
  1. distance of every pixel from the background colour; mask = distance > half the smallest
     palette-to-background distance;
  2. connected components of the mask (4-connectivity); specks, components that are all edge
     (speckle clusters) and implausibly small or large ones are rejected;
  3. colour = nearest palette colour to the median of the blob's core (its most saturated half);
     a blob whose core is no palette colour is rejected;
  4. alpha = how much of each pixel the object covers, projecting the pixel onto the
     background→colour line — robust to blur and compression; soft area and centroid come from it;
  5. shape from blur-robust central moments of alpha (a triangle's vertical skew; a square's
     extra reach along its diagonals); size from the soft area.
Per clip (``detect_video``): tracks by nearest predicted position (Hungarian assignment), then
events: appear / disappear (track starts late / ends early), colour changes (majority-smoothed
colour), and motion segments (per-frame displacement above a threshold), each with its direction.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from synthworld.spec import BACKGROUNDS, COLOURS, DIRECTIONS, SIZES, SPEEDS, speed_name

_PALETTE_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[c] for c in _PALETTE_NAMES], dtype=np.float32)  # (K, 3)
_SMALL_AREA = 2 * SIZES["small"] ** 2  # a small triangle's area, in frame fractions²
_SIZE_SPLIT = (SIZES["small"] + SIZES["large"]) / 2
_MIN_HALF, _MAX_HALF = 0.5 * SIZES["small"], 1.6 * SIZES["large"]  # plausible half-extents


@dataclass
class Blob:
    """One object seen in one frame. Positions and sizes are fractions of the frame."""

    colour: str
    shape: str
    size: str
    cx: float  # centroid of the covered area
    cy: float
    half: float  # estimated half-extent
    area: float  # soft area, in frame fractions²
    skew: float  # vertical skewness of the covered area (triangle ≈ -0.57)
    corner: float  # diagonal-minus-axis 4th moment over μ2² (square ≈ +0.6, circle ≈ 0)


def blob_centre(b: Blob, shape: str | None = None) -> tuple[float, float]:
    """A blob's position in the spec's sense (bounding-box centre) when it is a ``shape`` (default:
    its own): a triangle's centroid sits a third of its half-height below the box centre."""
    return (b.cx, b.cy - b.half / 3) if (shape or b.shape) == "triangle" else (b.cx, b.cy)


def background_name(rgb) -> str:
    """The palette background nearest to an RGB colour."""
    return min(BACKGROUNDS, key=lambda n: np.linalg.norm(np.subtract(BACKGROUNDS[n], rgb)))


def direction_of(dx: float, dy: float) -> str:
    """The dominant axis direction of a displacement (frame fractions, ``y`` down)."""
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


@dataclass
class DetectedEvent:
    t: float
    kind: str  # move | stop | colour | appear | disappear
    direction: str | None = None
    speed: float | None = None  # frame-widths per second
    colour: str | None = None  # the new colour, for "colour"
    previous: str | None = None  # the old colour, for "colour"


@dataclass
class Track:
    """One object followed over the clip."""

    first: int  # first frame index where it is seen
    blobs: list[Blob | None] = field(default_factory=list)  # one per frame from ``first`` (None = missed)
    events: list[DetectedEvent] = field(default_factory=list)

    @property
    def last(self) -> int:
        return self.first + len(self.blobs) - 1

    def seen(self) -> list[tuple[int, Blob]]:
        return [(self.first + k, b) for k, b in enumerate(self.blobs) if b is not None]

    def _vote(self, attr: str, first_n: int | None = None) -> str:
        values = [getattr(b, attr) for _, b in self.seen()[:first_n]]
        return Counter(values).most_common(1)[0][0]  # a tie goes to the value seen first, whatever the hash seed

    @property
    def shape(self) -> str:
        return self._vote("shape")

    @property
    def size(self) -> str:
        return self._vote("size")

    @property
    def colour(self) -> str:
        """Colour when first seen (majority of the first three frames)."""
        return self._vote("colour", 3)

    def position(self, frame: int) -> tuple[float, float] | None:
        """Bounding-box centre (the spec's notion of position) at ``frame``, or None when unseen."""
        k = frame - self.first
        if not (0 <= k < len(self.blobs) and self.blobs[k] is not None):
            return None
        b = self.blobs[k]
        return blob_centre(b, self.shape)  # the track's voted shape, not this frame's guess


@dataclass
class Detection:
    background: str
    background_rgb: tuple[float, float, float]
    fps: float
    num_frames: int
    tracks: list[Track]
    frame_blobs: list[list[Blob]] = field(default_factory=list)  # every blob of every frame, before tracking

    def events(self) -> list[tuple[int, DetectedEvent]]:
        """All events as ``(track index, event)``, in time order."""
        return sorted(((i, e) for i, tr in enumerate(self.tracks) for e in tr.events), key=lambda p: p[1].t)


# ----------------------------------------------------------------------------- per frame
def estimate_background(frames: np.ndarray) -> np.ndarray:
    """Background RGB: the per-channel median of the border pixels of a few frames."""
    pick = frames[:: max(len(frames) // 4, 1)].astype(np.float32)  # (k, H, W, 3)
    border = np.concatenate(
        [pick[:, 0].reshape(-1, 3), pick[:, -1].reshape(-1, 3), pick[:, :, 0].reshape(-1, 3), pick[:, :, -1].reshape(-1, 3)]
    )
    return np.median(border, axis=0)


def detect_frame(frame: np.ndarray, bg: np.ndarray) -> list[Blob]:
    """Objects in one uint8 frame ``(H, W, 3)`` given the background RGB."""
    H, W = frame.shape[:2]
    S = float(min(H, W))
    f = frame.astype(np.float32)
    d = f - bg  # (H, W, 3)
    dist = np.linalg.norm(d, axis=-1)  # (H, W)
    # 1. mask: pixels far from the background
    thr = 0.5 * float(np.min(np.linalg.norm(_PALETTE - bg, axis=1)))
    mask = dist > thr
    # 2. connected components; drop specks smaller than a third of the smallest object
    labels, n = ndimage.label(mask)
    if n == 0:
        return []
    areas = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    min_area = _SMALL_AREA * S * S / 3
    boxes = ndimage.find_objects(labels)
    blobs = []
    for lab in np.flatnonzero(areas >= min_area) + 1:
        blob = _measure(int(lab), boxes[lab - 1], labels, f, d, dist, bg, S)
        if blob is not None:
            blobs.append(blob)
    return blobs


def _measure(lab: int, sl: tuple[slice, slice], labels: np.ndarray, f, d, dist, bg, S: float) -> Blob | None:
    pad = 2
    ys = slice(max(sl[0].start - pad, 0), min(sl[0].stop + pad, labels.shape[0]))
    xs = slice(max(sl[1].start - pad, 0), min(sl[1].stop + pad, labels.shape[1]))
    own = labels[ys, xs] == lab
    # coherence: a real shape is solid — most of its pixels have all four neighbours inside it;
    # a cluster of speckle is all edge
    if ndimage.binary_erosion(own).sum() < 0.2 * own.sum():
        return None
    # 3. colour of the core: the half of the blob farthest from the background
    dd = dist[ys, xs][own]
    core = f[ys, xs][own][dd >= np.median(dd)]
    rgb = np.median(core, axis=0)
    k = int(np.argmin(np.linalg.norm(_PALETTE - rgb, axis=1)))
    if np.linalg.norm(_PALETTE[k] - rgb) > 0.5 * np.linalg.norm(_PALETTE[k] - bg):
        return None  # the blob's colour is no palette colour: not an object
    # 4. coverage alpha in a window around the blob, excluding other blobs' pixels; the small
    #    noise floor is cut off so background noise does not weigh on the moments below
    axis = _PALETTE[k] - bg
    alpha = np.clip((d[ys, xs] @ axis) / float(axis @ axis), 0.0, 1.0)  # (h, w)
    alpha = np.clip((alpha - 0.15) / 0.7, 0.0, 1.0)
    near = ndimage.binary_dilation(own, iterations=pad)
    alpha = np.where(near & ((labels[ys, xs] == 0) | own), alpha, 0.0)
    area = float(alpha.sum())
    if area < 4:
        return None
    yy, xx = np.mgrid[ys, xs].astype(np.float64) + 0.5  # pixel centres
    w = alpha / area
    cx, cy = float((w * xx).sum()), float((w * yy).sum())
    # 5. shape from central moments, which Gaussian blur barely changes:
    #    - a triangle (apex up) piles its mass at the bottom: y-skewness ≈ -0.57 (0 for the others);
    #    - a square reaches further along its diagonals than along its axes, a circle does not:
    #      4th moment along the diagonals minus along the axes, over μ2², ≈ +0.6 for a square and 0
    #      for a circle — and an isotropic blur adds the same amount to both, so it survives blur.
    X, Y = xx - cx, yy - cy
    mu2 = float((w * (X**2 + Y**2)).sum()) / 2
    if mu2 <= 0:
        return None
    skew_y = float((w * Y**3).sum()) / float((w * Y**2).sum()) ** 1.5
    U, V = (X + Y) / np.sqrt(2), (X - Y) / np.sqrt(2)
    corner = float((w * (U**4 + V**4 - X**4 - Y**4)).sum()) / 2 / mu2**2
    elong = float((w * X**2).sum()) / max(float((w * Y**2).sum()), 1e-9)
    if not 0.4 < elong < 2.5:
        return None  # no shape of this world is that elongated: a streak, not an object
    if not _MIN_HALF <= np.sqrt(area) / 2 / S <= _MAX_HALF:
        return None  # implausible size for any object of this world
    if skew_y < -0.2:
        shape, half = "triangle", np.sqrt(area / 2)
    elif corner > 0.22:
        shape, half = "square", np.sqrt(area) / 2
    else:
        shape, half = "circle", np.sqrt(area / np.pi)
    return Blob(
        colour=_PALETTE_NAMES[k],
        shape=shape,
        size="small" if half / S < _SIZE_SPLIT else "large",
        cx=cx / S,
        cy=cy / S,
        half=float(half / S),
        area=area / (S * S),
        skew=skew_y,
        corner=corner,
    )


# ----------------------------------------------------------------------------- per clip
def detect_video(frames: np.ndarray, fps: float, background: np.ndarray | None = None) -> Detection:
    """Detect, track and read events from uint8 frames ``(T, H, W, 3)`` shown at ``fps``."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"detect_video: frames must be (T, H, W, 3), got {frames.shape}")
    bg = estimate_background(frames) if background is None else np.asarray(background, np.float32)
    per_frame = [detect_frame(fr, bg) for fr in frames]
    tracks = _track(per_frame, fps)
    T = len(frames)
    for tr in tracks:
        tr.events = _events(tr, T, fps)
    return Detection(background_name(bg), tuple(float(v) for v in bg), fps, T, tracks, per_frame)


def _track(per_frame: list[list[Blob]], fps: float, max_gap: int = 1) -> list[Track]:
    gate = max(0.08, 2.5 * max(SPEEDS.values()) / fps)  # largest plausible jump per frame (fractions)
    active: list[Track] = []
    done: list[Track] = []
    for i, blobs in enumerate(per_frame):
        live = [tr for tr in active if i - _last_seen(tr) <= max_gap + 1]
        done += [tr for tr in active if tr not in live]
        cost = np.full((len(live), len(blobs)), 1e6)
        for a, tr in enumerate(live):
            px, py = _predict(tr, i)
            for b, blob in enumerate(blobs):
                dist = np.hypot(blob.cx - px, blob.cy - py)
                if dist < gate:
                    cost[a, b] = dist + (0.02 if blob.shape != tr.shape else 0.0)
        matched = set()
        if live and blobs:
            for a, b in zip(*linear_sum_assignment(cost)):
                if cost[a, b] < 1e6:
                    tr = live[a]
                    tr.blobs += [None] * (i - tr.last - 1) + [blobs[b]]
                    matched.add(b)
        for b, blob in enumerate(blobs):
            if b not in matched:
                live.append(Track(first=i, blobs=[blob]))
        active = live
    tracks = done + active
    for tr in tracks:  # trailing misses are not part of the track
        while tr.blobs and tr.blobs[-1] is None:
            tr.blobs.pop()
    # a track seen in a single frame is flicker, not an object
    return sorted((tr for tr in tracks if len(tr.seen()) >= 2), key=lambda tr: (tr.first, tr.seen()[0][1].cx))


def _last_seen(tr: Track) -> int:
    return max(i for i, _ in tr.seen())


def _predict(tr: Track, frame: int) -> tuple[float, float]:
    """Where the track's centroid should be at ``frame``: last position + median recent velocity."""
    seen = tr.seen()[-4:]
    (i1, b1) = seen[-1]
    if len(seen) < 2:
        return b1.cx, b1.cy
    v = np.median([((b.cx - a.cx) / (j - i), (b.cy - a.cy) / (j - i)) for (i, a), (j, b) in zip(seen, seen[1:])], axis=0)
    return b1.cx + v[0] * (frame - i1), b1.cy + v[1] * (frame - i1)


def _events(tr: Track, T: int, fps: float) -> list[DetectedEvent]:
    ev: list[DetectedEvent] = []
    if tr.first > 0:
        ev.append(DetectedEvent(t=tr.first / fps, kind="appear"))
    # colour changes: smooth the per-frame colours with a 3-frame majority, then report switches
    seen = tr.seen()
    cols = [b.colour for _, b in seen]
    smooth = [max(set(w), key=w.count) if len(set(w)) < len(w) else cols[k]
              for k, w in ((k, cols[max(k - 1, 0) : k + 2]) for k in range(len(cols)))]
    for k in range(1, len(smooth)):
        if smooth[k] != smooth[k - 1]:
            ev.append(DetectedEvent(t=seen[k][0] / fps, kind="colour", colour=smooth[k], previous=smooth[k - 1]))
    ev += _motion_events(tr, fps)
    if tr.last < T - 1:
        ev.append(DetectedEvent(t=(tr.last + 1) / fps, kind="disappear"))
    return sorted(ev, key=lambda e: e.t)


def _motion_events(tr: Track, fps: float) -> list[DetectedEvent]:
    """Moving runs of the per-frame displacement, split where the direction changes."""
    pos = np.full((tr.last - tr.first + 1, 2), np.nan)
    for i, b in tr.seen():
        pos[i - tr.first] = (b.cx, b.cy)
    idx = np.arange(len(pos))
    for c in range(2):  # fill single missed frames by interpolation
        ok = ~np.isnan(pos[:, c])
        pos[:, c] = np.interp(idx, idx[ok], pos[ok, c])
    step = np.diff(pos, axis=0)  # (n-1, 2): step[k] moves frame k → k+1 (track-relative)
    thr = 0.35 * min(SPEEDS.values()) / fps
    label: list[str | None] = []
    for dx, dy in step:
        if np.hypot(dx, dy) < thr:
            label.append(None)
        else:
            label.append(direction_of(dx, dy))
    # forgive one-step glitches inside a run (a step that disagrees with both neighbours)
    for k in range(1, len(label) - 1):
        if label[k - 1] == label[k + 1] and label[k] != label[k - 1]:
            label[k] = label[k - 1]
    runs: list[tuple[int, int, str]] = []  # (first step, last step, direction)
    k = 0
    while k < len(label):
        if label[k] is None:
            k += 1
            continue
        j = k
        while j + 1 < len(label) and label[j + 1] == label[k]:
            j += 1
        if j > k or k == len(label) - 1 or k == 0:  # a lone step mid-track is noise
            runs.append((k, j, label[k]))
        k = j + 1
    ev: list[DetectedEvent] = []
    for r, (a, b, d) in enumerate(runs):
        dx, dy = DIRECTIONS[d]
        along = step[a : b + 1] @ np.array([dx, dy], dtype=float)  # progress along the direction, per step
        v = float(np.median(along))  # per frame
        # sub-frame timing: the first/last step of a run covers only part of a frame when motion
        # began/ended between two frames
        onset = a + 1 - float(np.clip(along[0] / v, 0.0, 1.0))
        ev.append(DetectedEvent(t=(tr.first + onset) / fps, kind="move", direction=d, speed=v * fps))
        turns = r + 1 < len(runs) and runs[r + 1][0] == b + 1  # the next run follows at once: a turn
        if b + 1 < len(label) and not turns:  # still frames follow: it stopped
            end = b + float(np.clip(along[-1] / v, 0.0, 1.0))
            ev.append(DetectedEvent(t=(tr.first + end) / fps, kind="stop"))
    return ev


def describe(det: Detection) -> str:
    """A readable summary of a detection (for logs and debugging)."""
    lines = [f"background {det.background}, {det.num_frames} frames at {det.fps:g} fps, {len(det.tracks)} objects"]
    for i, tr in enumerate(det.tracks):
        x, y = tr.position(tr.first)
        lines.append(f"  #{i} {tr.size} {tr.colour} {tr.shape} at ({x:.2f}, {y:.2f}) from frame {tr.first}")
        for e in tr.events:
            extra = e.direction or (f"{e.previous}->{e.colour}" if e.kind == "colour" else "")
            sp = f" {speed_name(e.speed)}" if e.speed else ""
            lines.append(f"     {e.t:5.2f}s {e.kind} {extra}{sp}")
    return "\n".join(lines)
