"""Decoder backends behind :class:`clipio.video.VideoReader`: decord (default) and PyAV.

Each backend exposes ``name, fps, num_frames, width, height`` and ``get_batch(indices)``,
``read_all()``, ``close()``; frames are uint8 RGB ``(N, H, W, 3)``. Backends raise
:class:`NoVideoStream` / :class:`NoFrames` for files that open but hold nothing to decode; any other
exception means the file could not be decoded (the reader turns it into a typed error).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np


class NoVideoStream(Exception):
    pass


class NoFrames(Exception):
    pass


class UnsupportedByBackend(Exception):
    """This backend cannot decode this file correctly; another backend may."""


class DecordBackend:
    """decord: frame-accurate seeking and resize at decode (ffmpeg underneath)."""

    name = "decord"

    def __init__(self, path: str, size: tuple[int, int] | None, num_threads: int = 1):
        import decord

        w, h = size if size is not None else (-1, -1)
        try:
            self._vr = decord.VideoReader(path, ctx=decord.cpu(0), width=w, height=h, num_threads=num_threads)
        except decord.DECORDError as e:
            if "cannot find video stream" in str(e):
                raise NoVideoStream("file has no video stream") from None
            raise
        self.num_frames = len(self._vr)
        if self.num_frames == 0:
            raise NoFrames("video stream has 0 frames")
        self.fps = float(self._vr.get_avg_fps())
        if not self.fps > 0:
            raise ValueError(f"invalid frame rate {self.fps!r}")
        first = self._vr[0]
        if first.shape[-1] != 3:
            # decord 0.6 copies padded rows for some widths (16, 24, 48, 72 px…) and returns
            # (H, W, 4+) frames, then fails in get_batch; PyAV decodes these correctly.
            raise UnsupportedByBackend(f"decord returns {first.shape[-1]}-channel frames at width {first.shape[1]}")
        self.height, self.width = first.shape[:2]
        self._vr.seek(0)

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
    """PyAV: seek to the key-frame before a target, then decode forward to it."""

    name = "pyav"
    _SEQUENTIAL_GAP = 48  # decode forward instead of seeking when the next target is this close

    def __init__(self, path: str, size: tuple[int, int] | None, num_threads: int = 1):
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
        self._size = size
        self.num_frames = int(self._s.frames or 0) or self._count_packets()
        if self.num_frames == 0:
            raise NoFrames("video stream has 0 frames")
        first = self._decode_from(0, [0])[0]
        self.height, self.width = first.shape[:2]

    def _count_packets(self) -> int:
        n = sum(1 for p in self._c.demux(self._s) if p.size)
        if n == 0:
            raise NoFrames("video stream has 0 frames")
        self._c.seek(0, stream=self._s)
        return n

    def _to_rgb(self, frame) -> np.ndarray:
        if self._size is None:
            return frame.to_ndarray(format="rgb24")
        w, h = self._size
        return frame.to_ndarray(format="rgb24", width=w, height=h)

    def _index(self, frame) -> int:
        pts = frame.pts if frame.pts is not None else frame.dts
        return int(round((pts - self._start) * self._tb * self._rate))

    def _decode_from(self, seek_index: int, targets: list[int]) -> list[np.ndarray]:
        """Seek to the key-frame at or before ``seek_index`` and decode forward through ``targets`` (sorted)."""
        ts = self._start + int(Fraction(seek_index) / self._rate / self._tb)
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
