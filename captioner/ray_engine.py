"""``--engine ray``: the same two stages on Ray Data, for a cluster (the optional ``ray`` extra).

    tasks ──map(extract key-frames)──► rows with key-frame images ──map_batches(CaptionActor)──► records

Stage 1 runs as stateless Ray tasks (CPU, decoding); stage 2 as an actor pool whose actors each
build the backend once (a VLM on a GPU: set ``num_gpus`` per actor) and caption a batch of
``run.active_clips`` clips with the same :class:`~captioner.diffsw.DiffSWCaptioner` pool as the local
engine. The driver writes the records, so resume, shards and the summary are the local ones.
Connects to a running cluster when ``RAY_ADDRESS`` is set, else starts a local one.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from captioner.config import CaptionerConfig, build_backend
from captioner.diffsw import ClipTask, DiffSWCaptioner, _Job, extract_job

log = logging.getLogger(__name__)


def _task_row(t: ClipTask) -> dict[str, Any]:
    return {"id": t.id, "path": str(t.path), "video": t.video, "start": t.start,
            "end": -1.0 if t.end is None else float(t.end), "meta": json.dumps(t.meta)}


def _row_task(row: dict[str, Any]) -> ClipTask:
    end = float(row["end"])
    return ClipTask(str(row["id"]), Path(row["path"]), str(row["video"]), float(row["start"]),
                    None if end < 0 else end, json.loads(row["meta"]))


class _Extract:
    """Stage 1 (Ray tasks): key-frames of one clip, or the error that stopped it."""

    def __init__(self, cfg: CaptionerConfig):
        from captioner.embed import build_embedder

        self.cfg = cfg
        kc = cfg.keyframes
        self.embedder = build_embedder(kc.embedder, kc.clip_path, device=kc.device)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        try:
            job = extract_job(_row_task(row), self.cfg, self.embedder)
        except Exception as e:
            return {**row, "error": f"{type(e).__name__}: {e}", "info": "{}", "times": "[]",
                    "images": np.zeros((0, 1, 1, 3), np.uint8)}
        return {**row, "error": "", "info": json.dumps(job.info), "times": json.dumps(job.times),
                "images": np.stack(job.images)}


class _Caption:
    """Stage 2 (an actor): builds the backend once, captions a batch of clips as one DiffSW pool."""

    def __init__(self, cfg: CaptionerConfig):
        self.captioner = DiffSWCaptioner(cfg, build_backend(cfg.backend))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[str]]:
        items: list[_Job | tuple[ClipTask, str]] = []
        for k in range(len(batch["id"])):
            row = {key: batch[key][k] for key in batch}
            task = _row_task(row)
            if row["error"]:
                items.append((task, str(row["error"])))  # already "<Type>: <message>" from stage 1
            else:
                images = list(np.asarray(row["images"], dtype=np.uint8))
                items.append(_Job(task, json.loads(row["info"]), json.loads(row["times"]), images))
        return {"record": [json.dumps(r) for r in self.captioner.caption_jobs(items)]}


def caption_with_ray(cfg: CaptionerConfig, tasks: list[ClipTask], num_actors: int = 1,
                     num_cpus: int | None = None) -> Iterator[dict[str, Any]]:
    """Yield one record per task, captioned by Ray Data."""
    try:
        import ray
    except ImportError:
        raise ImportError("--engine ray needs Ray Data: pip install 'dense-t2v[ray]'") from None
    if not tasks:
        return
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False)
        else:  # a local cluster; its temp dir must be short (AF_UNIX socket paths) and writable
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     _temp_dir=tempfile.mkdtemp(prefix="ray-"))
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ds = ray.data.from_items([_task_row(t) for t in tasks])
    ds = ds.map(_Extract, fn_constructor_kwargs={"cfg": cfg}, concurrency=max(cfg.run.prefetch, 1))
    ds = ds.map_batches(_Caption, fn_constructor_kwargs={"cfg": cfg}, batch_size=cfg.run.active_clips,
                        concurrency=num_actors, batch_format="numpy")
    for row in ds.iter_rows():
        yield json.loads(row["record"])
