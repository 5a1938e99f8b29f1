"""Degradations a detector must survive: blur, noise, and a lossy video round trip."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of each frame (not across time or channels); uint8 in, uint8 out."""
    if sigma <= 0:
        return frames
    out = ndimage.gaussian_filter(frames.astype(np.float32), sigma=(0, sigma, sigma, 0))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def add_noise(frames: np.ndarray, std: float, seed: int = 0) -> np.ndarray:
    """Add i.i.d. Gaussian pixel noise of standard deviation ``std`` (in 0..255 units)."""
    if std <= 0:
        return frames
    rng = np.random.default_rng(seed)
    out = frames.astype(np.float32) + rng.normal(0.0, std, size=frames.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
