"""Typed errors of video I/O; each names the file."""

from __future__ import annotations

import os

# the typed errors, re-exported by clipio.video
__all__ = ["CorruptVideoError", "EmptyVideoError", "NotAVideoError", "VideoError", "VideoNotFoundError",
           "VideoTimeoutError"]


class VideoError(Exception):
    """A video could not be read; ``path`` names it."""

    def __init__(self, path: str | os.PathLike, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class VideoNotFoundError(VideoError, FileNotFoundError):
    """The path does not exist or is not a file."""


class NotAVideoError(VideoError):
    """The file is not a video container, or it holds no video stream."""


class EmptyVideoError(VideoError):
    """The file is empty or its video stream has no frames."""


class CorruptVideoError(VideoError):
    """The file looks like a video but its container or stream is broken or truncated."""


class VideoTimeoutError(VideoError, TimeoutError):
    """A decoder call did not return in time (a hung decoder is left behind in a daemon thread)."""


# Container signatures: a file with one of these that fails to open is corrupt, not "not a video".
_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"),  # mp4 / mov / 3gp
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"free"),
    (4, b"wide"),
    (0, b"\x1a\x45\xdf\xa3"),  # matroska / webm
    (0, b"RIFF"),  # avi
    (0, b"FLV"),
    (0, b"\x00\x00\x01\xba"),  # mpeg-ps
    (0, b"\x47"),  # mpeg-ts sync byte (checked again at 188)
    (0, b"OggS"),
    (0, b"GIF8"),
)


def looks_like_video(path: str | os.PathLike) -> bool:
    """True when the file starts with a known video container signature."""
    with open(path, "rb") as f:
        head = f.read(200)
    for offset, sig in _SIGNATURES:
        if head[offset : offset + len(sig)] == sig:
            if sig == b"\x47":
                if len(head) > 188 and head[188:189] == b"\x47":
                    return True
                continue
            return True
    return False


