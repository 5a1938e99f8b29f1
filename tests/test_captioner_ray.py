"""``--engine ray``: the same records as the local engine, from 2 captioning actors on a local 2-CPU Ray cluster."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from captioner.config import load_captioner_config
from captioner.run import run_captioner, tasks_from_manifest
from clipio.config import ConfigError
from clipio.manifest import ManifestWriter, iter_manifest, read_manifest
from synthworld.dataset import write_synth_dataset

# Ray Data warns when a pool gets fewer inputs than actors (the 1-clip retry run, the 3-clip CLI run)
pytestmark = pytest.mark.filterwarnings("ignore:The minimum number of concurrent actors")
ORACLE = Path(__file__).resolve().parents[1] / "captioner" / "presets" / "oracle.yaml"
# 2 captioning actors and 2 key-frame workers at 0.5 CPU each fill the 2 CPUs; chunks of 2 clips, batches of 2,
# so the 8 clips reach the captioning actors as 4 batches (all 8 in flight: the window is 2 * (2*2 + 2*2) = 16)
TWO_ACTORS = ["run.active_clips=2", "run.ray.num_actors=2", "run.ray.num_cpus_per_actor=0.5",
              "run.ray.extract_workers=2", "run.ray.extract_cpus=0.5", "run.ray.chunk_size=2"]


def test_ray_engine_writes_the_same_records_as_the_local_engine_from_two_actors(tmp_path, monkeypatch):
    import ray

    write_synth_dataset(tmp_path / "data", 8, seed=9, size=64, fps=8.0, progress=False)
    manifest = tmp_path / "data" / "manifest.jsonl"
    (tmp_path / "data" / "clips" / "clip-000002.mp4").write_bytes(b"\x00not a video")  # one corrupt clip
    cfg = load_captioner_config(ORACLE, TWO_ACTORS)
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    run_captioner(cfg, tasks_from_manifest(manifest, local), local, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=tempfile.mkdtemp(prefix="ray-"))
    try:
        # the tasks as a one-shot generator, counted as the engine pulls them, and each write checked against it
        pulled, ahead = [0], []

        def tasks():
            for t in tasks_from_manifest(manifest, remote):
                pulled[0] += 1
                yield t

        write = ManifestWriter.write

        def counted_write(w, rec):
            ahead.append(pulled[0] - len(ahead))  # tasks read but not yet written
            write(w, rec)

        monkeypatch.setattr(ManifestWriter, "write", counted_write)
        s = run_captioner(cfg, tasks(), remote, progress=False, engine="ray")
        monkeypatch.undo()
        assert ray.cluster_resources().get("CPU") == 2
        # --retry-errors through the ray engine: only the corrupt clip goes again (and fails again)
        r = run_captioner(cfg, tasks_from_manifest(manifest, remote), remote, progress=False, engine="ray",
                          retry_errors=True)
    finally:
        ray.shutdown()
    assert (s.total, s.ok, s.error, s.skipped) == (8, 7, 1, 0)
    # the input was read once, and the driver never ran more than the window + one chunk ahead of its writes
    assert pulled[0] == 8 and max(ahead) <= 16 + 2, ahead
    assert (r.total, r.ok, r.error, r.skipped, r.retried) == (8, 0, 1, 7, 1)
    # every clip exactly once from the first run, plus the one retried line
    lines = [rec["id"] for rec in iter_manifest(remote)]
    assert len(lines) == 9 and len(set(lines)) == 8 and lines.count("clip-000002") == 2
    a = {rec["id"]: rec for rec in read_manifest(local)}
    b = {rec["id"]: rec for rec in read_manifest(remote)}
    assert a.keys() == b.keys() and len(b) == 8
    for cid, rec in a.items():
        assert b[cid]["status"] == rec["status"]
        if rec["status"] == "ok":
            assert b[cid]["captions"] == rec["captions"] and b[cid]["keyframes"] == rec["keyframes"]
        else:
            assert "clip-000002.mp4" in b[cid]["error"]
    # two actors captioned, in processes other than the driver, and each record says which
    first_run = list(iter_manifest(remote))[:8]
    workers = {(rec["meta"]["ray"]["actor"], rec["meta"]["ray"]["pid"]) for rec in first_run}
    assert len({actor for actor, _ in workers}) == 2 and len({pid for _, pid in workers}) == 2
    assert os.getpid() not in {pid for _, pid in workers}
    assert all("ray" not in rec["meta"] for rec in a.values())  # the local engine's records are as before
    # resume: nothing left to do, so no cluster is started
    s2 = run_captioner(cfg, tasks_from_manifest(manifest, remote), remote, progress=False, engine="ray")
    assert (s2.ok, s2.error, s2.skipped) == (0, 0, 8) and not ray.is_initialized()
    assert len(list(iter_manifest(remote))) == 9


@pytest.mark.parametrize("override, message", [
    ("run.ray.num_actors=0", "run.ray.num_actors: must be a whole number >= 1, got 0"),
    ("run.ray.num_gpus_per_actor=1.5", "run.ray.num_gpus_per_actor: must be 0, a fraction below 1"),
    ("run.ray.num_gpus_per_actor=-1", "run.ray.num_gpus_per_actor"),
    ("run.ray.extract_cpus=0", "run.ray.extract_cpus: must be > 0, got 0"),
    ("run.ray.extract_gpus=2.5", "run.ray.extract_gpus: must be 0, a fraction below 1"),
    ("run.ray.max_in_flight=0", "run.ray.max_in_flight: must be a whole number >= 1 or null, got 0"),
    ("run.ray.chunk_size=2.5", "run.ray.chunk_size: expected int, got 2.5"),
    ("run.ray.num_actor=2", "unknown key(s) run.ray.num_actor"),
])
def test_ray_settings_are_checked_when_loaded(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_captioner_config(ORACLE, [override])


def test_ray_settings_that_cannot_work_fail_before_a_cluster_starts():
    import ray

    from captioner.ray_engine import caption_with_ray

    cfg = load_captioner_config(ORACLE, ["backend.kind=hf", "backend.path=/models/vlm", "backend.device=cuda"])
    with pytest.raises(ValueError, match="run.ray.num_gpus_per_actor=1"):
        next(caption_with_ray(cfg, []))
    with pytest.raises(ValueError, match="run.ray.max_in_flight=3 is below run.active_clips=4"):
        next(caption_with_ray(load_captioner_config(ORACLE, ["run.active_clips=4", "run.ray.max_in_flight=3"]), []))
    with pytest.raises(ValueError, match="set run.ray.extract_gpus"):
        next(caption_with_ray(load_captioner_config(ORACLE, ["keyframes.device=cuda"]), []))
    cfg = load_captioner_config(ORACLE)
    cfg.run.ray.num_actors = 0  # set in code, after loading
    with pytest.raises(ConfigError, match="run.ray.num_actors"):
        next(caption_with_ray(cfg, []))
    assert not ray.is_initialized()


def test_a_pool_the_cluster_cannot_place_fails_after_start_timeout_naming_what_it_asked(tmp_path):
    import ray

    write_synth_dataset(tmp_path / "data", 2, seed=9, size=64, fps=8.0, progress=False)
    out = tmp_path / "out.jsonl"
    cfg = load_captioner_config(ORACLE, ["run.ray.num_gpus_per_actor=1", "run.ray.start_timeout=2"])  # no GPU here
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=tempfile.mkdtemp(prefix="ray-"))
    try:
        with pytest.raises(RuntimeError, match=r"1 captioning actor\(s\) \(1.0 CPU, 1.0 GPU each\).*start_timeout=2 s"):
            run_captioner(cfg, tasks_from_manifest(tmp_path / "data" / "manifest.jsonl", out), out, progress=False,
                          engine="ray")
    finally:
        ray.shutdown()
    assert list(iter_manifest(out)) == []  # nothing written, so a rerun with a GPU captions every clip


def test_the_feeder_reads_the_input_lazily_and_stays_within_its_window():
    import ray
    from ray.util.queue import Empty

    from captioner.diffsw import ClipTask
    from captioner.ray_engine import _Feeder

    pulled = [0]

    def tasks():
        for k in range(9):
            pulled[0] += 1
            yield ClipTask(f"c{k}", Path(f"c{k}.mp4"), f"c{k}.mp4")

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=tempfile.mkdtemp(prefix="ray-"))
    try:
        feeder = _Feeder(tasks(), chunk_size=2, window=4)
        chunks = [feeder.queue.get(timeout=30) for _ in range(2)]
        assert [[r["id"] for r in c] for c in chunks] == [["c0", "c1"], ["c2", "c3"]]
        with pytest.raises(Empty):  # 4 clips in flight: the window is full, the third chunk waits
            feeder.queue.get(timeout=1)
        assert pulled[0] == 6 and sorted(feeder.in_flight) == ["c0", "c1", "c2", "c3"]
        assert feeder.came_back("c0") and feeder.came_back("c1") and not feeder.came_back("c1")
        assert [r["id"] for r in feeder.queue.get(timeout=30)] == ["c4", "c5"]  # room for one chunk more
        for cid in ("c2", "c3", "c4", "c5"):
            feeder.came_back(cid)
        rest = [feeder.queue.get(timeout=30), feeder.queue.get(timeout=30), feeder.queue.get(timeout=30)]
        assert [[r["id"] for r in c] for c in rest[:2]] == [["c6", "c7"], ["c8"]] and rest[2] is None  # the end
        feeder.join()
        feeder.stop()
    finally:
        ray.shutdown()
    assert pulled[0] == 9


def test_captioner_run_engine_ray_from_the_command_line_starts_a_cluster_that_fits_its_pools(tmp_path, capsys):
    import ray

    from captioner.cli import main

    write_synth_dataset(tmp_path / "data", 3, seed=4, size=48, fps=8.0, progress=False)
    out = tmp_path / "out.jsonl"
    # the default pools (1 actor + 2 key-frame workers, 1 CPU each) on a 2-core machine: slots are made for them
    argv = ["run", "--manifest", str(tmp_path / "data" / "manifest.jsonl"), "--out", str(out), "--config", "oracle",
            "--engine", "ray", "--quiet", "run.ray.start_timeout=120"]
    assert main(argv) == 0
    assert "3 ok, 0 error, 0 skipped" in capsys.readouterr().out
    assert not ray.is_initialized()  # the engine shut down the cluster it started
    assert sorted(rec["id"] for rec in iter_manifest(out)) == ["clip-000000", "clip-000001", "clip-000002"]


def test_workers_get_relative_model_and_prompt_folders_as_absolute_paths(tmp_path, monkeypatch):
    from captioner.ray_engine import _absolute_paths

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpts" / "vlm").mkdir(parents=True)
    (tmp_path / "my-prompts").mkdir()
    cfg = load_captioner_config(ORACLE, ["backend.path=ckpts/vlm", "run.prompts=my-prompts",
                                         "keyframes.clip_path=org/clip-on-the-hub"])
    w = _absolute_paths(cfg)
    assert (w.backend.path, w.run.prompts) == (str(tmp_path / "ckpts" / "vlm"), str(tmp_path / "my-prompts"))
    assert w.keyframes.clip_path == "org/clip-on-the-hub"  # not a folder here: left as it is
    assert cfg.backend.path == "ckpts/vlm"  # the driver's config is not changed
