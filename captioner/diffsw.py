"""Differential sliding-window captioning (DiffSW), batched across clips.

Per clip (ShareGPT4Video, Alg. 1):
  1. key-frames ``K_0 … K_n`` (semantic-aware selection, :mod:`captioner.keyframes`);
  2. ``C_0 = detail(K_0)``; for i ≥ 1, ``C_i = diff(K_{i-1}, K_i, t_{i-1}, t_i, C_{i-1})``;
  3. ``dense = summary([(t_i, C_i)])`` and ``short = short([(t_i, C_i)])`` — text only.
Fast mode instead sends every key-frame in one labelled grid image (one call) and then a short call.

Steps inside one clip are sequential, so throughput comes from a pool of ``active_clips`` clips:
each round sends the next request of *every* active clip to the backend as one batch. Key-frames
of the next clips are extracted by ``prefetch`` threads meanwhile. A clip whose video cannot be
read, or whose request fails for good, becomes an error record; the others go on. An answer the
backend cut at its token limit is kept but flagged: the record's ``meta.truncated`` lists those
steps (``detail@0.0``, ``diff@2.0``, ``summary``, ``short``, ``fast``, ``clip_summary@0.0-4.0``).

Key-frames are decoded at the size the backend will see (``keyframes.max_side``, and
``backend.max_pixels``): memory per clip follows that size, not the source resolution.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from captioner.backends.base import ChatRequest, is_truncated
from captioner.config import CaptionerConfig
from captioner.prompting import PromptSet, fmt_t
from clipio.manifest import error_record, window_spans
from clipio.video import open_video

log = logging.getLogger(__name__)
GRID_LABEL_HEIGHT = 14
_OK = object()


@dataclass
class ClipTask:
    """One clip (or span of a video) to caption."""

    id: str
    path: Path  # the video file
    video: str  # the record's ``video`` field (relative to the output manifest when possible)
    start: float = 0.0
    end: float | None = None  # None: to the end of the video
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Job:
    task: ClipTask
    info: dict[str, Any]  # fps, width, height, start, end
    times: list[float]
    images: list[np.ndarray]
    captions: list[str] = field(default_factory=list)
    dense: str | None = None
    short: str | None = None
    grid: tuple[np.ndarray, dict] | None = None
    windows: list[tuple[float, float]] = field(default_factory=list)  # training windows still to caption
    window_captions: list[str] | None = None
    truncated: list[str] = field(default_factory=list)  # steps whose answer was cut at the token limit

    @property
    def duration(self) -> float:
        return self.info["end"] - self.info["start"]

    def timeline(self) -> list[dict]:
        return [{"t": round(t, 3), "caption": c} for t, c in zip(self.times, self.captions)]


def key_frame_grid(images: list[np.ndarray], times: list[float], cols: int, cell: int) -> tuple[np.ndarray, dict]:
    """Key-frames in one image, ``cols`` per row, each cell under a strip labelled with its time."""
    rows = -(-len(images) // cols)
    cols = min(cols, len(images))
    canvas = Image.new("RGB", (cols * cell, rows * (cell + GRID_LABEL_HEIGHT)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for k, (img, t) in enumerate(zip(images, times)):
        r, c = divmod(k, cols)
        y0 = r * (cell + GRID_LABEL_HEIGHT)
        pil = Image.fromarray(img)
        if pil.size != (cell, cell):
            pil = pil.resize((cell, cell), Image.BILINEAR)
        canvas.paste(pil, (c * cell, y0 + GRID_LABEL_HEIGHT))
        draw.text((c * cell + 2, y0 + 1), f"{fmt_t(t)}s", fill=(0, 0, 0))
    layout = {"rows": rows, "cols": cols, "cell": cell, "label_height": GRID_LABEL_HEIGHT}
    return np.asarray(canvas), layout


def extract_job(task: ClipTask, cfg: CaptionerConfig, embedder) -> _Job:
    """Open a clip and extract its key-frames (what the prefetch threads / Ray stage 1 do)."""
    from captioner.keyframes import extract_keyframes

    kc, rc = cfg.keyframes, cfg.run
    # decoded at the size the backend sends (resize at decode): memory follows it, not the source
    with open_video(task.path, backend=rc.video_backend, timeout=rc.decode_timeout, max_side=kc.max_side,
                    max_pixels=cfg.backend.max_pixels) as reader:
        info = reader.info
        end = info.duration if task.end is None else min(task.end, info.duration)
        if kc.max_duration is not None:
            end = min(end, task.start + kc.max_duration)
        if not end > task.start:
            raise ValueError(f"span {task.start:.2f}-{end:.2f}s is empty (video lasts {info.duration:.2f}s)")
        kfs = extract_keyframes(reader, interval=kc.interval, threshold=kc.threshold, embedder=embedder,
                                start=task.start, end=end)
    meta = {"fps": info.fps, "width": info.width, "height": info.height, "start": task.start, "end": end}
    # times inside a record are seconds from its start (the manifest contract): a span is its own clip
    return _Job(task, meta, [max(k.t - task.start, 0.0) for k in kfs], [k.image for k in kfs])


class DiffSWCaptioner:
    """Captions clips with one backend; :meth:`caption` yields one manifest record per clip."""

    def __init__(self, cfg: CaptionerConfig, backend, embedder=None, prompts: PromptSet | None = None):
        from captioner.embed import build_embedder

        self.cfg = cfg
        self.backend = backend
        self.prompts = prompts or PromptSet(cfg.run.prompts)
        kc = cfg.keyframes
        self.embedder = embedder or build_embedder(kc.embedder, kc.clip_path, device=kc.device)
        tasks = ("detail", "diff", "summary", "short") if cfg.run.mode == "diffsw" else ("fast", "short")
        tasks += ("clip_summary",) if cfg.run.window_seconds else ()
        self.prompt_version = self.prompts.version(tasks)

    # --------------------------------------------------------------------- key-frames (prefetch threads)
    def extract(self, task: ClipTask) -> _Job:
        return extract_job(task, self.cfg, self.embedder)

    # --------------------------------------------------------------------- the next request(s) of a job
    def _requests(self, job: _Job) -> list[ChatRequest]:
        p = self.prompts
        if self.cfg.run.mode == "fast":
            if job.dense is None:
                job.grid = key_frame_grid(job.images, job.times, self.cfg.run.grid_cols, self.cfg.run.grid_cell)
                return [p.fast(job.grid[0], job.grid[1], job.times, job.duration)]
            return [p.short_from_grid(job.grid[0], job.grid[1], job.times, job.duration, job.dense)]
        k = len(job.captions)
        if k == 0:
            return [p.detail(job.images[0], job.times[0])]
        if k < len(job.times):
            return [p.diff(job.images[k - 1], job.images[k], job.times[k - 1], job.times[k], job.captions[-1])]
        tl = job.timeline()
        if job.dense is None:
            return [p.summary(tl, job.duration), p.short(tl, job.duration)]
        # the windows' dense captions: each from the timeline up to its end (text only)
        return [p.clip_summary([k for k in tl if k["t"] <= e + 1e-6], job.duration, s, e) for s, e in job.windows]

    def _apply(self, job: _Job, answers: list[str]) -> bool:
        """Store a round's answers; True when the clip is finished."""
        if self.cfg.run.mode == "fast":
            if job.dense is None:
                job.dense = answers[0]
                return False
            job.short = answers[0]
            return True
        if len(job.captions) < len(job.times):
            job.captions.append(answers[0])
            return False
        if job.dense is None:
            job.dense, job.short = answers
            rc = self.cfg.run
            job.windows = window_spans(job.duration, rc.window_seconds, rc.window_stride) if rc.window_seconds else []
            return not job.windows
        job.window_captions = answers
        return True

    def _record(self, job: _Job) -> dict[str, Any]:
        t, i = job.task, job.info
        keyframes = job.timeline() if self.cfg.run.mode == "diffsw" else [{"t": round(x, 3), "caption": None}
                                                                          for x in job.times]
        meta = {**t.meta, "captioner": self.backend.name,
                "prompt_version": self.prompt_version, "mode": self.cfg.run.mode,
                "keyframe_settings": {"interval": self.cfg.keyframes.interval,
                                      "threshold": self.cfg.keyframes.threshold,
                                      "embedder": self.cfg.keyframes.embedder}}
        rec = {"id": t.id, "video": t.video, "start": i["start"], "end": round(i["end"], 3), "fps": i["fps"],
               "width": i["width"], "height": i["height"], "status": "ok", "error": None,
               "keyframes": keyframes, "captions": {"short": job.short, "dense": job.dense}, "meta": meta}
        if job.window_captions is not None:  # times from the record's start, like every time inside it
            rec["windows"] = [{"start": s, "end": e, "captions": {"dense": c}}
                              for (s, e), c in zip(job.windows, job.window_captions)]
        if job.truncated:
            meta["truncated"] = job.truncated
        return rec

    # --------------------------------------------------------------------- the pool
    def caption(self, tasks: Iterable[ClipTask]) -> Iterator[dict[str, Any]]:
        """Yield one record (ok or error) per task, as clips finish (not in input order)."""
        with ThreadPoolExecutor(max_workers=max(self.cfg.run.prefetch, 1), thread_name_prefix="keyframes") as pool:
            yield from self.caption_jobs(self._prefetched(tasks, pool))

    def _prefetched(self, tasks: Iterable[ClipTask], pool: ThreadPoolExecutor) -> Iterator[_Job | tuple[ClipTask, Exception]]:
        """Jobs in input order, key-frames extracted ``active_clips + prefetch`` clips ahead."""
        ahead: deque[tuple[ClipTask, Future]] = deque()
        pending = iter(tasks)
        while True:
            while len(ahead) < self.cfg.run.active_clips + self.cfg.run.prefetch:
                task = next(pending, None)
                if task is None:
                    break
                ahead.append((task, pool.submit(self.extract, task)))
            if not ahead:
                return
            task, fut = ahead.popleft()
            try:
                yield fut.result()
            except Exception as e:  # unreadable video: becomes an error record
                yield task, e

    def caption_jobs(self, jobs: Iterable[_Job | tuple[ClipTask, Exception | str]],
                     on_step: Callable[[_Job], None] | None = None) -> Iterator[dict[str, Any]]:
        """Caption clips whose key-frames are extracted; ``(task, exception or reason)`` items become error records.

        ``on_step(job)`` is called each time a clip's answers of a round are stored, before its record is made:
        ``job.timeline()`` holds the differential captions so far, then ``job.dense`` and ``job.short`` (how
        ``captioner serve`` shows captions as they arrive)."""
        jobs = iter(jobs)
        active: list[_Job] = []
        exhausted = False
        while active or not exhausted:
            # 1. fill the pool
            while len(active) < self.cfg.run.active_clips and not exhausted:
                item = next(jobs, None)
                if item is None:
                    exhausted = True
                elif isinstance(item, tuple):
                    task, e = item
                    yield error_record(task.id, task.video, e, meta=task.meta)
                else:
                    active.append(item)
            if not active:
                continue
            # 2. one backend batch: the next step of every active clip
            per_job = [self._requests(job) for job in active]
            flat = [r for rs in per_job for r in rs]
            try:
                answers = self.backend.generate(flat)
            except Exception as e:  # the whole batch failed: every clip in it fails
                answers = [e] * len(flat)
            # 3. hand the answers back; finished and failed clips leave the pool
            still: list[_Job] = []
            pos = 0
            for job, rs in zip(active, per_job):
                got = answers[pos:pos + len(rs)]
                pos += len(rs)
                bad = next((a for a in got if isinstance(a, Exception) or a is None or not str(a).strip()), _OK)
                if bad is not _OK:
                    reason = bad if isinstance(bad, Exception) else "the backend returned an empty answer"
                    yield error_record(job.task.id, job.task.video, _step_error(rs[0].task, reason),
                                       meta=job.task.meta)
                else:
                    job.truncated += [step_label(r) for r, a in zip(rs, got) if is_truncated(a)]
                    done = self._apply(job, [str(a).strip() for a in got])
                    if on_step is not None:
                        on_step(job)
                    if done:
                        yield self._record(job)
                    else:
                        still.append(job)
            active = still


def step_label(request: ChatRequest) -> str:
    """A request's step in a record: ``detail@0.0``, ``diff@2.0``, ``clip_summary@0.0-4.0``, ``summary``..."""
    f = request.fields
    if request.task in ("detail", "diff") and "t" in f:
        return f"{request.task}@{fmt_t(f['t'])}"
    if request.task == "clip_summary" and "start" in f:
        return f"clip_summary@{fmt_t(f['start'])}-{fmt_t(f['end'])}"
    return request.task


def _step_error(task: str, reason: Exception | str) -> str:
    msg = reason if isinstance(reason, str) else f"{type(reason).__name__}: {reason}"
    return f"{task} step failed: {msg}"
