"""``captioner split``: cut long videos at shot boundaries before captioning.

Every frame is decoded with :mod:`clipio.video` (downscaled at decode to ``width`` px) and fed to
a PySceneDetect detector (``content``: HSV difference of consecutive frames against ``threshold``;
``adaptive``: the same score against its rolling average). A cut at frame ``c`` means frame ``c``
is the first frame of a new shot, so shot ``k`` spans frames ``[c_k, c_{k+1})`` and its record has
``start`` = the presentation time of frame ``c_k`` and ``end`` that of ``c_{k+1}`` (the video's duration
for the last shot; ``c / fps`` at a constant rate): absolute seconds in the source, ``end`` exclusive, which is how ``captioner run`` reads a span.

Shots shorter than ``min_duration`` or longer than ``max_duration`` are dropped (and counted). The
output is a manifest with one ``ok`` record per kept shot, id ``<video id>/shot-<k>`` (``k`` counts
every detected shot, so ids do not move when the limits change); a video that does not decode is one
``error`` record with its video id. Rerunning with the same ``--out`` resumes: a video whose records
are all there is skipped; one cut short by a kill is detected again and only its missing shots are
written. A video whose shots were all dropped leaves no record and is detected again on a rerun.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode, SceneDetector
from tqdm import tqdm

from captioner.diffsw import ClipTask
from clipio.manifest import ManifestWriter, error_record, read_manifest
from clipio.video import VideoError, VideoInfo, open_video

log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = {"content": 27.0, "adaptive": 3.0}  # PySceneDetect's own defaults
# Cuts closer than this are merged by the detector's flash filter. Kept small so that short shots
# reach the --min-duration filter (and its count) instead of vanishing inside the detector.
MIN_SCENE_LEN_S = 0.25


@dataclass(frozen=True)
class SplitConfig:
    detector: str = "content"  # content | adaptive
    threshold: float | None = None  # None: the detector's default (DEFAULT_THRESHOLDS)
    min_duration: float = 1.0  # seconds; shorter shots are dropped
    max_duration: float = 60.0  # seconds; longer shots are dropped
    width: int = 256  # frames are downscaled to this width (keeping the aspect ratio) for detection
    backend: str = "auto"  # clipio video backend

    def __post_init__(self) -> None:
        if self.detector not in DEFAULT_THRESHOLDS:
            raise ValueError(f"--detector {self.detector!r}: use one of {sorted(DEFAULT_THRESHOLDS)}")
        if self.threshold is not None and not self.threshold > 0:
            raise ValueError(f"--threshold {self.threshold!r} must be > 0")
        if not 0 <= self.min_duration <= self.max_duration:
            raise ValueError(f"--min-duration {self.min_duration!r} and --max-duration {self.max_duration!r}: "
                             "need 0 <= min <= max seconds")
        if self.width < 16:
            raise ValueError(f"--width {self.width!r} must be >= 16 px")

    @property
    def resolved_threshold(self) -> float:
        return DEFAULT_THRESHOLDS[self.detector] if self.threshold is None else float(self.threshold)


def build_detector(cfg: SplitConfig) -> SceneDetector:
    if cfg.detector == "adaptive":
        return AdaptiveDetector(adaptive_threshold=cfg.resolved_threshold, min_scene_len=MIN_SCENE_LEN_S)
    return ContentDetector(threshold=cfg.resolved_threshold, min_scene_len=MIN_SCENE_LEN_S)


def _detect_size(info: VideoInfo, width: int) -> tuple[int, int] | None:
    """``(w, h)`` to decode at: ``width`` px wide, the aspect kept, both even; None: native (no upscaling)."""
    if info.width <= width:
        return None
    h = max(2, int(round(info.height * width / info.width / 2)) * 2)
    return width - width % 2, h


def frame_starts(path: str | Path, backend: str = "auto") -> list[float]:
    """Presentation time of every frame (``VideoReader.time_of``: right at a variable frame rate too), and
    the video's duration last: ``starts[i]`` is where frame ``i``'s shot would start, ``starts[n]`` the end."""
    with open_video(path, backend=backend) as v:
        return [v.time_of(i) for i in range(v.info.num_frames)] + [v.info.duration]


def detect_cuts(path: str | Path, cfg: SplitConfig = SplitConfig()) -> tuple[VideoInfo, list[int]]:
    """The video's info (native size) and the frame indices where a new shot starts (sorted, > 0).

    Raises VideoError (any subclass) when the video cannot be opened or decoded.
    """
    with open_video(path, backend=cfg.backend) as v:
        info = v.info
    detector = build_detector(cfg)
    cuts: list[FrameTimecode] = []
    n = 0
    with open_video(path, backend=cfg.backend, size=_detect_size(info, cfg.width)) as v:
        for n, (_, frame_rgb) in enumerate(v.iter_frames(chunk=64), 1):  # (h, w, 3) uint8 RGB
            # PySceneDetect takes OpenCV's BGR order (it computes HSV with COLOR_BGR2HSV)
            cuts += detector.process_frame(FrameTimecode(n - 1, info.fps), cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
        cuts += detector.post_process(FrameTimecode(n, info.fps))
    return info, sorted({c.frame_num for c in cuts if 0 < c.frame_num < info.num_frames})


def shot_spans(cuts: list[int], num_frames: int) -> list[tuple[int, int]]:
    """Frame ranges ``[first, stop)`` of the shots between ``cuts``, covering ``0..num_frames``."""
    bounds = [0, *cuts, num_frames]
    return list(zip(bounds[:-1], bounds[1:]))


@dataclass
class SplitSummary:
    out: str
    videos: int = 0  # inputs
    skipped: int = 0  # already complete in the output (resume)
    errors: int = 0  # videos that did not decode (one error record each)
    shots: int = 0  # shots detected in the videos split this run
    kept: int = 0  # shot records written
    dropped_short: int = 0  # shots under min_duration
    dropped_long: int = 0  # shots over max_duration
    no_shot_kept: int = 0  # videos every shot of which was dropped (no record)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The printed JSON summary: the fields, with the drops under ``dropped`` by reason."""
        d = dict(self.__dict__)
        short, long_ = d.pop("dropped_short"), d.pop("dropped_long")
        d["dropped"] = {"too_short": short, "too_long": long_}
        d["seconds"] = d.pop("seconds")  # last
        return d


def _done_sources(out: Path) -> set[str]:
    """Source ids already complete in ``out``: an error record, or all ``num_shots`` shot records."""
    if not out.exists():
        return set()
    done, count, expected = set(), Counter(), {}
    for rec in read_manifest(out):
        meta = rec.get("meta") or {}
        src = meta.get("source_id", rec["id"])
        if rec["status"] == "error":
            done.add(src)
        else:
            count[src] += 1
            expected[src] = int(meta.get("num_shots", 1))
    return done | {s for s, c in count.items() if c >= expected[s]}


def shot_records(task: ClipTask, info: VideoInfo, cuts: list[int], cfg: SplitConfig,
                 summary: SplitSummary, starts: list[float] | None = None) -> list[dict[str, Any]]:
    """The records of the kept shots of one video (and the drop counts added to ``summary``); ``starts``:
    :func:`frame_starts` (default: ``index / fps``, a constant frame rate)."""
    starts = starts or [i / info.fps for i in range(info.num_frames)] + [info.duration]
    kept = []
    for k, (first, stop) in enumerate(shot_spans(cuts, info.num_frames)):
        # the reader's frame times (VideoReader.time_of); the last shot ends at info.duration
        start, end = round(starts[first], 6), round(starts[stop], 6)
        if end - start < cfg.min_duration:
            summary.dropped_short += 1
        elif end - start > cfg.max_duration:
            summary.dropped_long += 1
        else:
            kept.append((k, start, end))
    summary.shots += len(cuts) + 1
    split = {"detector": cfg.detector, "threshold": cfg.resolved_threshold}
    return [{"id": f"{task.id}/shot-{k:03d}", "video": task.video, "start": start, "end": end,
             "fps": info.fps, "width": info.width, "height": info.height, "status": "ok", "error": None,
             "meta": {"source_id": task.id, "shot": k, "num_shots": len(kept), "split": split}}
            for k, start, end in kept]


def split_videos(tasks: Iterable[ClipTask], out: str | Path, cfg: SplitConfig = SplitConfig(),
                 progress: bool = True) -> SplitSummary:
    """Detect the shots of every video in ``tasks`` and append the kept ones to the manifest ``out``."""
    out = Path(out)
    tasks = list(tasks)
    t0 = time.time()
    summary = SplitSummary(str(out), videos=len(tasks))
    with ManifestWriter(out) as w:
        done = _done_sources(out)  # read under the writer's lock
        todo = [t for t in tasks if t.id not in done]
        summary.skipped = len(tasks) - len(todo)
        if summary.skipped:
            log.info("resuming: %d of %d videos already split in %s", summary.skipped, len(tasks), out)
        bar = tqdm(todo, desc="splitting into shots", unit="video", disable=not progress)
        for task in bar:
            # 1. Detect (the whole video) before writing any of its records
            try:
                info, cuts = detect_cuts(task.path, cfg)
                starts = frame_starts(task.path, cfg.backend)
            except VideoError as e:
                summary.errors += 1
                log.warning("%s: %s", task.id, e)
                if task.id not in w.done_ids:
                    w.write(error_record(task.id, task.video, e, meta={"source_id": task.id}))
                continue
            # 2. Filter by duration and write the kept shots (those not already there)
            records = shot_records(task, info, cuts, cfg, summary, starts)
            if not records:
                summary.no_shot_kept += 1
                log.warning("%s: none of its %d shots lasts %g-%g s; no record", task.id, len(cuts) + 1,
                            cfg.min_duration, cfg.max_duration)
            for rec in records:
                if rec["id"] not in w.done_ids:
                    w.write(rec)
                    summary.kept += 1
            bar.set_postfix(shots=summary.kept, error=summary.errors)
        bar.close()
    summary.seconds = round(time.time() - t0, 2)
    return summary
