"""Datasets over a manifest: decoded clips (online) or precomputed latents + text embeddings (cache).

Only ``status: ok`` records are used. The caption is ``captions[caption_field]`` — the one setting
the short-vs-dense experiment varies; a record without that caption is an error naming the record.
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


def clip_times(start: float, end: float, num_frames: int, fps: float) -> list[float]:
    """Times of the sampled frames: ``start + k/fps``; times past the clip's end repeat its last frame."""
    last = max(start, end - 1e-3)
    return [min(start + k / fps, last) for k in range(num_frames)]


def decode_clip(path: Path, start: float, end: float, num_frames: int, fps: float, size: int,
                source_size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 (F, size, size, 3): frames at ``clip_times``, short side resized to ``size``, centre-cropped.

    ``source_size`` is the video's ``(width, height)`` when the manifest records it; otherwise the
    file is probed first.
    """
    w, h = source_size if source_size else _probe_size(path)
    scale = size / min(w, h)
    rw, rh = max(size, round(w * scale)), max(size, round(h * scale))
    with open_video(path, size=(rw, rh)) as v:
        frames = v.frames_at(clip_times(start, min(end, v.info.duration), num_frames, fps))
    y0, x0 = (rh - size) // 2, (rw - size) // 2
    return frames[:, y0 : y0 + size, x0 : x0 + size]


def _probe_size(path: Path) -> tuple[int, int]:
    with open_video(path) as v:
        return v.info.width, v.info.height


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (F, H, W, 3) → float (3, F, H, W) in [−1, 1]."""
    return rearrange(to_signed(frames), "f h w c -> c f h w")


class ManifestClipDataset(Dataset):
    """Decodes each clip span on the fly: ``{"id", "video" (3, F, S, S) in [−1, 1], "caption"}``."""

    def __init__(self, manifest: str | Path, caption_field: str, num_frames: int, fps: float, size: int):
        self.manifest = Path(manifest)
        self.records = ok_records(self.manifest, caption_field)
        self.caption_field, self.num_frames, self.fps, self.size = caption_field, num_frames, fps, size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        r = self.records[i]
        known = (int(r["width"]), int(r["height"])) if r.get("width") and r.get("height") else None
        frames = decode_clip(resolve_video(self.manifest, r), float(r.get("start", 0.0)),
                             float(r.get("end", 1e9)), self.num_frames, self.fps, self.size, known)
        return {"id": r["id"], "video": to_tensor(frames), "caption": r["captions"][self.caption_field]}
