"""A variable-frame-rate test video: frames with explicit, irregular presentation times (PyAV)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

# presentation times in ms (time base 1/1000): bursts at 25 fps, 30 fps, and gaps of 0.32 s to 0.73 s
VFR_PTS_MS = (0, 40, 80, 400, 440, 1000, 1033, 1066, 1800, 2500)


def vfr_grey(k: int) -> int:
    """Frame k is flat grey at this level, so a decoded frame tells which frame it is."""
    return 25 * k


def write_vfr_mp4(path: str | Path, pts_ms: tuple[int, ...] = VFR_PTS_MS, size: int = 64, grey=None) -> Path:
    """An H.264 mp4 whose frame k is shown at ``pts_ms[k]`` ms (flat grey ``grey(k)``, default :func:`vfr_grey`);
    the container's average rate is meaningless."""
    import av

    path = Path(path)
    tb = Fraction(1, 1000)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.time_base = s.codec_context.time_base = tb
        for k, pts in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), (grey or vfr_grey)(k), np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, tb
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path
