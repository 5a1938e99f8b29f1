"""``captioner run``: inputs → clip tasks → shard → skip what is done → caption → append records.

Inputs are a folder of videos (every file with a video extension, recursively), a text file
listing video paths (one per line; anything that does not decode becomes an error record), or a
manifest whose ``ok`` records name clips (``video``, ``start``, ``end``; their ``meta`` is kept).
Clip ids are stable (a video's path relative to the input folder, or the input record's id), so
``--num-shards/--shard-id`` split the same list the same way on every SLURM array task, and a
rerun with the same output resumes: ids already in the output are skipped — except, with
``--retry-errors``, those whose last record is an error, which are captioned again (the new record is
appended; readers take the last record of an id). A second run on the same output while the first
still writes it refuses to start (:class:`clipio.manifest.ManifestLockedError`).
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from captioner.config import CaptionerConfig, build_backend
from captioner.diffsw import ClipTask, DiffSWCaptioner
from clipio.manifest import ManifestWriter, iter_latest, resolve_video

log = logging.getLogger(__name__)
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif", ".flv", ".mpg", ".mpeg", ".ts", ".wmv"}


@dataclass
class RunSummary:
    out: str
    total: int  # tasks in this shard
    ok: int
    error: int
    skipped: int  # already in the output (resume)
    seconds: float
    retried: int = 0  # error records captioned again (--retry-errors)
    truncated: int = 0  # ok records with an answer cut at the token limit (their meta.truncated)

    @property
    def clips_per_s(self) -> float:
        return (self.ok + self.error) / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        retried = f" ({self.retried} of them retried errors)" if self.retried else ""
        cut = f" ({self.truncated} with answers cut at max_new_tokens: meta.truncated)" if self.truncated else ""
        return (f"{self.ok} ok{cut}, {self.error} error{retried}, {self.skipped} skipped (already in {self.out}) of "
                f"{self.total} clips in {self.seconds:.1f} s ({self.clips_per_s:.2f} clips/s)")


def _video_field(path: Path, out: Path) -> str:
    """A video path as a record stores it: relative to the output manifest's folder when possible."""
    try:
        return os.path.relpath(path.resolve(), out.resolve().parent)
    except ValueError:  # another drive (Windows)
        return str(path.resolve())


def tasks_from_videos(source: str | Path, out: str | Path) -> list[ClipTask]:
    """A folder (video files, recursively) or a text file listing paths → one task per video."""
    source, out = Path(source), Path(out)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if not files:
            raise ValueError(f"--videos {source}: no video files ({', '.join(sorted(VIDEO_EXTENSIONS))}) in it")
        ids = [p.relative_to(source).with_suffix("").as_posix() for p in files]
    elif source.is_file():
        lines = [ln.strip() for ln in source.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        files = [Path(ln) if Path(ln).is_absolute() else source.parent / ln for ln in lines]
        ids = [Path(ln).with_suffix("").as_posix().removeprefix("./").lstrip("/") for ln in lines]
    else:
        raise ValueError(f"--videos {source}: no such folder or list file")
    if len(set(ids)) != len(ids):
        raise ValueError(f"--videos {source}: two inputs map to the same clip id; give unique paths")
    return [ClipTask(i, p, _video_field(p, out)) for i, p in zip(ids, files)]


def iter_tasks_from_manifest(manifest: str | Path, out: str | Path) -> Iterator[ClipTask]:
    """The ``ok`` records of a manifest (the last record of each id) → tasks for their spans (ids and meta
    kept), read as they are used: a corpus manifest is never held in memory."""
    for rec in iter_latest(manifest):
        if rec["status"] != "ok":
            continue
        p = resolve_video(manifest, rec)
        meta = {k: v for k, v in rec.get("meta", {}).items() if k not in ("captioner", "prompt_version")}
        yield ClipTask(rec["id"], p, _video_field(p, Path(out)), float(rec.get("start") or 0.0), rec.get("end"), meta)


def tasks_from_manifest(manifest: str | Path, out: str | Path) -> list[ClipTask]:
    """:func:`iter_tasks_from_manifest` as a list."""
    return list(iter_tasks_from_manifest(manifest, out))


def shard(tasks: Iterable[ClipTask], num_shards: int, shard_id: int) -> Iterable[ClipTask]:
    """Every ``num_shards``-th task from ``shard_id`` (stable given the same input); a list stays a list, an
    iterator stays lazy."""
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise ValueError(f"--shard-id {shard_id} must be in [0, --num-shards {num_shards})")
    if isinstance(tasks, list):
        return tasks[shard_id::num_shards]
    return itertools.islice(tasks, shard_id, None, num_shards)


class _Pending:
    """The tasks still to caption, filtered against the output as they are read (once, lazily): ids already
    there are skipped, except — with ``retry_errors`` — those whose last record is an error. Counts as it goes."""

    def __init__(self, tasks: Iterable[ClipTask], writer: ManifestWriter, retry_errors: bool):
        self.tasks, self.writer, self.retry_errors = tasks, writer, retry_errors
        self.total = self.skipped = self.retried = 0
        self.exhausted = False

    def __iter__(self) -> Iterator[ClipTask]:
        w = self.writer
        for t in self.tasks:
            self.total += 1
            if self.retry_errors and t.id in w.error_ids:
                self.retried += 1
                yield t
            elif t.id in w.done_ids:
                self.skipped += 1
            else:
                yield t
        self.exhausted = True
        if self.skipped or self.retried:
            log.info("resuming: %d of %d clips already in %s%s", self.skipped, self.total, w.path,
                     f"; retrying {self.retried} whose last record is an error" if self.retried else "")

    @property
    def todo(self) -> int:
        return self.total - self.skipped


def run_captioner(cfg: CaptionerConfig, tasks: Iterable[ClipTask], out: str | Path, backend=None,
                  progress: bool = True, engine: str = "local", retry_errors: bool = False) -> RunSummary:
    """Caption ``tasks`` into the manifest ``out`` (appending; ids already there are skipped, but with
    ``retry_errors`` those whose last record is an error are captioned again). The ray engine reads
    ``tasks`` lazily (streamed to the cluster); the local one lists them first."""
    out = Path(out)
    t0 = time.time()
    ok = err = cut = 0
    with ManifestWriter(out) as w:
        pending = _Pending(tasks, w, retry_errors)
        if engine == "ray":
            from captioner.ray_engine import caption_with_ray

            records = caption_with_ray(cfg, pending)
        elif engine == "local":
            records = DiffSWCaptioner(cfg, backend or build_backend(cfg.backend)).caption(list(pending))
        else:
            raise ValueError(f"--engine {engine!r}: use 'local' or 'ray'")
        bar = tqdm(total=pending.todo if pending.exhausted else None, desc=f"captioning ({cfg.run.mode})",
                   unit="clip", disable=not progress)
        for rec in records:
            w.write(rec)
            if rec["status"] == "ok":
                ok += 1
                if (rec.get("meta") or {}).get("truncated"):
                    cut += 1
                    log.warning("%s: answers cut at the backend's token limit (backend.max_new_tokens), kept and "
                                "flagged in meta.truncated: %s", rec["id"], ", ".join(rec["meta"]["truncated"]))
            else:
                err += 1
                log.warning("%s: %s", rec["id"], rec["error"])
            if bar.total is None and pending.exhausted:  # streamed: the total is known once the input is read
                bar.total = pending.todo
            bar.update(1)
            bar.set_postfix(ok=ok, error=err)
        bar.close()
    summary = RunSummary(str(out), pending.total, ok, err, pending.skipped, round(time.time() - t0, 2),
                         pending.retried, cut)
    log.info("summary: %s", asdict(summary))
    return summary
