"""Datasets over a manifest: decoded clips (online) or precomputed latents + text embeddings (cache).

Only ``status: ok`` records are used. The caption is ``captions[caption_field]`` — the one setting
the short-vs-dense experiment varies; a record without that caption is an error naming the record.

A record longer than the training window (``num_frames / fps`` seconds) is trained on as its fixed
``windows`` (written at caption time: ``captioner run ... run.window_seconds=W``, or ``t2v synth
--window W``), each a sample of its own (id ``<clip id>@<window start>``) whose caption is the dense
caption *of that window* — so the cache and exact resume hold, and the model never reads about events
it does not see. Such a record without windows of that length is an error naming it, unless
``data.window_captions=clip`` (the first window, captioned with the whole clip's caption).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset

from clipio.manifest import read_manifest, resolve_video
from clipio.pixels import to_signed
from clipio.video import open_video

log = logging.getLogger(__name__)


def ok_records(manifest: str | Path, caption_field: str | None = None) -> list[dict]:
    """The usable records of a manifest, checked for the caption field when one is given."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest {manifest} does not exist (data.manifest)")
    recs = [r for r in read_manifest(manifest) if r["status"] == "ok"]
    if not recs:
        raise ValueError(f"manifest {manifest} has no status=ok records")
    missing = [] if caption_field is None else [r["id"] for r in recs if caption_field not in (r.get("captions") or {})]
    if missing:
        have = sorted({k for r in recs for k in (r.get("captions") or {})})
        raise ValueError(f"data.caption_field {caption_field!r} is missing in {len(missing)} records "
                         f"(e.g. {missing[0]}); captions present: {have}")
    return recs


def training_samples(records: list[dict], caption_field: str, num_frames: int, fps: float,
                     window_captions: str = "require") -> list[dict]:
    """``{"id", "record", "start", "end", "caption"}`` per training sample (``start``/``end`` in the video file)."""
    if window_captions not in ("require", "clip"):
        raise ValueError(f"data.window_captions {window_captions!r}: use 'require' or 'clip'")
    window, tol = num_frames / fps, 1.0 / fps
    samples, fallback, no_field = [], [], 0
    for r in records:
        start = float(r.get("start") or 0.0)
        end = float(r["end"]) if r.get("end") is not None else None
        whole = {"id": r["id"], "record": r, "start": start, "end": end if end is not None else 1e9,
                 "caption": r["captions"][caption_field]}
        if end is None or end - start <= window + tol:
            samples.append(whole)
            continue
        wins = [w for w in r.get("windows") or [] if abs(float(w["end"]) - float(w["start"]) - window) <= tol]
        if not wins:
            if window_captions == "require":
                have = sorted({round(float(w["end"]) - float(w["start"]), 3) for w in r.get("windows") or []})
                raise ValueError(
                    f"record {r['id']!r} lasts {end - start:.2f} s but trains in {window:.2f} s windows "
                    f"(data.num_frames {num_frames} / data.fps {fps:g}) and has no window captions of that length"
                    f"{f' (it has {have} s)' if have else ''}: caption with `captioner run ... "
                    f"run.window_seconds={window:g}` (or `t2v synth --window {window:g}`), or set "
                    "data.window_captions=clip to train its first window on the whole clip's caption")
            fallback.append(r["id"])
            samples.append(whole)
            continue
        for w in wins:
            caption = (w.get("captions") or {}).get(caption_field)
            no_field += caption is None
            samples.append({"id": f"{r['id']}@{float(w['start']):g}", "record": r,
                            "start": start + float(w["start"]), "end": start + float(w["end"]),
                            "caption": r["captions"][caption_field] if caption is None else caption})
    if fallback:
        log.warning("%d records are longer than the %.2f s training window and have no window captions "
                    "(e.g. %s): their first window trains on the whole clip's caption (data.window_captions=clip)",
                    len(fallback), window, fallback[0])
    if no_field:
        log.warning("%d windows have no %r caption: they train on their clip's", no_field, caption_field)
    return samples


def clip_times(start: float, end: float, num_frames: int, fps: float) -> list[float]:
    """Times of the sampled frames: ``start + k/fps``; times past the clip's end repeat its last frame."""
    last = max(start, end - 1e-3)
    return [min(start + k / fps, last) for k in range(num_frames)]


def decode_clip(path: Path, start: float, end: float, num_frames: int, fps: float, size: int | tuple[int, int],
                source_size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 (F, H, W, 3): frames at ``clip_times``, resized to cover ``size`` — a square side, or ``(height,
    width)`` — and centre-cropped to it.

    ``source_size`` is the video's ``(width, height)`` when the manifest records it; otherwise the
    file is probed first.
    """
    th, tw = (size, size) if isinstance(size, int) else size
    w, h = source_size if source_size else _probe_size(path)
    scale = max(th / h, tw / w)
    rw, rh = max(tw, round(w * scale)), max(th, round(h * scale))
    with open_video(path, size=(rw, rh)) as v:
        frames = v.frames_at(clip_times(start, min(end, v.info.duration), num_frames, fps))
    y0, x0 = (rh - th) // 2, (rw - tw) // 2
    return frames[:, y0 : y0 + th, x0 : x0 + tw]


def _probe_size(path: Path) -> tuple[int, int]:
    with open_video(path) as v:
        return v.info.width, v.info.height


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (F, H, W, 3) → float (3, F, H, W) in [−1, 1]."""
    return rearrange(to_signed(frames), "f h w c -> c f h w")


def assign_buckets(samples: list[dict], manifest: Path, buckets: list, fps: float) -> None:
    """Set each sample's ``bucket`` (t2v/data/buckets.py) from its video's size and its span."""
    from t2v.data.buckets import assign

    for s in samples:
        r = s["record"]
        w, h = (int(r["width"]), int(r["height"])) if r.get("width") and r.get("height") else \
            _probe_size(resolve_video(manifest, r))
        s["bucket"] = assign(buckets, w, h, s["end"] - s["start"], fps)


def manifest_samples(manifest: Path, caption_field: str, num_frames: int, fps: float, window_captions: str = "require",
                     buckets: list | None = None) -> tuple[list[dict], list[dict]]:
    """A manifest's usable records and their training samples (each with its bucket when ``buckets`` is given)."""
    records = ok_records(manifest, caption_field)
    samples = training_samples(records, caption_field, num_frames, fps, window_captions)
    if buckets:
        assign_buckets(samples, manifest, buckets, fps)
    return records, samples


class ManifestClipDataset(Dataset):
    """Decodes each sample's span on the fly: ``{"id", "video" (3, F, H, W) in [−1, 1], "caption"}`` — F × S × S,
    or the shape of its bucket when ``buckets`` (a list of :class:`~t2v.data.buckets.Bucket`) is given."""

    def __init__(self, manifest: str | Path, caption_field: str, num_frames: int, fps: float, size: int,
                 window_captions: str = "require", buckets: list | None = None):
        self.manifest = Path(manifest)
        self.records, self.samples = manifest_samples(self.manifest, caption_field, num_frames, fps, window_captions,
                                                      buckets)
        self.caption_field, self.num_frames, self.fps, self.size = caption_field, num_frames, fps, size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        r = s["record"]
        known = (int(r["width"]), int(r["height"])) if r.get("width") and r.get("height") else None
        b = s.get("bucket")
        frames = decode_clip(resolve_video(self.manifest, r), s["start"], s["end"], b.frames if b else self.num_frames,
                             self.fps, (b.height, b.width) if b else self.size, known)
        return {"id": s["id"], "video": to_tensor(frames), "caption": s["caption"]}
