"""``--engine ray``: the same two stages on Ray Data, for a cluster (the optional ``ray`` extra).

    driver: tasks ─feeder thread, chunks of run.ray.chunk_size─► a queue actor (2 chunks)
    Ray Data: one read task drains the queue ─flat_map(_Extract × extract_workers)─► a row per clip with its
              key-frame images ─map_batches(_Caption × num_actors, num_gpus/num_cpus each)─► a row per batch
              of records ─iter_rows─► driver: ManifestWriter

The inputs are streamed: the feeder walks the task iterator once, one chunk at a time, and keeps at most a
window of clips in flight (``run.ray.max_in_flight``; by default two rounds of work for every stage) ahead
of the records that came back, so captioning starts with the first chunk, the driver never lists the tasks
and the key-frame images in the pipeline are bounded. Stage 1 is an actor pool (it builds the key-frame
embedder once: a CLIP model on CPU); stage 2 an actor pool whose actors each build the backend once (a VLM
on a GPU: ``run.ray.num_gpus_per_actor``) and caption ``run.active_clips`` clips at a time with the same
:class:`~captioner.diffsw.DiffSWCaptioner` pool as the local engine. Key-frame images stay on the workers;
the driver receives the records (JSON) and writes them, so resume, shards and the summary are the local
engine's. Each record says which actor wrote it (``meta.ray``: actor id, host, pid, GPU ids). A clip that
was fed but never comes back (a worker lost) becomes an error record, which ``--retry-errors`` captions
again. Connects to a running cluster when ``RAY_ADDRESS`` is set, else starts a local one (docs/cluster.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import math
import os
import socket
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from captioner.config import CaptionerConfig, build_backend
from captioner.diffsw import ClipTask, DiffSWCaptioner, _Job, extract_job
from clipio.manifest import error_record

log = logging.getLogger(__name__)
_QUEUED_CHUNKS = 2  # chunks waiting in the queue actor for the read task
_ROUNDS_AHEAD = 2  # the feeder keeps this many rounds of work in flight for every stage


def _task_row(t: ClipTask) -> dict[str, Any]:
    # absolute: a worker's working directory is not the driver's (on a cluster: the same shared mount everywhere)
    return {"id": t.id, "path": os.path.abspath(t.path), "video": t.video, "start": t.start,
            "end": -1.0 if t.end is None else float(t.end), "meta": json.dumps(t.meta)}


def _row_task(row: dict[str, Any]) -> ClipTask:
    end = float(row["end"])
    return ClipTask(str(row["id"]), Path(row["path"]), str(row["video"]), float(row["start"]),
                    None if end < 0 else end, json.loads(row["meta"]))


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("--engine ray needs Ray Data: pip install 'dense-t2v[ray]'") from None
    return ray


def _task_feed(queue):
    """A Ray Data datasource with one read task: a row per chunk the driver puts into ``queue``, until ``None``."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class TaskFeed(Datasource):
        def estimate_inmemory_data_size(self) -> None:
            return None  # unknown (streamed): no block splitting

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, **_) -> list[ReadTask]:
            def read() -> Iterator[Any]:
                import pyarrow as pa

                while (chunk := queue.get()) is not None:
                    yield pa.table({"chunk": [json.dumps(chunk)]})  # one row: a chunk is one key-frame worker call

            meta = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
            return [ReadTask(read, meta)]

        def get_name(self) -> str:
            return "CaptionTasks"

    return TaskFeed()


class _Feeder:
    """Walks the tasks once on a thread, one chunk at a time into a bounded queue, never more than ``window``
    clips ahead of the records that came back (flow control end to end: Ray Data's own backpressure counts
    bytes, and task rows are tiny); keeps the tasks in flight."""

    def __init__(self, tasks: Iterable[ClipTask], chunk_size: int, window: int):
        from ray.util.queue import Queue

        self.queue = Queue(maxsize=_QUEUED_CHUNKS, actor_options={"num_cpus": 0})
        self.in_flight: dict[str, ClipTask] = {}  # fed, no record back yet: at most window + chunk_size
        self.error: BaseException | None = None
        self._tasks, self._chunk_size, self._window = iter(tasks), chunk_size, window
        self._room = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ray-feeder", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        from ray.util.queue import Full

        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=0.5)
                return True
            except Full:  # the pipeline is busy: wait, but notice a stop
                continue
        return False

    def _run(self) -> None:
        try:
            while chunk := list(itertools.islice(self._tasks, self._chunk_size)):
                with self._room:  # wait for room in the window (a chunk always goes when nothing is in flight)
                    while self.in_flight and len(self.in_flight) + len(chunk) > self._window:
                        if self._stop.is_set():
                            return
                        self._room.wait(timeout=0.5)
                    for t in chunk:
                        self.in_flight[t.id] = t  # before it can come back
                if not self._put([_task_row(t) for t in chunk]):
                    return
        except BaseException as e:  # the input failed: end the stream, re-raised by join()
            self.error = e
        self._put(None)

    def came_back(self, clip_id: str) -> bool:
        """A record for ``clip_id`` arrived: free its place; False when it was not in flight."""
        with self._room:
            found = self.in_flight.pop(clip_id, None) is not None
            self._room.notify()
        return found

    def join(self) -> None:
        self._thread.join()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.queue.shutdown()


class _Extract:
    """Stage 1 (an actor): for each clip of a chunk, its key-frames or the error that stopped it (one row each)."""

    def __init__(self, cfg: CaptionerConfig):
        from captioner.embed import build_embedder

        self.cfg = cfg
        kc = cfg.keyframes
        self.embedder = build_embedder(kc.embedder, kc.clip_path, device=kc.device)

    def __call__(self, chunk: dict[str, Any]) -> Iterator[dict[str, Any]]:
        for row in json.loads(chunk["chunk"]):  # a generator: each clip's images leave as soon as they are read
            try:
                job = extract_job(_row_task(row), self.cfg, self.embedder)
            except Exception as e:
                yield {**row, "error": f"{type(e).__name__}: {e}", "info": "{}", "times": "[]",
                       "images": np.zeros((0, 1, 1, 3), np.uint8)}
                continue
            yield {**row, "error": "", "info": json.dumps(job.info), "times": json.dumps(job.times),
                   "images": np.stack(job.images)}  # (K, H, W, 3) uint8


class _Caption:
    """Stage 2 (an actor): builds the backend once, captions a batch of clips as one DiffSW pool."""

    def __init__(self, cfg: CaptionerConfig):
        import ray

        self.captioner = DiffSWCaptioner(cfg, build_backend(cfg.backend))
        self.worker = {"actor": ray.get_runtime_context().get_actor_id(), "host": socket.gethostname(),
                       "pid": os.getpid(), "gpus": [str(g) for g in ray.get_gpu_ids()]}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[str]]:  # rows of _Extract → one row
        items: list[_Job | tuple[ClipTask, str]] = []
        for k in range(len(batch["id"])):
            row = {key: batch[key][k] for key in batch}
            task = _row_task(row)
            if row["error"]:
                items.append((task, str(row["error"])))  # already "<Type>: <message>" from stage 1
            else:
                images = list(np.asarray(row["images"], dtype=np.uint8))
                items.append(_Job(task, json.loads(row["info"]), json.loads(row["times"]), images))
        records = [{**r, "meta": {**r.get("meta", {}), "ray": self.worker}} for r in self.captioner.caption_jobs(items)]
        return {"records": [json.dumps(records)]}  # one row (one block) per batch: one fetch for the driver


def _check(cfg: CaptionerConfig) -> None:
    """Settings that cannot work on Ray workers: say which and what to set."""
    rs = cfg.run.ray
    rs.validate()  # values set after loading (cfg.run.ray.num_actors = 0) are checked too
    if cfg.backend.kind == "hf" and cfg.backend.device.startswith("cuda") and not rs.num_gpus_per_actor:
        raise ValueError(f"backend.device={cfg.backend.device!r} but run.ray.num_gpus_per_actor=0: Ray gives the "
                         "captioning actors no GPU; set run.ray.num_gpus_per_actor=1 (each actor sees its GPU as cuda)")
    if rs.max_in_flight is not None and rs.max_in_flight < cfg.run.active_clips:  # no batch could ever fill
        raise ValueError(f"run.ray.max_in_flight={rs.max_in_flight} is below run.active_clips={cfg.run.active_clips}: "
                         "a captioning batch would wait for clips the feeder holds back; raise it or leave it null")
    if cfg.keyframes.device.startswith("cuda") and not rs.extract_gpus:
        raise ValueError(f"keyframes.device={cfg.keyframes.device!r} but run.ray.extract_gpus=0: Ray gives the key-frame "
                         "workers no GPU; set run.ray.extract_gpus (0.25: four workers share a GPU) or keyframes.device=cpu")


def _absolute_paths(cfg: CaptionerConfig) -> CaptionerConfig:
    """The config the workers get: relative model and prompt folders that exist here made absolute (a worker's
    working directory need not be the driver's); anything else (a hub id) as it is."""
    def fix(p: str | None) -> str | None:
        return os.path.abspath(p) if p and not os.path.isabs(p) and os.path.exists(p) else p

    return dataclasses.replace(
        cfg, backend=dataclasses.replace(cfg.backend, path=fix(cfg.backend.path)),
        keyframes=dataclasses.replace(cfg.keyframes, clip_path=fix(cfg.keyframes.clip_path)),
        run=dataclasses.replace(cfg.run, prompts=fix(cfg.run.prompts)))


def _window(cfg: CaptionerConfig) -> int:
    """Clips the feeder keeps in flight: ``run.ray.max_in_flight``, or two rounds of work for every stage."""
    rs = cfg.run.ray
    if rs.max_in_flight is not None:
        return rs.max_in_flight
    return _ROUNDS_AHEAD * (rs.num_actors * cfg.run.active_clips + rs.extract_workers * rs.chunk_size)


def _wanted(cfg: CaptionerConfig) -> dict[str, float]:
    """The CPUs and GPUs the two actor pools reserve."""
    rs = cfg.run.ray
    return {"CPU": rs.num_actors * rs.num_cpus_per_actor + rs.extract_workers * rs.extract_cpus,
            "GPU": rs.num_actors * rs.num_gpus_per_actor + rs.extract_workers * rs.extract_gpus}


def _connect(ray, cfg: CaptionerConfig) -> bool:
    """Join the cluster ``RAY_ADDRESS`` names, or start a local one; True when this call started Ray."""
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
    else:  # a local cluster with CPU slots for both pools (oversubscribing a small machine, not waiting forever);
        # its temp dir must be short (AF_UNIX socket paths) and writable
        cpus = max(os.cpu_count() or 1, math.ceil(_wanted(cfg)["CPU"]))
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                 _temp_dir=tempfile.mkdtemp(prefix="ray-"))
    return True


def _cpus_gpus(ray) -> dict[str, float]:
    have = ray.cluster_resources()
    return {k: have.get(k, 0.0) for k in ("CPU", "GPU")}


def _warn_if_too_big(ray, cfg: CaptionerConfig) -> None:
    rs = cfg.run.ray
    want = _wanted(cfg)
    have = _cpus_gpus(ray)
    short = {k: (v, have.get(k, 0.0)) for k, v in want.items() if v > have.get(k, 0.0) + 1e-9}
    if short:
        log.warning("run.ray asks for %s but the cluster has %s now; waiting up to run.ray.start_timeout=%g s for "
                    "nodes to join (an autoscaler) before failing", {k: w for k, (w, _) in short.items()},
                    {k: h for k, (_, h) in short.items()}, rs.start_timeout)


@contextlib.contextmanager
def _data_context(ray, values: dict[str, Any]) -> Iterator[None]:
    """Ray Data's current context with ``values`` set, restored after."""
    ctx = ray.data.DataContext.get_current()
    old = {k: getattr(ctx, k) for k in values}
    for k, v in values.items():
        setattr(ctx, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(ctx, k, v)


def caption_with_ray(cfg: CaptionerConfig, tasks: Iterable[ClipTask]) -> Iterator[dict[str, Any]]:
    """Yield one record per task (ok or error, as batches finish), captioned by Ray Data; ``tasks`` is
    read once, lazily, one ``run.ray.chunk_size`` chunk at a time."""
    # 1. check the settings; nothing to caption: no cluster
    _check(cfg)
    tasks = iter(tasks)
    first = next(tasks, None)
    if first is None:
        return
    ray = _import_ray()
    from ray.data import ActorPoolStrategy

    rs = cfg.run.ray
    started = _connect(ray, cfg)
    _warn_if_too_big(ray, cfg)
    settings = {  # for this dataset only (it keeps a copy of the context it was made in)
        "enable_progress_bars": False,  # the driver's bar counts clips
        # every actor up before the data flows: work spreads over all of them, and a pool the cluster cannot
        # place fails after start_timeout instead of waiting forever
        "wait_for_min_actors_s": max(1, math.ceil(rs.start_timeout)),
        # no merging of blocks: Ray Data merges small blocks up to this size (128 MiB), which would hold the
        # streamed chunks (a few KB each) in the read until thousands piled up. So a block is one chunk
        # out of the read and one clip after it; the work units stay a chunk (key-frames), a batch (captions)
        "target_max_block_size": 1,
    }
    window = _window(cfg)
    worker_cfg = _absolute_paths(cfg)
    feeder = _Feeder(itertools.chain([first], tasks), rs.chunk_size, window)
    try:
        # 2. the pipeline: queue → key-frames → captions
        with _data_context(ray, settings):
            ds = ray.data.read_datasource(_task_feed(feeder.queue), num_cpus=0)
        ds = ds.flat_map(_Extract, fn_constructor_kwargs={"cfg": worker_cfg},
                         compute=ActorPoolStrategy(size=rs.extract_workers), num_cpus=rs.extract_cpus,
                         num_gpus=rs.extract_gpus)
        ds = ds.map_batches(_Caption, fn_constructor_kwargs={"cfg": worker_cfg}, batch_size=cfg.run.active_clips,
                            compute=ActorPoolStrategy(size=rs.num_actors), num_cpus=rs.num_cpus_per_actor,
                            num_gpus=rs.num_gpus_per_actor, batch_format="numpy")
        # 3. the records, a batch at a time
        for row in ds.iter_rows():
            for rec in json.loads(row["records"]):
                if not feeder.came_back(rec["id"]):  # a re-executed Ray task: the first record stands
                    log.warning("%s: a second record came back from Ray; keeping the first", rec["id"])
                    continue
                yield rec
        feeder.join()
        # 4. fed but never captioned (a worker lost with its blocks): error records, for --retry-errors
        for task in list(feeder.in_flight.values()):
            yield error_record(task.id, task.video, "no record came back from the Ray workers (a worker or node "
                               "was lost?); run again with --retry-errors", meta=task.meta)
    except ray.exceptions.GetTimeoutError as e:
        raise RuntimeError(f"Ray could not start {rs.num_actors} captioning actor(s) ({rs.num_cpus_per_actor} CPU, "
                           f"{rs.num_gpus_per_actor} GPU each) and {rs.extract_workers} key-frame worker(s) "
                           f"({rs.extract_cpus} CPU, {rs.extract_gpus} GPU each) within run.ray.start_timeout={rs.start_timeout:g} s; the "
                           f"cluster has {_cpus_gpus(ray)}: lower run.ray.* or add nodes") from e
    finally:
        feeder.stop()
        if started:
            ray.shutdown()
