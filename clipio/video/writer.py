"""Write frames to mp4 (h264 through imageio-ffmpeg's bundled ffmpeg) or GIF (Pillow).

Files are written next to their destination under a temporary name and renamed into place, so a
killed run never leaves a half-written video under the final name.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np


def _check_frames(frames: np.ndarray, path: Path) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"{path}: frames must be (T>0, H, W, 3), got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"{path}: frames must be uint8, got {frames.dtype} (scale and cast first)")
    return np.ascontiguousarray(frames)


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float, crf: int = 18, preset: str = "medium") -> Path:
    """Encode uint8 frames ``(T, H, W, 3)`` as h264/yuv420p mp4. H and W must be even (yuv420p)."""
    import imageio_ffmpeg

    path = Path(path)
    frames = _check_frames(frames, path)
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"{path}: h264/yuv420p needs even width and height, got {w}x{h}; crop or pad first")
    if not fps > 0:
        raise ValueError(f"{path}: fps {fps!r} must be > 0")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    writer = imageio_ffmpeg.write_frames(
        str(tmp),
        (w, h),
        fps=fps,
        codec="libx264",
        pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p",
        quality=None,
        macro_block_size=1,
        ffmpeg_log_level="error",
        output_params=["-crf", str(crf), "-preset", preset, "-movflags", "+faststart"],
    )
    try:
        writer.send(None)  # start ffmpeg
        for frame in frames:
            writer.send(frame)
        writer.close()
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: float, loop: int = 0) -> Path:
    """Write uint8 frames ``(T, H, W, 3)`` as an animated GIF (``loop=0``: forever).

    Encoded by ffmpeg with a palette computed from the clip (palettegen/paletteuse). Pillow is not
    used because it merges identical consecutive frames, which changes the frame count.
    """
    import imageio_ffmpeg

    path = Path(path)
    frames = _check_frames(frames, path)
    t, h, w, _ = frames.shape
    if not fps > 0:
        raise ValueError(f"{path}: fps {fps!r} must be > 0")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps}", "-i", "-",
        "-filter_complex", "[0:v]split[a][b];[a]palettegen=stats_mode=full[p];[b][p]paletteuse=dither=none",
        "-loop", str(loop), "-f", "gif", str(tmp),
    ]
    proc = subprocess.run(cmd, input=frames.tobytes(), capture_output=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{path}: ffmpeg failed to write the GIF: {proc.stderr.decode(errors='replace')[-500:]}")
    os.replace(tmp, path)
    return path


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, **kwargs) -> Path:
    """Write ``.mp4`` or ``.gif`` by the path's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".mp4":
        return write_mp4(path, frames, fps, **kwargs)
    if suffix == ".gif":
        return write_gif(path, frames, fps, **kwargs)
    raise ValueError(f"{path}: unsupported video suffix {suffix!r}; use .mp4 or .gif")
