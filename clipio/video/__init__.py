"""Video I/O: open, probe, seek to timestamps, iterate with bounded memory, write mp4/gif.

Used by every package (synthworld writes through it, t2v's dataset decodes through it).
"""

from clipio.video import errors
from clipio.video.errors import *  # noqa: F403 (the typed errors: errors.__all__)
from clipio.video.reader import VideoInfo, VideoReader, available_backends, open_video, probe
from clipio.video.writer import write_gif, write_mp4, write_video

__all__ = [*errors.__all__, "VideoInfo", "VideoReader", "available_backends", "open_video", "probe", "write_gif",
           "write_mp4", "write_video"]
