"""Decoder backends behind :class:`clipio.video.VideoReader`: decord (default) and PyAV.

Each backend exposes ``name, fps, num_frames, width, height, times`` and ``get_batch(indices)``,
``read_all()``, ``close()``; frames are uint8 RGB ``(N, H, W, 3)``. ``times`` holds every frame's
presentation time in seconds from the first frame, in presentation order (float64 ``(num_frames,)``;
None when the container has no timestamps): the reader uses them for variable-frame-rate files, where
``index / fps`` is wrong. ``size`` is ``(width, height)`` or a function of the native ``(width, height)``
that returns it (a bound such as ``max_side``, applied once the stream's size is known). Backends raise
:class:`NoVideoStream` / :class:`NoFrames` for files that open but hold nothing to decode; any other
exception means the file could not be decoded (the reader turns it into a typed error).
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import numpy as np

Size = tuple[int, int] | Callable[[int, int], tuple[int, int]] | None


class NoVideoStream(Exception):
    pass


class NoFrames(Exception):
    pass


class UnsupportedByBackend(Exception):
    """This backend cannot decode this file correctly; another backend may."""


class DecordBackend:
    """decord: frame-accurate seeking and resize at decode (ffmpeg underneath)."""

    name = "decord"

    def __init__(self, path: str, size: Size, num_threads: int = 1):
        self._path, self._threads = path, num_threads
        self._open(size if isinstance(size, tuple) else None)
        self.num_frames = len(self._vr)
        if self.num_frames == 0:
            raise NoFrames("video stream has 0 frames")
        self.fps = float(self._vr.get_avg_fps())
        if not self.fps > 0:
            raise ValueError(f"invalid frame rate {self.fps!r}")
        first = self._vr[0]
        if callable(size):  # a bound on the native size: decord resizes only when opened at a size
            target = tuple(size(first.shape[1], first.shape[0]))
            if target != (first.shape[1], first.shape[0]):
                self._open(target)
                first = self._vr[0]
        # presentation times (decord keeps them as float32 seconds: 0.24 ms resolution at one hour)
        ts = self._vr.get_frame_timestamp(list(range(self.num_frames)))[:, 0].astype(np.float64)
        self.times = ts - ts[0]
        if first.shape[-1] != 3:
            # decord 0.6 copies padded rows for some widths (16, 24, 48, 72 px…) and returns
            # (H, W, 4+) frames, then fails in get_batch; PyAV decodes these correctly.
            raise UnsupportedByBackend(f"decord returns {first.shape[-1]}-channel frames at width {first.shape[1]}")
        self.height, self.width = first.shape[:2]
        self._vr.seek(0)

    def _open(self, size: tuple[int, int] | None) -> None:
        import decord

        w, h = size if size is not None else (-1, -1)
        try:
            self._vr = decord.VideoReader(self._path, ctx=decord.cpu(0), width=w, height=h,
                                          num_threads=self._threads)
        except decord.DECORDError as e:
            if "cannot find video stream" in str(e):
                raise NoVideoStream("file has no video stream") from None
            raise

    def get_batch(self, indices: list[int]) -> np.ndarray:
        out = self._vr.get_batch(indices).asnumpy()
        return np.ascontiguousarray(out, dtype=np.uint8)

    def read_all(self) -> np.ndarray:
        self._vr.seek(0)
        frames = [self._vr.next().asnumpy() for _ in range(self.num_frames)]
        return np.stack(frames)

    def close(self) -> None:
        self._vr = None


class PyAVBackend:
    """PyAV: seek to the key-frame before a target, then decode forward to it.

    Frames are numbered by their presentation timestamps: at open, every packet's pts is read
    (demuxing only, nothing is decoded) and sorted into the frame table, so frame ``i`` is the
    ``i``-th frame shown, whatever the frame rate does. A stream without timestamps falls back to
    numbering by the average rate.
    """

    name = "pyav"
    _SEQUENTIAL_GAP = 48  # decode forward instead of seeking when the next target is this close

    def __init__(self, path: str, size: Size, num_threads: int = 1):
        import av

        self._av = av
        self._c = av.open(path)
        fmt = self._c.format.name
        if not self._c.streams.video:
            self._c.close()
            raise NoVideoStream("file has no video stream")
        if fmt.endswith("_pipe") or fmt.startswith("image2"):
            self._c.close()
            raise NoVideoStream(f"file is a still image ({fmt}), not a video")
        self._s = self._c.streams.video[0]
        self._s.thread_count = max(num_threads, 1)
        rate = self._s.average_rate or self._s.guessed_rate or self._s.base_rate
        if not rate:
            raise ValueError("stream reports no frame rate")
        self.fps = float(rate)
        self._rate = Fraction(rate)
        self._tb = Fraction(self._s.time_base)
        self._start = self._s.start_time or 0
        self.num_frames, self._pts = self._frame_table()  # _pts: (num_frames,) int64, presentation order
        self.times = None if self._pts is None else \
            (self._pts - self._pts[0]) * self._tb.numerator / self._tb.denominator  # seconds, float64
        self._size = None
        first = self._decode_from(0, [0])[0]
        if callable(size):  # a bound on the native size, now known
            size = tuple(size(first.shape[1], first.shape[0]))
            size = None if size == (first.shape[1], first.shape[0]) else size
        self._size = size
        if size is not None:
            first = self._decode_from(0, [0])[0]
        self.height, self.width = first.shape[:2]

    def _frame_table(self) -> tuple[int, np.ndarray | None]:
        """The number of frames and every frame's pts, sorted (presentation order); the pts are None
        when some packet has no timestamp."""
        pts = [p.pts for p in self._c.demux(self._s) if p.size]
        if not pts:
            raise NoFrames("video stream has 0 frames")
        self._c.seek(0, stream=self._s)
        if any(p is None for p in pts):
            return len(pts), None
        return len(pts), np.sort(np.asarray(pts, dtype=np.int64))

    def _to_rgb(self, frame) -> np.ndarray:
        if self._size is None:
            return frame.to_ndarray(format="rgb24")
        w, h = self._size
        return frame.to_ndarray(format="rgb24", width=w, height=h)

    def _index(self, frame) -> int:
        pts = frame.pts if frame.pts is not None else frame.dts
        if self._pts is None:
            return int(round((pts - self._start) * self._tb * self._rate))
        j = int(np.searchsorted(self._pts, pts))  # the table entry of this pts (the nearest, if none is equal)
        if j == len(self._pts) or (j > 0 and pts - self._pts[j - 1] < self._pts[j] - pts):
            j -= 1
        return j

    def _decode_from(self, seek_index: int, targets: list[int]) -> list[np.ndarray]:
        """Seek to the key-frame at or before ``seek_index`` and decode forward through ``targets`` (sorted)."""
        if self._pts is None:
            ts = self._start + int(Fraction(seek_index) / self._rate / self._tb)
        else:
            ts = int(self._pts[seek_index])
        self._c.seek(ts, stream=self._s, backward=True, any_frame=False)
        out: list[np.ndarray] = []
        want = iter(targets)
        target = next(want)
        for frame in self._c.decode(self._s):
            i = self._index(frame)
            while i >= target:  # frame i is the one shown at the target time (or the nearest after)
                out.append(self._to_rgb(frame))
                target = next(want, None)
                if target is None:
                    return out
        raise EOFError(f"stream ended before frame {target} of {self.num_frames} (truncated?)")

    def get_batch(self, indices: list[int]) -> np.ndarray:
        order = sorted(set(indices))
        got: dict[int, np.ndarray] = {}
        run: list[int] = []
        for i in order:  # group targets that are close enough to decode in one forward pass
            if run and i - run[-1] > self._SEQUENTIAL_GAP:
                got.update(zip(run, self._decode_from(run[0], run)))
                run = []
            run.append(i)
        got.update(zip(run, self._decode_from(run[0], run)))
        return np.stack([got[i] for i in indices])

    def read_all(self) -> np.ndarray:
        self._c.seek(0, stream=self._s)
        frames = [self._to_rgb(f) for f in self._c.decode(self._s)]
        if not frames:
            raise NoFrames("video stream has 0 frames")
        return np.stack(frames[: self.num_frames])

    def close(self) -> None:
        self._c.close()
