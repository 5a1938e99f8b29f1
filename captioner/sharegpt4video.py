"""Import/export of the public ShareGPT4Video 40K captions (``sharegpt4video_40k.jsonl``).

The file could not be downloaded here, so the mapping follows the schema published with the
dataset and used by public readers of it. Assumptions:

- One JSON object per line with ``video_id`` (str), ``video_path`` (str), ``captions`` (a list of
  ``{"idx": ..., "content": str}``) and optionally ``timestamp``, ``keyframe``, ``zip_folder``.
- ``idx`` may be a string (``"0"``, as released) or an int. ``-1`` is the whole-video summary, our
  ``captions["dense"]``; ``0..k-1`` are the key-frame captions in order (0: detailed caption of the
  first key-frame, i > 0: what changed since key-frame i-1), our ``keyframes``. The idx values must
  be exactly ``0..k-1``; a gap or repeat makes the line an error rather than a guess.
- Key-frame times are taken from ``timestamp`` only when it is unambiguously one entry per key-frame
  caption: ``k`` numbers (seconds), or ``k`` ``[start, end]`` pairs (the start is used). Otherwise
  the times are ``null`` (we never invent ``index × 2 s``) and the raw ``timestamp`` is kept in
  ``meta``. ``keyframe`` (units undocumented: frame indices or seconds) is kept in ``meta`` as is.
- There is no short caption in the release. An optional top-level ``short_caption`` (written by our
  export when a record has one) becomes ``captions["short"]``.
- ``video_path`` is relative to the folder the videos were unpacked into (``video_root``).
- Times are seconds from the start of the clip, as in our manifest. A record's span (``start``/``end``,
  e.g. a shot of a longer video from ``captioner split``) is exported as top-level ``start`` and ``end``
  (seconds in the video file; not in the 40K release) and imported back from them, so
  ``timestamp`` stays relative to ``start`` both ways.

Every input line yields one record: a malformed line gives a ``status: error`` record whose
``error`` names the line number and the problem.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from clipio.manifest import ManifestWriter, error_record, iter_manifest

log = logging.getLogger(__name__)

SOURCE = "sharegpt4video-40k"
DENSE_IDX = -1
KNOWN_KEYS = ("video_id", "video_path", "captions", "timestamp", "keyframe", "zip_folder", "short_caption",
              "start", "end")


class SchemaError(ValueError):
    """A 40K line does not follow the documented schema."""


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _keyframe_times(timestamp: Any, k: int) -> list[float] | None:
    """Per-key-frame times in seconds when ``timestamp`` has one entry per key-frame, else None."""
    if not isinstance(timestamp, list) or len(timestamp) != k or k == 0:
        return None
    if all(_is_number(t) for t in timestamp):
        return [float(t) for t in timestamp]
    if all(isinstance(p, list) and len(p) == 2 and all(_is_number(t) for t in p) for p in timestamp):
        return [float(p[0]) for p in timestamp]
    return None


def _parse_captions(captions: Any) -> tuple[str, list[str]]:
    """``captions`` list → (dense caption, key-frame captions in idx order)."""
    if not isinstance(captions, list):
        raise SchemaError(f"'captions' must be a list of {{idx, content}}, got {type(captions).__name__}")
    by_idx: dict[int, str] = {}
    for n, c in enumerate(captions):
        if not isinstance(c, dict) or "idx" not in c or "content" not in c:
            raise SchemaError(f"captions[{n}] must be an object with 'idx' and 'content', got {c!r:.80}")
        try:
            idx = int(c["idx"])
        except (TypeError, ValueError):
            raise SchemaError(f"captions[{n}].idx {c['idx']!r} is not an integer") from None
        if not isinstance(c["content"], str) or not c["content"].strip():
            raise SchemaError(f"captions[{n}] (idx {idx}) has an empty or non-text 'content'")
        if idx in by_idx:
            raise SchemaError(f"captions idx {idx} appears twice")
        by_idx[idx] = c["content"]
    if DENSE_IDX not in by_idx:
        raise SchemaError("no summary caption (idx -1)")
    dense = by_idx.pop(DENSE_IDX)
    if sorted(by_idx) != list(range(len(by_idx))):
        raise SchemaError(f"key-frame caption idx must be 0..k-1, got {sorted(by_idx)}")
    return dense, [by_idx[i] for i in range(len(by_idx))]


def line_to_record(obj: Any, line_no: int, video_root: str | os.PathLike | None = None) -> dict[str, Any]:
    """One parsed 40K line → an ``ok`` manifest record; raises SchemaError naming the problem."""
    if not isinstance(obj, dict):
        raise SchemaError(f"expected a JSON object, got {type(obj).__name__}")
    for key in ("video_id", "video_path"):
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise SchemaError(f"missing or empty {key!r}")
    dense, kf_captions = _parse_captions(obj.get("captions"))
    times = _keyframe_times(obj.get("timestamp"), len(kf_captions))

    video = obj["video_path"]
    if video_root is not None and not Path(video).is_absolute():
        video = str(Path(video_root).resolve() / video)
    meta: dict[str, Any] = {"source": SOURCE, "line": line_no, "video_path": obj["video_path"]}
    for key in ("zip_folder", "keyframe"):
        if key in obj:
            meta[key] = obj[key]
    if "timestamp" in obj and times is None:
        meta["timestamp"] = obj["timestamp"]  # not one entry per key-frame: kept raw, times left null
    extra = {k: v for k, v in obj.items() if k not in KNOWN_KEYS}
    if extra:
        meta["extra"] = extra
    captions = {"dense": dense}
    if isinstance(obj.get("short_caption"), str) and obj["short_caption"].strip():
        captions["short"] = obj["short_caption"]
    span = {}
    for key in ("start", "end"):
        if key in obj:
            if not _is_number(obj[key]) or obj[key] < 0:
                raise SchemaError(f"{key!r} must be a number of seconds >= 0, got {obj[key]!r}")
            span[key] = float(obj[key])
    if "start" in span and "end" in span and not span["end"] > span["start"]:
        raise SchemaError(f"'end' {span['end']} must be after 'start' {span['start']}")
    return {
        "id": obj["video_id"], "video": video, **span, "status": "ok", "error": None,
        "keyframes": [{"t": None if times is None else times[i], "caption": c} for i, c in enumerate(kf_captions)],
        "captions": captions, "meta": meta,
    }


def import_sharegpt4video(in_path: str | os.PathLike, out_manifest: str | os.PathLike,
                          video_root: str | os.PathLike | None = None) -> dict[str, int]:
    """Append one manifest record per line of a 40K JSONL; ids already in ``out_manifest`` are skipped.

    Returns ``{"lines", "ok", "errors", "skipped_done", "duplicates", "keyframes_without_times"}``.
    """
    in_path = Path(in_path)
    counts = dict.fromkeys(("lines", "ok", "errors", "skipped_done", "duplicates", "keyframes_without_times"), 0)
    seen: set[str] = set()
    with ManifestWriter(out_manifest) as w, open(in_path, encoding="utf-8") as f:
        resumed = set(w.done_ids)
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            counts["lines"] += 1
            obj: Any = None
            try:
                obj = json.loads(line)
                rec = line_to_record(obj, n, video_root)
            except (json.JSONDecodeError, SchemaError) as e:
                vid = obj.get("video_id") if isinstance(obj, dict) else None
                clip_id = vid if isinstance(vid, str) and vid.strip() else f"{in_path.name}:line-{n}"
                video = obj.get("video_path") if isinstance(obj, dict) else None
                rec = error_record(clip_id, video if isinstance(video, str) else "",
                                   f"{in_path}:{n}: {type(e).__name__}: {e}", meta={"source": SOURCE, "line": n})
            if rec["id"] in resumed:
                counts["skipped_done"] += 1
                continue
            if rec["id"] in seen:
                log.warning("%s:%d: video_id %r already imported from an earlier line; skipping this one",
                            in_path, n, rec["id"])
                counts["duplicates"] += 1
                continue
            seen.add(rec["id"])
            w.write(rec)
            if rec["status"] == "ok":
                counts["ok"] += 1
                counts["keyframes_without_times"] += any(k["t"] is None for k in rec["keyframes"])
            else:
                log.warning("%s", rec["error"])
                counts["errors"] += 1
    return counts


def record_to_line(rec: dict[str, Any]) -> dict[str, Any]:
    """An ``ok`` manifest record → one 40K line (the inverse of :func:`line_to_record`)."""
    captions = rec.get("captions") or {}
    if not isinstance(captions.get("dense"), str):
        raise SchemaError(f"record {rec['id']!r} has no 'dense' caption (has {sorted(captions)})")
    meta = rec.get("meta") or {}
    kfs = rec.get("keyframes") or []
    line: dict[str, Any] = {"video_id": rec["id"], "video_path": meta.get("video_path", rec["video"])}
    times = [k.get("t") for k in kfs]
    if kfs and all(_is_number(t) for t in times):
        line["timestamp"] = times
    elif "timestamp" in meta:
        line["timestamp"] = meta["timestamp"]
    if "keyframe" in meta:
        line["keyframe"] = meta["keyframe"]
    line["captions"] = [{"idx": str(i), "content": k["caption"]} for i, k in enumerate(kfs)]
    line["captions"].append({"idx": str(DENSE_IDX), "content": captions["dense"]})
    if "zip_folder" in meta:
        line["zip_folder"] = meta["zip_folder"]
    for key in ("start", "end"):  # the span of the video file the record describes; times stay relative to start
        if rec.get(key) is not None:
            line[key] = float(rec[key])
    if isinstance(captions.get("short"), str):
        line["short_caption"] = captions["short"]
    return line


def export_sharegpt4video(manifest: str | os.PathLike, out_path: str | os.PathLike) -> dict[str, int]:
    """Write the ``ok`` records of a manifest as a 40K JSONL (replacing ``out_path``).

    Returns ``{"records", "exported", "skipped_errors"}``; an ok record without a dense caption is
    an error (SchemaError naming it), not a silent skip.
    """
    counts = {"records": 0, "exported": 0, "skipped_errors": 0}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for rec in iter_manifest(manifest):
                counts["records"] += 1
                if rec["status"] != "ok":
                    counts["skipped_errors"] += 1
                    continue
                f.write(json.dumps(record_to_line(rec), ensure_ascii=False) + "\n")
                counts["exported"] += 1
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return counts
