"""Video I/O used by every package: open, probe, seek to timestamps, iterate, write mp4/gif.

Reading goes through decord (seek-based sampling; resize at decode) with PyAV as the fallback
backend. Frames are uint8 RGB arrays ``(N, H, W, 3)``. Every failure is a :class:`VideoError`
subclass that names the file, and every call into a decoder runs under a timeout so a decoder
that hangs on a broken stream cannot hang the caller.

    with open_video("clip.mp4", size=(224, 224)) as v:
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

    @property
    def duration(self) -> float:
        """Seconds: ``num_frames / fps``."""
        return self.num_frames / self.fps


class VideoReader:
    """An open video. Use :func:`open_video` to create one."""

    def __init__(self, path: Path, backend, timeout: float | None):
        self.path = path
        self._b = backend
        self._timeout = timeout
        self.info = VideoInfo(str(path), backend.fps, backend.num_frames, backend.width, backend.height, backend.name)

    # -- timestamps ↔ frame indices
    def index_of(self, t: float) -> int:
        """Index of the frame shown at time ``t`` (seconds): ``round(t · fps)``, clamped to the video."""
        if not np.isfinite(t) or t < 0:
            raise ValueError(f"{self.path}: timestamp {t!r} must be a finite number >= 0")
        return int(min(round(t * self.info.fps), self.info.num_frames - 1))

    def time_of(self, index: int) -> float:
        return index / self.info.fps

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
) -> VideoReader:
    """Open a video for reading.

    Args:
        path: the video file.
        backend: ``"decord"``, ``"pyav"`` or ``"auto"`` (decord, falling back to PyAV when decord is
            missing or cannot open the file).
        size: ``(width, height)`` to resize every frame to while decoding; None keeps the original.
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
