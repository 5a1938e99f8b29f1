"""The manifest: JSON Lines, one record per clip, append-only — the contract between captioner and t2v.

A record (the contract is written out in docs/clipio.md)::

    {"id": "clip-000017", "video": "clips/clip-000017.mp4", "start": 0.0, "end": 4.0,
     "fps": 8.0, "width": 64, "height": 64, "status": "ok", "error": null,
     "keyframes": [{"t": 0.0, "caption": "..."}, ...],
     "captions": {"short": "...", "dense": "..."}, "meta": {...}}

``video`` is relative to the manifest's folder unless absolute. ``start``/``end`` are seconds in that
file (the span the record describes); every time *inside* a record — ``keyframes[i].t`` and the
timestamps its captions write — is in seconds from the record's ``start``, so a span is captioned as a
clip of its own. ``status`` is ``ok`` or ``error``; an error record carries a readable ``error`` and no
captions. Each record is written as one line with a single ``write`` and flushed, so a killed run leaves
at most one partial last line, which readers skip with a warning (and a resumed run rewrites that clip).
A record longer than a training window may carry ``windows``: ``[{"start", "end", "captions": {...}}]``,
the dense caption of each window of :func:`window_spans` (times from the record's start, re-timed from the
window's start inside its captions). An id may appear again later (a retried error): the last record of an id is the one that counts
(:func:`read_manifest`). One process writes a manifest at a time (:class:`ManifestWriter` holds a lock).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("id", "video", "status")
STATUSES = ("ok", "error")


class ManifestError(ValueError):
    """A manifest line is malformed; the message names the file and line."""


def validate_record(rec: dict[str, Any], where: str = "record") -> dict[str, Any]:
    """Check the contract's invariants; raise ManifestError naming what is wrong."""
    if not isinstance(rec, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise ManifestError(f"{where}: missing key(s) {missing}")
    if rec["status"] not in STATUSES:
        raise ManifestError(f"{where}: status {rec['status']!r} is not one of {list(STATUSES)}")
    if rec["status"] == "error" and not rec.get("error"):
        raise ManifestError(f"{where}: an error record needs a non-empty 'error'")
    if rec["status"] == "ok" and not isinstance(rec.get("captions", {}), dict):
        raise ManifestError(f"{where}: 'captions' must be an object of caption_field -> text")
    return rec


def iter_manifest(path: str | os.PathLike, strict: bool = False) -> Iterator[dict[str, Any]]:
    """Yield the records of a manifest in order.

    A malformed line raises ManifestError when ``strict``; otherwise it is skipped with a warning
    (a truncated last line is what a killed writer leaves behind).
    """
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield validate_record(json.loads(line), f"{path}:{n}")
            except (json.JSONDecodeError, ManifestError) as e:
                if strict:
                    raise ManifestError(f"{path}:{n}: {e}") from None
                log.warning("%s:%d: skipping malformed line (%s)", path, n, e)


def iter_latest(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The last record of every id, streamed (two passes: the first keeps only each id's last line number),
    in the order of those last lines — for manifests too big to hold, where :func:`read_manifest` would."""
    last: dict[str, int] = {}
    for n, rec in enumerate(iter_manifest(path)):
        last[rec["id"]] = n
    for n, rec in enumerate(iter_manifest(path)):
        if last.get(rec["id"]) == n:
            yield rec


def read_manifest(path: str | os.PathLike, strict: bool = False) -> list[dict[str, Any]]:
    """The records of a manifest, one per id: its last record, in the order ids first appear."""
    latest: dict[str, dict[str, Any]] = {}
    for rec in iter_manifest(path, strict):
        latest[rec["id"]] = rec  # a re-insert keeps the first position
    return list(latest.values())


def resolve_video(manifest_path: str | os.PathLike, rec: dict[str, Any]) -> Path:
    """Absolute path of a record's video (relative paths are relative to the manifest's folder)."""
    p = Path(rec["video"])
    return p if p.is_absolute() else Path(manifest_path).resolve().parent / p


class ManifestLockedError(RuntimeError):
    """Another process is writing this manifest."""


class ManifestWriter:
    """Append records to a manifest, one flushed line each. Use as a context manager.

    ``done_ids`` holds the ids already in the file (any status) so callers can resume; ``error_ids`` those
    whose last record is an error (what ``--retry-errors`` captions again).

    The writer holds an exclusive OS lock on ``<manifest>.lock`` (``filelock``: ``flock``, which NFS
    emulates with POSIX locks) while open, so a second writer of the same file — a SLURM requeue while
    the old job still runs — raises :class:`ManifestLockedError` naming the holder (host, pid, since when)
    instead of writing every clip twice. The OS drops the lock when its process dies, so a killed run's
    lock never blocks the resume.
    """

    def __init__(self, path: str | os.PathLike, fsync: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._lock = _acquire(self.path)
        try:
            self.done_ids: set[str] = set()
            self.error_ids: set[str] = set()
            if self.path.exists():
                self._repair_tail()
                for r in read_manifest(self.path):
                    self.done_ids.add(r["id"])
                    if r["status"] == "error":
                        self.error_ids.add(r["id"])
            self._f = open(self.path, "a", encoding="utf-8")
        except BaseException:
            self._lock.release()
            raise

    def _repair_tail(self) -> None:
        """Make sure the file ends with a newline so a partial last line stays on its own line."""
        with open(self.path, "rb+") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")

    def write(self, rec: dict[str, Any]) -> None:
        validate_record(rec, f"{self.path}: record {rec.get('id')!r}")
        self._f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.fileno())
        self.done_ids.add(rec["id"])
        (self.error_ids.add if rec["status"] == "error" else self.error_ids.discard)(rec["id"])

    def close(self) -> None:
        self._f.close()
        self.path.with_name(self.path.name + ".lock.json").unlink(missing_ok=True)
        self._lock.release()

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _acquire(path: Path):
    """The manifest's lock, taken at once, or ManifestLockedError naming who holds it."""
    import socket
    import time

    from filelock import FileLock, Timeout

    lock_path = path.with_name(path.name + ".lock")
    holder = path.with_name(path.name + ".lock.json")  # who holds it: written after taking the lock
    lock = FileLock(lock_path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        try:
            h = json.loads(holder.read_text())
            who = f"pid {h['pid']} on {h['host']} since {h['since']}"
        except (OSError, ValueError, KeyError):
            who = "another process"
        raise ManifestLockedError(f"{path} is being written by {who} (lock {lock_path}); wait for it to finish "
                                  "or stop it — two writers would caption every clip twice") from None
    holder.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
    return lock


def error_record(clip_id: str, video: str, error: BaseException | str, **extra: Any) -> dict[str, Any]:
    """A ``status: error`` record; ``error`` becomes ``"<Type>: <message>"``."""
    msg = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return {"id": clip_id, "video": video, "status": "error", "error": msg, **extra}


def window_spans(duration: float, window: float, stride: float | None = None) -> list[tuple[float, float]]:
    """The training windows ``[k * stride, k * stride + window]`` that fit in ``duration`` seconds (from the
    record's start): the spans a record's ``windows`` captions describe. A clip no longer than ``window``
    (give or take a millisecond) has none: it is one window already.
    """
    if not window > 0:
        raise ValueError(f"window {window!r} must be > 0 seconds")
    stride = window if stride is None else stride
    if not stride > 0:
        raise ValueError(f"stride {stride!r} must be > 0 seconds")
    if duration <= window + 1e-3:
        return []
    n = int((duration - window + 1e-3) // stride) + 1
    return [(round(k * stride, 3), round(k * stride + window, 3)) for k in range(n)]
