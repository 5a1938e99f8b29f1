"""Video I/O used by every package: open, probe, seek to timestamps, iterate, write mp4/gif.

Reading goes through decord (seek-based sampling; resize at decode) with PyAV as the fallback
backend. Frames are uint8 RGB arrays ``(N, H, W, 3)``. Times are the frames' presentation times
(from the container's timestamps, counted from the first frame), so a variable-frame-rate file
reads right: frame ``i`` is the ``i``-th frame shown and ``time_of(i)`` its pts in seconds. Every
failure is a :class:`VideoError` subclass that names the file, and every call into a decoder runs
under a timeout so a decoder that hangs on a broken stream cannot hang the caller.

    with open_video("clip.mp4", size=(224, 224)) as v:   # or max_side=448 / max_pixels=...: aspect kept
        print(v.info)                      # fps, frame count, duration, size
        frames = v.frames_at([0.0, 1.5])   # (2, 224, 224, 3), decoding only what is needed
        for t, frame in v.iter_frames(interval=2.0):
            ...
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from clipio.images import fit_within
from clipio.video.errors import (
    CorruptVideoError,
    EmptyVideoError,
    NotAVideoError,
    VideoError,
    VideoNotFoundError,
    VideoTimeoutError,
    looks_like_video,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_TIMEOUT = 60.0  # seconds one decoder call may take before VideoTimeoutError
# A stream whose every presentation time is within this of index / fps is constant-rate: times and
# indices use the exact formula (pts rounded to a 1/1000 time base, as in WebM/MKV, differ by <= 0.5 ms).
CONSTANT_RATE_TOLERANCE = 1e-3


def call_with_timeout(fn: Callable[[], T], timeout: float | None, path: str | os.PathLike, what: str) -> T:
    """Run ``fn()`` in a daemon thread and wait at most ``timeout`` seconds for it.

    Decoders release the GIL inside native code, so the caller regains control even when the
    decoder is stuck in a blocking read; the stuck thread is abandoned (daemon: it cannot keep the
    process alive). ``timeout=None`` calls ``fn`` directly.
    """
    if timeout is None:
        return fn()
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # re-raised in the caller's thread below
            box["error"] = e

    thread = threading.Thread(target=run, name=f"decode:{Path(path).name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise VideoTimeoutError(path, f"{what} did not finish within {timeout:g}s (decoder hung?)")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


# ----------------------------------------------------------------------------- reader
@dataclass(frozen=True)
class VideoInfo:
    path: str
    fps: float
    num_frames: int
    width: int  # size of the decoded frames (after any resize at decode)
    height: int
    backend: str
    # False: the frames' presentation times are not index / fps (variable frame rate); fps is then
    # the mean rate of the timestamps, (num_frames - 1) / last frame's time
    constant_rate: bool = True

    @property
    def duration(self) -> float:
        """Seconds: ``num_frames / fps`` (variable frame rate: the last frame's time + one mean frame)."""
        return self.num_frames / self.fps


class VideoReader:
    """An open video. Use :func:`open_video` to create one."""

    def __init__(self, path: Path, backend, timeout: float | None):
        self.path = path
        self._b = backend
        self._timeout = timeout
        n, fps = backend.num_frames, backend.fps
        times = getattr(backend, "times", None)  # (n,) presentation times from the first frame, or None
        if times is not None and (len(times) != n or (n > 1 and not np.all(np.diff(times) > 0))):
            log.debug("%s: timestamps are not strictly increasing; using index / fps", path)
            times = None  # no usable timestamps (missing, repeated): frames are numbered at the average rate
        constant = times is None or bool(np.abs(times - np.arange(n) / fps).max() <= CONSTANT_RATE_TOLERANCE)
        if not constant:
            fps = (n - 1) / float(times[-1])
        self._times = None if constant else np.asarray(times, np.float64)
        self.info = VideoInfo(str(path), fps, n, backend.width, backend.height, backend.name, constant)

    # -- timestamps ↔ frame indices
    def index_of(self, t: float) -> int:
        """Index of the frame nearest to time ``t`` (seconds), clamped to the video: ``round(t · fps)`` at a
        constant frame rate, else the frame whose presentation time is nearest."""
        if not np.isfinite(t) or t < 0:
            raise ValueError(f"{self.path}: timestamp {t!r} must be a finite number >= 0")
        if self._times is None:
            return int(min(round(t * self.info.fps), self.info.num_frames - 1))
        j = int(np.searchsorted(self._times, t))
        if j == len(self._times) or (j > 0 and t - self._times[j - 1] < self._times[j] - t):
            j -= 1
        return j

    def last_index_before(self, t: float) -> int:
        """Index of the last frame shown before time ``t``: the largest ``i`` with ``time_of(i) < t``
        (at least 0, at most the last frame)."""
        if self._times is None:
            x = t * self.info.fps  # frames shown before `t`, fractional; snap float noise (132.0000001 -> 132)
            n_before = round(x) if abs(x - round(x)) < 1e-6 else int(np.ceil(x))
        else:
            n_before = int(np.searchsorted(self._times, t - 1e-9))
        return int(min(max(n_before - 1, 0), self.info.num_frames - 1))

    def time_of(self, index: int) -> float:
        """Presentation time of frame ``index``, seconds from the first frame (``index / fps`` at a
        constant frame rate, where the two agree within ``CONSTANT_RATE_TOLERANCE``)."""
        return index / self.info.fps if self._times is None else float(self._times[index])

    # -- fetching
    def frames_at_indices(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at the given indices, uint8 ``(N, H, W, 3)``, decoding by seeking."""
        idx = [int(i) for i in indices]
        if not idx:
            return np.zeros((0, self.info.height, self.info.width, 3), np.uint8)
        bad = [i for i in idx if not 0 <= i < self.info.num_frames]
        if bad:
            raise IndexError(f"{self.path}: frame indices {bad[:5]} outside 0..{self.info.num_frames - 1}")
        frames = self._decode(lambda: self._b.get_batch(idx), f"decoding {len(idx)} frames")
        if frames.shape[0] != len(idx):
            raise CorruptVideoError(self.path, f"asked for {len(idx)} frames, decoder returned {frames.shape[0]}")
        return frames

    def frames_at(self, times: Sequence[float]) -> np.ndarray:
        """Frames shown at the given timestamps (seconds), uint8 ``(N, H, W, 3)``."""
        return self.frames_at_indices([self.index_of(t) for t in times])

    def iter_frames(self, interval: float | None = None, chunk: int = 16) -> Iterator[tuple[float, np.ndarray]]:
        """Yield ``(time, frame)`` every ``interval`` seconds (every frame when None).

        At most ``chunk`` frames are decoded and held at once, whatever the video's length.
        """
        if interval is None:
            indices: Iterator[int] = iter(range(self.info.num_frames))
        else:
            if not interval > 0:
                raise ValueError(f"{self.path}: interval {interval!r} must be > 0 seconds")
            n = max(int(np.ceil(self.info.duration / interval - 1e-9)), 1)  # times k·interval < duration
            indices = iter(dict.fromkeys(self.index_of(k * interval) for k in range(n)))
        while True:
            batch = [i for _, i in zip(range(chunk), indices)]
            if not batch:
                return
            frames = self.frames_at_indices(batch)
            for i, frame in zip(batch, frames):
                yield self.time_of(i), frame
            del frames, frame  # let the chunk go before the next one is decoded

    def read_all(self) -> np.ndarray:
        """Every frame, decoded in order: uint8 ``(num_frames, H, W, 3)`` (for short clips)."""
        return self._decode(self._b.read_all, "decoding every frame")

    def _decode(self, fn: Callable[[], np.ndarray], what: str) -> np.ndarray:
        """Run a decoder call under the timeout; decoder failures become CorruptVideoError."""
        try:
            return call_with_timeout(fn, self._timeout, self.path, what)
        except VideoError:
            raise
        except Exception as e:  # decord.DECORDError, av.error.*, EOFError from a truncated stream
            raise CorruptVideoError(self.path, f"{what} failed: {type(e).__name__}: {str(e).strip()[:300]}") from e

    def close(self) -> None:
        self._b.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        i = self.info
        return f"VideoReader({i.path!r}, {i.width}x{i.height}, {i.fps:.3f} fps, {i.num_frames} frames, {i.backend})"


def available_backends() -> list[str]:
    out = []
    try:
        import decord  # noqa: F401

        out.append("decord")
    except ImportError:
        pass
    try:
        import av  # noqa: F401

        out.append("pyav")
    except ImportError:
        pass
    return out


def open_video(
    path: str | os.PathLike,
    backend: str = "auto",
    size: tuple[int, int] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    num_threads: int = 1,
    max_side: int | None = None,
    max_pixels: int | None = None,
) -> VideoReader:
    """Open a video for reading.

    Args:
        path: the video file.
        backend: ``"decord"``, ``"pyav"`` or ``"auto"`` (decord, falling back to PyAV when decord is
            missing or cannot open the file).
        size: ``(width, height)`` to resize every frame to while decoding; None keeps the original.
        max_side, max_pixels: instead of ``size``, bounds on the decoded size: the frames are scaled down
            at decode (aspect ratio kept, never up, :func:`clipio.images.fit_within`) so that the longer
            side is at most ``max_side`` and ``width * height`` at most ``max_pixels``. Memory per frame
            is then bounded by them, not by the source resolution.
        timeout: seconds any single decoder call may take (None: no limit).
        num_threads: decoder threads (decord); keep 1 when running many workers.

    Raises:
        VideoNotFoundError, NotAVideoError, EmptyVideoError, CorruptVideoError, VideoTimeoutError.
    """
    from clipio.video import backends as vb

    path = Path(path)
    if not path.is_file():
        raise VideoNotFoundError(path, "no such file" if not path.exists() else "not a regular file")
    if path.stat().st_size == 0:
        raise EmptyVideoError(path, "file is empty (0 bytes)")
    if size is not None and (len(size) != 2 or min(size) <= 0):
        raise ValueError(f"{path}: size must be (width, height) with positive values, got {size!r}")
    if max_side is not None or max_pixels is not None:
        if size is not None:
            raise ValueError(f"{path}: pass size or max_side/max_pixels, not both (got size={size!r}, "
                             f"max_side={max_side!r}, max_pixels={max_pixels!r})")
        fit_within(1, 1, max_side, max_pixels)  # checks the bounds
        size = lambda w, h: fit_within(w, h, max_side, max_pixels)  # noqa: E731 (applied once the size is known)
    names = {"auto": available_backends(), "decord": ["decord"], "pyav": ["pyav"]}.get(backend)
    if names is None:
        raise ValueError(f"{path}: backend {backend!r} is not one of 'auto', 'decord', 'pyav'")
    if not names:
        raise RuntimeError("no video backend installed: pip install decord or av")
    errors: list[str] = []
    for name in names:
        cls = vb.DecordBackend if name == "decord" else vb.PyAVBackend
        try:
            b = call_with_timeout(lambda cls=cls: cls(str(path), size, num_threads), timeout, path, f"opening with {name}")
        except VideoTimeoutError:
            raise
        except vb.NoVideoStream as e:
            raise NotAVideoError(path, str(e)) from None
        except vb.NoFrames as e:
            raise EmptyVideoError(path, str(e)) from None
        except ImportError as e:
            errors.append(f"{name}: not installed ({e})")
            continue
        except Exception as e:  # decoder errors have library-specific types
            errors.append(f"{name}: {type(e).__name__}: {str(e).strip()[:200]}")
            continue
        if errors:
            log.debug("%s: opened with %s after: %s", path, name, "; ".join(errors))
        return VideoReader(path, b, timeout)
    reason = "; ".join(errors)
    if looks_like_video(path):
        raise CorruptVideoError(path, f"container is damaged or truncated ({reason})")
    raise NotAVideoError(path, f"not a video file ({reason})")


def probe(path: str | os.PathLike, backend: str = "auto") -> VideoInfo:
    """Metadata of a video without decoding frames."""
    with open_video(path, backend=backend) as v:
        return v.info
