"""Renderer: scene spec → uint8 frames ``(T, H, W, 3)``, anti-aliased, deterministic."""

from __future__ import annotations

import numpy as np

from synthworld.simulate import states_at
from synthworld.spec import BACKGROUNDS, COLOURS, SceneSpec

SUPERSAMPLE = 4  # sub-pixel samples per axis for anti-aliased edges


def frame_times(duration: float, fps: float) -> np.ndarray:
    """Times (seconds) of the frames of a clip: ``i / fps`` for ``i < round(duration · fps)``."""
    return np.arange(int(round(duration * fps))) / fps


def coverage(shape: str, cx: float, cy: float, half: float, size: int) -> tuple[np.ndarray, int, int]:
    """Fraction of each pixel covered by a shape, in pixel units, on a ``size``² canvas.

    Returns ``(alpha (h, w), y0, x0)``: the covered window and its top-left corner.
    """
    x0, x1 = max(int(np.floor(cx - half)) - 1, 0), min(int(np.ceil(cx + half)) + 1, size)
    y0, y1 = max(int(np.floor(cy - half)) - 1, 0), min(int(np.ceil(cy + half)) + 1, size)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0)), y0, x0
    s = SUPERSAMPLE
    xs = x0 + (np.arange((x1 - x0) * s) + 0.5) / s  # sub-pixel centres
    ys = y0 + (np.arange((y1 - y0) * s) + 0.5) / s
    X, Y = np.meshgrid(xs, ys)  # (h·s, w·s)
    if shape == "circle":
        inside = (X - cx) ** 2 + (Y - cy) ** 2 <= half**2
    elif shape == "square":
        inside = (np.abs(X - cx) <= half) & (np.abs(Y - cy) <= half)
    elif shape == "triangle":  # apex up: width grows from 0 at the top to 2·half at the base
        inside = (Y <= cy + half) & (np.abs(X - cx) <= (Y - (cy - half)) / 2)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    alpha = inside.reshape(y1 - y0, s, x1 - x0, s).mean(axis=(1, 3))  # (h, w)
    return alpha, y0, x0


def render_frame(spec: SceneSpec, t: float, size: int) -> np.ndarray:
    """One frame at time ``t``: uint8 ``(size, size, 3)``."""
    img = np.empty((size, size, 3), dtype=np.float32)
    img[:] = BACKGROUNDS[spec.background]
    for o, s in zip(spec.objects, states_at(spec, t)):
        if not s.visible:
            continue
        alpha, y0, x0 = coverage(o.shape, s.x * size, s.y * size, o.half * size, size)
        h, w = alpha.shape
        a = alpha[..., None].astype(np.float32)
        img[y0 : y0 + h, x0 : x0 + w] = img[y0 : y0 + h, x0 : x0 + w] * (1 - a) + np.float32(COLOURS[s.colour]) * a
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render(spec: SceneSpec, size: int = 64, fps: float = 8.0) -> np.ndarray:
    """All frames of the clip: uint8 ``(T, size, size, 3)`` with ``T = round(duration · fps)``."""
    if not 16 <= size <= 1024:
        raise ValueError(f"render: size {size} px is outside 16..1024")
    if not fps > 0:
        raise ValueError(f"render: fps {fps!r} must be > 0")
    return np.stack([render_frame(spec, float(t), size) for t in frame_times(spec.duration, fps)])
