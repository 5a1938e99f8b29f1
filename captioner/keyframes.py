"""Semantic-aware key-frame extraction (ShareGPT4Video, step 1 of DiffSW).

Candidates are taken every ``interval`` seconds; each is embedded (CLIP CLS token in the paper,
:class:`~captioner.embed.PixelEmbedder` by default) and kept when its cosine similarity to the
*last kept* key-frame is below ``threshold``. The first candidate is always kept and the clip's
last frame closes the list (rule in :func:`extract_keyframes`). Only candidate frames are decoded,
by seeking, ``batch`` at a time; only kept frames stay in memory.

Unlike the official scripts, timestamps are the real times of the decoded frames (their
presentation times, so variable-frame-rate files too; not ``index x 2 s``) and key-frames come out in
time order (no string sort of ``frame_10.00``). ``max_side`` / ``max_pixels`` decode the frames at
the size the VLM will see (resize at decode), so memory follows that size, not the source's.

    for kf in extract_keyframes("clip.mp4", interval=2.0, threshold=0.93):
        print(kf.t, kf.index, kf.similarity, kf.image.shape)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from captioner.embed import Embedder, PixelEmbedder
from clipio.video import VideoReader, open_video

log = logging.getLogger(__name__)


@dataclass
class Keyframe:
    t: float  # real timestamp of the decoded frame, seconds (reader.time_of(index))
    index: int  # frame index in the video
    image: np.ndarray  # uint8 (H, W, 3)
    similarity: float | None  # cosine to the previous kept key-frame; None for the first


def candidate_indices(
    reader: VideoReader, interval: float, start: float = 0.0, end: float | None = None,
    max_duration: float | None = None,
) -> tuple[list[int], int]:
    """Frame indices of the candidates at ``start + k * interval`` in ``[start, end)``, and the
    index of the clip's last frame (the final frame shown before ``end``).

    ``end`` defaults to the end of the video and is capped by ``start + max_duration``.
    Indices are strictly increasing; a candidate never lies past the last frame.
    """
    info = reader.info
    # 1. Check inputs
    if not (math.isfinite(interval) and interval > 0):
        raise ValueError(f"interval {interval!r} must be a finite number of seconds > 0")
    if not (math.isfinite(start) and 0 <= start < info.duration):
        raise ValueError(f"start {start!r} must be >= 0 and before the end of the video ({info.duration:.3f}s)")
    if end is not None and not (math.isfinite(end) and end > start):
        raise ValueError(f"end {end!r} must be a finite number of seconds > start ({start!r})")
    if max_duration is not None and not (math.isfinite(max_duration) and max_duration > 0):
        raise ValueError(f"max_duration {max_duration!r} must be a finite number of seconds > 0")

    # 2. The window [start, stop) and its last frame: the largest index i with time_of(i) < stop
    stop = min(info.duration, end if end is not None else math.inf, start + (max_duration or math.inf))
    last = max(reader.last_index_before(stop), reader.index_of(start))

    # 3. Candidates every `interval` seconds, rounded to frames (reader.index_of), deduplicated
    n = max(math.ceil((stop - start) / interval - 1e-9), 1)  # times start + k·interval < stop
    indices = dict.fromkeys(min(reader.index_of(start + k * interval), last) for k in range(n))
    return list(indices), last


def extract_keyframes(
    video: str | os.PathLike | VideoReader,
    interval: float = 2.0,
    threshold: float = 0.93,
    embedder: Embedder | None = None,
    max_duration: float | None = None,
    start: float = 0.0,
    end: float | None = None,
    batch: int = 8,
    backend: str = "auto",
    max_side: int | None = None,
    max_pixels: int | None = None,
) -> list[Keyframe]:
    """Key-frames of ``video`` (a path, or an open :class:`VideoReader` that is left open).

    ``max_side`` / ``max_pixels`` bound the decoded size when ``video`` is a path (an open reader
    decodes at the size it was opened with: ``open_video(path, max_side=...)``).

    Rule (in time order): the first candidate is kept; a later candidate is kept when
    ``cos(candidate, last kept) < threshold``. Then the clip's last frame (the final frame
    before ``end``) is appended when it is not already the last kept key-frame and
    ``cos(last frame, last kept) < threshold`` — the same test as any candidate, so the caption
    covers how the clip ends without adding a near-duplicate of the previous key-frame. When the
    last frame is itself a candidate it was already judged and is not tested twice. So at most
    ``len(candidates) + 1`` frames are decoded, and ``threshold=1`` keeps every candidate and the
    last frame (no semantic selection: fixed-interval key-frames).

    Raises:
        ValueError: a bad argument (named with its value); VideoError: the video cannot be read.
    """
    # 1. Check inputs (the time window is checked by candidate_indices)
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold {threshold!r} must be in (0, 1]")
    if not (isinstance(batch, int) and batch >= 1):
        raise ValueError(f"batch {batch!r} must be an integer >= 1")
    embedder = embedder if embedder is not None else PixelEmbedder()
    owns = not isinstance(video, VideoReader)
    if not owns and (max_side is not None or max_pixels is not None):
        raise ValueError("max_side/max_pixels apply when extract_keyframes opens the video; open the reader "
                         "with open_video(path, max_side=..., max_pixels=...) instead")
    reader = open_video(video, backend=backend, max_side=max_side, max_pixels=max_pixels) if owns else video
    with reader if owns else contextlib.nullcontext():
        # 2. Candidate frame indices and the clip's last frame
        candidates, last = candidate_indices(reader, interval, start, end, max_duration)

        # 3. Decode, embed and judge the candidates `batch` at a time
        kept: list[Keyframe] = []
        last_emb: np.ndarray | None = None  # (D,) embedding of the last kept key-frame

        def judge(indices: list[int]) -> None:
            nonlocal last_emb
            frames = reader.frames_at_indices(indices)  # (B, H, W, 3)
            embs = embedder.embed(frames)  # (B, D), unit rows
            for i, frame, emb in zip(indices, frames, embs):
                sim = None if last_emb is None else float(np.clip(emb.astype(np.float64) @ last_emb, -1, 1))
                if sim is None or sim < threshold or threshold >= 1:
                    # copy: a view would keep the whole decoded batch alive
                    kept.append(Keyframe(reader.time_of(i), i, frame.copy(), sim))
                    last_emb = emb

        for b in range(0, len(candidates), batch):
            judge(candidates[b : b + batch])
        n_from_candidates = len(kept)

        # 4. Last-frame rule (see docstring)
        if last != candidates[-1]:
            judge([last])

    log.info(
        "%s: %d candidates every %gs, kept %d key-frames%s (threshold %g)",
        reader.path, len(candidates), interval, n_from_candidates,
        " + the last frame" if len(kept) > n_from_candidates else "", threshold,
    )
    return kept


def save_keyframes(keyframes: list[Keyframe], out: str | os.PathLike, cell: int = 160) -> dict:
    """Write ``keyframe-000-0.00s.png``…, ``keyframes.json`` ({t, index, similarity, file} per key-frame)
    and ``contact_sheet.png`` (one row, labelled with the times) into ``out``; return a summary."""
    from clipio.images import contact_sheet, save_png

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for k, kf in enumerate(keyframes):
        name = f"keyframe-{k:03d}-{kf.t:.2f}s.png"
        save_png(out / name, kf.image)
        records.append({"t": kf.t, "index": kf.index, "similarity": kf.similarity, "file": name})
    (out / "keyframes.json").write_text(json.dumps(records, indent=1) + "\n")
    if keyframes:
        sheet = contact_sheet([np.stack([kf.image for kf in keyframes])], col_labels=[f"{kf.t:.2f}s" for kf in keyframes],
                              cell=cell)
        save_png(out / "contact_sheet.png", sheet)
    return {"json": str(out / "keyframes.json"), "sheet": str(out / "contact_sheet.png"), "count": len(records)}
