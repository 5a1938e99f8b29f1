"""Manifest store and the ``t2v synth`` / ``captioner probe`` command lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clipio.manifest import ManifestError, ManifestWriter, error_record, read_manifest, resolve_video
from clipio.video import open_video
from synthworld import dataset as synthetic
from synthworld.spec import SceneSpec

BIN = Path(sys.executable).parent


def test_manifest_writer_appends_and_resumes(tmp_path):
    path = tmp_path / "m.jsonl"
    with ManifestWriter(path) as w:
        w.write({"id": "a", "video": "a.mp4", "status": "ok", "captions": {"short": "x"}})
        w.write(error_record("b", "b.mp4", OSError("disk on fire")))
    with open(path, "a") as f:
        f.write('{"id": "c", "video": "c.mp')  # what a killed writer leaves behind
    with ManifestWriter(path) as w:
        assert w.done_ids == {"a", "b"}
        w.write({"id": "c", "video": "c.mp4", "status": "ok", "captions": {}})
    recs = read_manifest(path)
    assert [r["id"] for r in recs] == ["a", "b", "c"]
    assert recs[1]["error"] == "OSError: disk on fire"
    with pytest.raises(ManifestError, match=r"m.jsonl:3"):
        read_manifest(path, strict=True)


@pytest.mark.parametrize(
    "rec, message",
    [({"id": "a", "status": "ok"}, "missing key"), ({"id": "a", "video": "v", "status": "done"}, "status 'done'"),
     ({"id": "a", "video": "v", "status": "error"}, "needs a non-empty 'error'")],
)
def test_manifest_rejects_bad_records(tmp_path, rec, message):
    with ManifestWriter(tmp_path / "m.jsonl") as w, pytest.raises(ManifestError, match=message):
        w.write(rec)


def test_t2v_synth_cli_writes_clips_and_manifest(tmp_path):
    out = tmp_path / "ds"
    cmd = [str(BIN / "t2v"), "synth", "--out", str(out), "--num-clips", "6", "--seed", "7", "--size", "48",
           "--fps", "6", "--seconds", "3"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "wrote 6 clips" in r.stdout and "contact sheet" in r.stdout
    recs = read_manifest(out / "manifest.jsonl", strict=True)
    assert [r["id"] for r in recs] == [f"clip-{i:06d}" for i in range(6)]
    for rec in recs:
        assert rec["status"] == "ok" and rec["error"] is None
        assert rec["video"] == f"clips/{rec['id']}.mp4"
        assert set(rec["captions"]) == {"short", "dense", "varied"}
        assert rec["keyframes"][0]["t"] == 0.0
        assert [k["t"] for k in rec["keyframes"]] == sorted(k["t"] for k in rec["keyframes"])
        spec = SceneSpec.from_dict(rec["meta"]["scene"])  # the ground truth is a valid spec
        assert spec.duration == 3.0
        with open_video(resolve_video(out / "manifest.jsonl", rec)) as v:
            assert (v.info.num_frames, v.info.width, v.info.fps) == (18, 48, 6.0)
    assert (out / "contact_sheet.png").stat().st_size > 1000
    # same command again: resumes, nothing rewritten
    r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0 and "wrote 0 clips, skipped 6" in r2.stdout
    assert len(read_manifest(out / "manifest.jsonl")) == 6
    # a different seed gives different scenes
    other = synthetic.write_synth_dataset(tmp_path / "other", 2, seed=8, progress=False)
    a = read_manifest(out / "manifest.jsonl")[0]["meta"]["scene"]
    assert read_manifest(other.manifest)[0]["meta"]["scene"] != a


def test_moving_start_world_keeps_only_scenes_that_move_from_the_start(tmp_path):
    w = synthetic.World(3, 3, moving_start=True)
    general = [synthetic.World(3, 3).scene(s, 4.0) for s in range(40)]
    assert not all(synthetic._moves_from_start(sp) for sp in general)  # the filter has something to do
    for s in range(40):
        sp = w.scene(s, 4.0)
        assert sp.to_dict() == w.scene(s, 4.0).to_dict()  # reproducible per seed
        for i, o in enumerate(sp.objects):
            first = next(e for e in sp.events if e.obj == i)
            assert o.visible and first.kind == "move" and first.t <= synthetic.MOVING_START_BY
    # the setting is recorded in the manifest, so `t2v prompts` / `t2v compare` draw held-out scenes from the same world
    out = tmp_path / "ds"
    r = subprocess.run([str(BIN / "t2v"), "synth", "--out", str(out), "--num-clips", "3", "--size", "48",
                        "--seconds", "2", "--max-objects", "2", "--moving-start", "--no-sheet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert synthetic.World.of_manifest(out / "manifest.jsonl") == synthetic.World(2, 3, True)


def test_synth_cli_rejects_bad_arguments(tmp_path):
    r = subprocess.run([str(BIN / "t2v"), "synth", "--out", str(tmp_path), "--num-clips", "2", "--size", "33"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "size must be an even number" in r.stderr and "Traceback" not in r.stderr


def test_a_failing_clip_becomes_an_error_record_and_the_run_goes_on(tmp_path, monkeypatch):
    real = synthetic.write_mp4

    def flaky(path, frames, fps):
        if "clip-000001" in str(path):
            raise OSError("No space left on device")
        return real(path, frames, fps)

    monkeypatch.setattr(synthetic, "write_mp4", flaky)
    s = synthetic.write_synth_dataset(tmp_path, 3, seed=1, progress=False)
    assert (s.written, s.errors) == (2, 1)
    recs = read_manifest(s.manifest)
    assert [r["status"] for r in recs] == ["ok", "error", "ok"]
    assert "No space left on device" in recs[1]["error"] and "captions" not in recs[1]


def test_synth_workers_render_the_same_dataset(tmp_path):
    """Rendering in 2 processes writes the same manifest (in clip order) and the same mp4 bytes as in one."""
    one = synthetic.write_synth_dataset(tmp_path / "one", 6, seed=4, size=32, progress=False, workers=1)
    two = synthetic.write_synth_dataset(tmp_path / "two", 6, seed=4, size=32, progress=False, workers=2)
    assert (two.written, two.errors) == (6, 0)
    assert one.manifest.read_text() == two.manifest.read_text()
    for r in read_manifest(one.manifest):
        assert (tmp_path / "one" / r["video"]).read_bytes() == (tmp_path / "two" / r["video"]).read_bytes()
    with pytest.raises(ValueError, match="workers must be >= 0"):
        synthetic.write_synth_dataset(tmp_path / "bad", 2, workers=-1)


def test_synth_resumes_after_kill(tmp_path):
    """SIGKILL part-way, run again: every clip exactly once."""
    code = ("import sys; from synthworld.dataset import write_synth_dataset;"
            f"write_synth_dataset({str(tmp_path)!r}, 400, seed=3, progress=False)")
    p = subprocess.Popen([sys.executable, "-c", code])
    manifest = tmp_path / "manifest.jsonl"
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if manifest.exists() and manifest.stat().st_size > 0 and len(manifest.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    p.kill()
    p.wait()
    first = len(read_manifest(manifest))
    assert 5 <= first < 400
    s = synthetic.write_synth_dataset(tmp_path, 400, seed=3, progress=False)
    ids = [r["id"] for r in read_manifest(manifest)]
    assert len(ids) == len(set(ids)) == 400 and s.skipped >= first


def test_captioner_probe_cli(tmp_path, sample_videos):
    bad = tmp_path / "bad.mp4"
    bad.write_text("nope")
    r = subprocess.run([str(BIN / "captioner"), "probe", str(sample_videos["carphone_pristine.mp4"]), str(bad)],
                       capture_output=True, text=True, timeout=120, env={**os.environ})
    assert r.returncode == 1
    good, err = (json.loads(line) for line in r.stdout.splitlines())
    assert good["status"] == "ok" and good["num_frames"] == 120 and good["width"] == 176
    assert err["status"] == "error" and err["error"].startswith("NotAVideoError") and str(bad) in err["error"]
