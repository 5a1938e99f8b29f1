"""Video I/O on real sample videos, on broken files, and round trips through the writers."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import tracemalloc

import imageio_ffmpeg
import numpy as np
import pytest
from conftest import SAMPLE_VIDEOS

from clipio.video import (
    CorruptVideoError,
    EmptyVideoError,
    NotAVideoError,
    VideoNotFoundError,
    VideoTimeoutError,
    open_video,
    probe,
    write_gif,
    write_mp4,
    write_video,
)
from clipio.video import backends as vb

BACKENDS = ["decord", "pyav"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(SAMPLE_VIDEOS))
def test_metadata_of_sample_videos(sample_videos, name, backend):
    fps, frames, w, h = SAMPLE_VIDEOS[name]
    with open_video(sample_videos[name], backend=backend) as v:
        assert v.info.backend == backend
        assert v.info.fps == pytest.approx(fps, rel=1e-4)
        assert v.info.num_frames == frames
        assert (v.info.width, v.info.height) == (w, h)
        assert v.info.duration == pytest.approx(frames / fps, rel=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(SAMPLE_VIDEOS))
def test_frames_at_timestamps_equal_full_decode(sample_videos, name, backend):
    with open_video(sample_videos[name], backend=backend) as v:
        every = v.read_all()
        assert every.shape == (v.info.num_frames, v.info.height, v.info.width, 3)
        times = [3.1, 0.0, 1.0, v.info.duration - 0.01, 2.0, 0.52]  # out of order on purpose
        got = v.frames_at(times)
        for t, frame in zip(times, got):
            i = v.index_of(t)
            assert i == min(round(t * v.info.fps), v.info.num_frames - 1)
            np.testing.assert_array_equal(frame, every[i], err_msg=f"{name} t={t} (frame {i})")
        # frames differ over time: the equality above is not trivially true
        assert not np.array_equal(every[0], every[-1])


def test_backends_agree(sample_videos):
    path = sample_videos["bikes.mp4"]
    with open_video(path, backend="decord") as a, open_video(path, backend="pyav") as b:
        idx = [0, 77, 249]
        diff = np.abs(a.frames_at_indices(idx).astype(int) - b.frames_at_indices(idx).astype(int))
        assert diff.mean() < 2.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_resize_at_decode(sample_videos, backend):
    path = sample_videos["bigbuckbunny.mp4"]
    with open_video(path, backend=backend, size=(128, 72)) as v:
        assert (v.info.width, v.info.height) == (128, 72)
        small = v.frames_at([1.0])
    with open_video(path, backend=backend) as v:
        full = v.frames_at([1.0])
    assert small.shape == (1, 72, 128, 3)
    # the resized frame looks like a downscaled original (same mean colour, close per-block means)
    blocks = full[0].reshape(72, 10, 128, 10, 3).mean(axis=(1, 3))
    assert np.abs(blocks - small[0]).mean() < 12


def test_iter_frames_interval_and_bounded_memory(sample_videos):
    with open_video(sample_videos["bikes.mp4"]) as v:
        got = [(t, f.shape) for t, f in v.iter_frames(interval=2.0)]
        assert [t for t, _ in got] == [0.0, 2.0, 4.0, 6.0, 8.0]
        all_times = [t for t, _ in v.iter_frames()]
        assert len(all_times) == 250 and all_times == sorted(all_times)

        def peak(n_frames: int) -> int:
            tracemalloc.start()
            for k, (_, _f) in enumerate(v.iter_frames(chunk=8)):
                if k + 1 >= n_frames:
                    break
            _, p = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            return p

        frame_bytes = 640 * 272 * 3
        short, long = peak(20), peak(250)
        # at most a few chunks of 8 frames alive at once (the batch being filled, the one being
        # yielded, the caller's frame) — never the 250 frames of the whole video
        assert long < 3 * 8 * frame_bytes, f"peak {long / 1e6:.1f} MB while iterating"
        assert long < 1.5 * short + frame_bytes, "memory grows with the number of frames read"


# ----------------------------------------------------------------------------- broken files
@pytest.fixture
def broken(tmp_path, sample_videos):
    src = sample_videos["bikes.mp4"].read_bytes()
    files = {}
    files["truncated"] = tmp_path / "truncated.mp4"
    files["truncated"].write_bytes(src[: len(src) // 2])  # moov atom is at the end: cut off
    files["empty"] = tmp_path / "empty.mp4"
    files["empty"].write_bytes(b"")
    files["text"] = tmp_path / "notes.mp4"
    files["text"].write_text("this is not a video\n" * 50)
    files["image"] = tmp_path / "still.png"
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 10, 10)).save(files["image"])
    ff = imageio_ffmpeg.get_ffmpeg_exe()
    files["audio"] = tmp_path / "tone.m4a"
    subprocess.run([ff, "-y", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
                    str(files["audio"])], check=True)
    files["zero_frames"] = tmp_path / "zero.avi"
    subprocess.run([ff, "-y", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=red:s=64x64:d=1",
                    "-frames:v", "0", "-c:v", "mpeg4", str(files["zero_frames"])], check=True)
    # faststart (moov first) then truncated: opens, but the stream ends early
    fs = tmp_path / "faststart.mp4"
    subprocess.run([ff, "-y", "-loglevel", "error", "-i", str(sample_videos["bikes.mp4"]), "-c", "copy",
                    "-movflags", "+faststart", str(fs)], check=True)
    files["truncated_stream"] = tmp_path / "truncated_stream.mp4"
    files["truncated_stream"].write_bytes(fs.read_bytes()[: fs.stat().st_size // 2])
    # bytes flipped all through the stream data
    corrupt = bytearray(src)
    for k in range(2000, len(corrupt) - 5000, 997):
        corrupt[k] = (corrupt[k] * 7 + 13) % 256
    files["corrupt"] = tmp_path / "corrupt.mp4"
    files["corrupt"].write_bytes(bytes(corrupt))
    return files


@pytest.mark.parametrize(
    "kind, error",
    [
        ("truncated", CorruptVideoError),
        ("empty", EmptyVideoError),
        ("zero_frames", EmptyVideoError),
        ("text", NotAVideoError),
        ("image", NotAVideoError),
        ("audio", NotAVideoError),
    ],
)
def test_open_raises_typed_error_naming_the_file(broken, kind, error):
    with pytest.raises(error) as exc:
        open_video(broken[kind])
    assert str(broken[kind]) in str(exc.value)
    assert exc.value.path == str(broken[kind])


@pytest.mark.parametrize("kind", ["truncated_stream", "corrupt"])
def test_broken_stream_raises_corrupt_on_decode(broken, kind):
    with pytest.raises(CorruptVideoError) as exc:
        with open_video(broken[kind]) as v:
            v.read_all()
    assert str(broken[kind]) in str(exc.value)


def test_missing_file(tmp_path):
    with pytest.raises(VideoNotFoundError, match="no such file"):
        open_video(tmp_path / "nope.mp4")
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError for generic handlers
        probe(tmp_path / "nope.mp4")
    with pytest.raises(VideoNotFoundError, match="not a regular file"):
        open_video(tmp_path)


def test_bad_arguments(sample_videos):
    path = sample_videos["carphone_pristine.mp4"]
    with pytest.raises(ValueError, match="backend 'ffmpeg'"):
        open_video(path, backend="ffmpeg")
    with open_video(path) as v:
        with pytest.raises(ValueError, match="timestamp -1"):
            v.frames_at([-1])
        with pytest.raises(IndexError, match="outside 0..119"):
            v.frames_at_indices([120])


# ----------------------------------------------------------------------------- hangs
def _blocking_fifo(tmp_path):
    fifo = tmp_path / "never-written.fifo"
    os.mkfifo(fifo)
    return fifo


def test_hung_decoder_times_out_instead_of_hanging(tmp_path, sample_videos, monkeypatch):
    """A backend stuck in a blocking read (opening a FIFO nobody writes) must not hang the caller."""
    fifo = _blocking_fifo(tmp_path)

    class StuckBackend(vb.PyAVBackend):
        def get_batch(self, indices):
            with open(fifo, "rb"):  # blocks in the kernel until a writer appears
                pass

    monkeypatch.setattr(vb, "PyAVBackend", StuckBackend)
    v = open_video(sample_videos["carphone_pristine.mp4"], backend="pyav", timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(VideoTimeoutError, match="did not finish within 1s"):
        v.frames_at([0.5])
    assert time.monotonic() - t0 < 30
    # release the stuck thread so it does not outlive the test
    threading.Thread(target=lambda: open(fifo, "wb").close(), daemon=True).start()


def test_hung_open_times_out(tmp_path, sample_videos, monkeypatch):
    fifo = _blocking_fifo(tmp_path)

    class StuckOpen(vb.PyAVBackend):
        def __init__(self, *a, **k):
            with open(fifo, "rb"):
                pass

    monkeypatch.setattr(vb, "PyAVBackend", StuckOpen)
    with pytest.raises(VideoTimeoutError, match="opening with pyav"):
        open_video(sample_videos["carphone_pristine.mp4"], backend="pyav", timeout=1.0)
    threading.Thread(target=lambda: open(fifo, "wb").close(), daemon=True).start()


# ----------------------------------------------------------------------------- writing
def _moving_square(t=24, size=64):
    frames = np.full((t, size, size, 3), 30, np.uint8)
    for k in range(t):
        frames[k, 20:36, 2 * k : 2 * k + 16] = (220, 60, 40)
    return frames


@pytest.mark.parametrize("backend", BACKENDS)
def test_mp4_round_trip(tmp_path, backend):
    frames = _moving_square()
    path = write_mp4(tmp_path / "sq.mp4", frames, fps=12)
    with open_video(path, backend=backend) as v:
        assert (v.info.num_frames, v.info.fps, v.info.width, v.info.height) == (24, 12.0, 64, 64)
        back = v.read_all()
    assert np.abs(back.astype(int) - frames).mean() < 3  # h264 at crf 18: close, not exact
    assert not list(tmp_path.glob(".*partial*")), "temporary file left behind"


def test_gif_round_trip_keeps_every_frame(tmp_path):
    frames = _moving_square()
    frames[5:10] = frames[5]  # identical consecutive frames must stay separate frames
    path = write_video(tmp_path / "sq.gif", frames, fps=10)
    with open_video(path) as v:
        assert v.info.num_frames == 24
        back = v.read_all()
    assert np.abs(back.astype(int) - frames).mean() < 2


def test_writer_errors(tmp_path):
    with pytest.raises(ValueError, match="even width and height"):
        write_mp4(tmp_path / "odd.mp4", np.zeros((2, 31, 32, 3), np.uint8), fps=8)
    with pytest.raises(ValueError, match="uint8"):
        write_gif(tmp_path / "f.gif", np.zeros((2, 32, 32, 3), np.float32), fps=8)
    with pytest.raises(ValueError, match="unsupported video suffix"):
        write_video(tmp_path / "x.avi", np.zeros((2, 32, 32, 3), np.uint8), fps=8)
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------- variable frame rate
@pytest.mark.parametrize("backend", BACKENDS)
def test_variable_frame_rate_times_are_the_frames_pts(tmp_path, backend):
    from vfr_video import VFR_PTS_MS, vfr_grey, write_vfr_mp4

    path = write_vfr_mp4(tmp_path / "vfr.mp4")
    pts = [p / 1000 for p in VFR_PTS_MS]
    with open_video(path, backend=backend) as v:
        info = v.info
        assert not info.constant_rate and info.num_frames == len(pts)
        # the mean rate of the timestamps, not the container's average rate (8.43 fps here)
        assert info.fps == pytest.approx((len(pts) - 1) / pts[-1])
        assert [v.time_of(i) for i in range(info.num_frames)] == pytest.approx(pts, abs=1e-6)
        frames = v.frames_at_indices([9, 5, 0, 3, 6])  # frame i is the i-th frame shown
        assert [round(float(f.mean())) for f in frames] == pytest.approx([vfr_grey(k) for k in (9, 5, 0, 3, 6)],
                                                                          abs=2)
        # times -> frames: the nearest presentation time; "before t" is strict
        assert [v.index_of(t) for t in (0.0, 0.3, 0.5, 1.0, 1.5, 2.4, 9.0)] == [0, 3, 4, 5, 8, 9, 9]
        assert [v.last_index_before(t) for t in (0.0, 1.0, 1.01, 99.0)] == [0, 4, 5, 9]
        got = v.frames_at([1.8])
        assert round(float(got[0].mean())) == pytest.approx(vfr_grey(8), abs=2)
        assert info.duration > pts[-1]  # the last frame lies inside the video


@pytest.mark.parametrize("backend", BACKENDS)
def test_constant_rate_stays_index_over_fps(sample_videos, backend):
    """A constant-rate file keeps the exact index / fps times (its pts agree within 1 ms)."""
    with open_video(sample_videos["carphone_pristine.mp4"], backend=backend) as v:
        assert v.info.constant_rate
        assert v.time_of(119) == 119 / v.info.fps and v.index_of(2.0) == round(2.0 * v.info.fps)
        assert v._b.times[119] == pytest.approx(119 * 1001 / 30000, abs=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_side_and_max_pixels_bound_the_decoded_size(sample_videos, backend):
    path = sample_videos["bigbuckbunny.mp4"]  # 1280 x 720
    with open_video(path, backend=backend, max_side=320) as v:
        assert (v.info.width, v.info.height) == (320, 180) and v.frames_at([1.0]).shape == (1, 180, 320, 3)
    with open_video(path, backend=backend, max_pixels=640 * 360) as v:
        assert v.frames_at([1.0]).shape == (1, 360, 640, 3)
    with open_video(sample_videos["carphone_pristine.mp4"], backend=backend, max_side=448) as v:
        assert (v.info.width, v.info.height) == (176, 144)  # never scaled up
    with pytest.raises(ValueError, match="not both"):
        open_video(path, size=(64, 64), max_side=32)
    with pytest.raises(ValueError, match="max_side must be a positive integer"):
        open_video(path, max_side=0)
