"""``--engine ray``: the same records as the local engine, on a local Ray cluster with 2 CPUs."""

from __future__ import annotations

from pathlib import Path

from captioner.config import load_captioner_config
from captioner.run import run_captioner, tasks_from_manifest
from clipio.manifest import read_manifest
from synthworld.dataset import write_synth_dataset

ORACLE = Path(__file__).resolve().parents[1] / "captioner" / "presets" / "oracle.yaml"


def test_ray_engine_writes_the_same_records_as_the_local_engine(tmp_path):
    import ray

    write_synth_dataset(tmp_path / "data", 6, seed=9, size=64, fps=8.0, progress=False)
    manifest = tmp_path / "data" / "manifest.jsonl"
    (tmp_path / "data" / "clips" / "clip-000002.mp4").write_bytes(b"\x00not a video")  # one corrupt clip
    cfg = load_captioner_config(ORACLE, ["run.active_clips=4"])
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    run_captioner(cfg, tasks_from_manifest(manifest, local), local, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        s = run_captioner(cfg, tasks_from_manifest(manifest, remote), remote, progress=False, engine="ray")
        assert ray.cluster_resources().get("CPU") == 2
    finally:
        ray.shutdown()
    assert (s.ok, s.error) == (5, 1)
    a = {r["id"]: r for r in read_manifest(local)}
    b = {r["id"]: r for r in read_manifest(remote)}
    assert a.keys() == b.keys() and len(b) == 6
    for cid, r in a.items():
        assert b[cid]["status"] == r["status"]
        if r["status"] == "ok":
            assert b[cid]["captions"] == r["captions"] and b[cid]["keyframes"] == r["keyframes"]
        else:
            assert "clip-000002.mp4" in b[cid]["error"]
    # resume: a second ray run has nothing left to do
    s2 = run_captioner(cfg, tasks_from_manifest(manifest, remote), remote, progress=False, engine="ray")
    assert (s2.ok, s2.error, s2.skipped) == (0, 0, 6)
