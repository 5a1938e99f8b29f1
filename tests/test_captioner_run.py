"""The captioner end to end with the oracle backend: DiffSW and fast mode on synthworld clips,
batching across clips, error records, resume after SIGKILL, sharding, clip summary, re-captioning."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from captioner.backends.oracle import OracleBackend
from captioner.config import ConfigError, load_captioner_config
from captioner.diffsw import DiffSWCaptioner
from captioner.modes import clip_summary, recaption
from captioner.prompting import fmt_t
from captioner.run import run_captioner, shard, tasks_from_manifest, tasks_from_videos
from clipio.manifest import iter_manifest, read_manifest
from synthworld.dataset import write_synth_dataset
from synthworld.generate import random_scene
from synthworld.score import caption_names_events, timed_sentences
from synthworld.spec import SceneSpec

ORACLE = Path(__file__).resolve().parents[1] / "captioner" / "presets" / "oracle.yaml"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synth_dataset(out, 24, seed=5, size=64, fps=8.0, progress=False)
    return out / "manifest.jsonl"


class Recording:
    """Wraps a backend; remembers the size and tasks of every batch; can fail chosen requests."""

    def __init__(self, inner, fail=lambda r: False):
        self.inner, self.fail, self.name = inner, fail, inner.name
        self.batches: list[list[str]] = []

    def generate(self, requests):
        self.batches.append([r.task for r in requests])
        out = self.inner.generate(requests)
        return [RuntimeError("injected failure") if self.fail(r) else a for r, a in zip(requests, out)]


def test_diffsw_oracle_names_every_event_within_one_keyframe_interval(synth, tmp_path):
    cfg = load_captioner_config(ORACLE)
    out = tmp_path / "captions.jsonl"
    s = run_captioner(cfg, tasks_from_manifest(synth, out), out, progress=False)
    assert (s.ok, s.error, s.skipped) == (24, 0, 0)
    recs = read_manifest(out)
    total = named = 0
    for r in recs:
        spec = SceneSpec.from_dict(r["meta"]["scene"])
        times = [k["t"] for k in r["keyframes"]]
        assert times[0] == 0.0 and times == sorted(times) and times[-1] <= r["end"]
        assert r["keyframes"][1]["caption"].startswith(f"From {fmt_t(times[0])}s to {fmt_t(times[1])}s")
        assert len(times) == 17  # every 0.25 s candidate (threshold 1) + the last frame
        assert r["meta"]["prompt_version"] == "detail-v1,diff-v1,summary-v1,short-v1"
        assert r["captions"]["short"] and r["captions"]["short"].count(".") == 1
        hits = caption_names_events(spec, r["captions"]["dense"], tol=cfg.keyframes.interval)
        total += len(hits)
        named += sum(ok for _, ok in hits)
        assert all(ok for _, ok in hits), (r["id"], r["captions"]["dense"], [e for e, ok in hits if not ok])
    assert total > 40  # the scenes really have events to find


def test_event_check_fails_for_a_caption_of_another_scene():
    """The check above is not vacuous: another scene's caption does not name this scene's events."""
    from synthworld.captions import dense_caption

    a, b = random_scene(11), random_scene(12)
    hits = caption_names_events(a, dense_caption(b), tol=0.25)
    assert hits and not all(ok for _, ok in hits)
    assert all(ok for _, ok in caption_names_events(a, dense_caption(a), tol=0.0))


def test_step_k_of_every_active_clip_is_one_batch(synth):
    cfg = load_captioner_config(ORACLE, ["run.active_clips=6"])
    backend = Recording(OracleBackend())
    tasks = tasks_from_manifest(synth, synth.parent / "x.jsonl")[:6]
    recs = list(DiffSWCaptioner(cfg, backend).caption(tasks))
    assert len(recs) == 6 and all(r["status"] == "ok" for r in recs)
    assert backend.batches[0] == ["detail"] * 6  # round 1: the first key-frame of all six clips
    assert backend.batches[1] == ["diff"] * 6
    assert ["summary", "short"] * 6 == [t for b in backend.batches for t in b if t in ("summary", "short")]
    # far fewer backend calls than requests: clips share batches
    assert len(backend.batches) < sum(len(b) for b in backend.batches) / 4


def test_a_failing_request_fails_only_its_clip(synth, tmp_path):
    cfg = load_captioner_config(ORACLE, ["run.active_clips=4"])
    tasks = tasks_from_manifest(synth, tmp_path / "o.jsonl")[:4]
    victim = tasks[2]
    backend = Recording(OracleBackend(), fail=lambda r: r.task == "diff" and r.fields.get("t") == 0.25
                        and r.images[0].sum() == _first_frame_sum(victim))
    recs = {r["id"]: r for r in DiffSWCaptioner(cfg, backend).caption(tasks)}
    assert recs[victim.id]["status"] == "error"
    assert "diff step failed" in recs[victim.id]["error"] and "injected failure" in recs[victim.id]["error"]
    assert all(recs[t.id]["status"] == "ok" for t in tasks if t is not victim)


def _first_frame_sum(task) -> int:
    from clipio.video import open_video

    with open_video(task.path) as v:
        return int(v.frames_at([0.0])[0].sum())


def test_corrupt_and_non_video_files_become_error_records(synth, tmp_path):
    good = sorted((synth.parent / "clips").glob("*.mp4"))[:2]
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(good[0].read_bytes()[:300])
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(str(p) for p in [*good, corrupt, text, tmp_path / "missing.mp4"]))
    out = tmp_path / "out.jsonl"
    s = run_captioner(load_captioner_config(ORACLE), tasks_from_videos(listing, out), out, progress=False)
    assert (s.ok, s.error) == (2, 3)
    recs = {Path(r["video"]).name: r for r in read_manifest(out)}
    for name in ("corrupt.mp4", "notes.txt", "missing.mp4"):
        assert recs[name]["status"] == "error" and name in recs[name]["error"]
    assert recs[good[0].name]["captions"]["dense"]


def test_resume_after_sigkill_ends_with_every_clip_exactly_once(synth, tmp_path):
    out = tmp_path / "killed.jsonl"
    cmd = [sys.executable, "-m", "captioner.cli", "run", "--manifest", str(synth), "--out", str(out),
           "--config", str(ORACLE), "--quiet", "run.active_clips=1", "run.prefetch=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; give it more clips"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = len(read_manifest(out))
    assert 3 <= before < 24
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"{before} skipped" in res.stdout
    ids = Counter(r["id"] for r in iter_manifest(out))  # every line, not the last record per id
    assert len(ids) == 24 and set(ids.values()) == {1}  # and the killed run's lock did not block the resume


def test_shards_split_the_inputs_disjointly(synth):
    tasks = tasks_from_manifest(synth, synth)
    parts = [shard(tasks, 3, k) for k in range(3)]
    ids = [t.id for p in parts for t in p]
    assert sorted(ids) == sorted(t.id for t in tasks) and len(set(ids)) == len(ids)
    with pytest.raises(ValueError, match="--shard-id 3"):
        shard(tasks, 3, 3)


def test_fast_mode_one_grid_call_per_clip(synth, tmp_path):
    cfg = load_captioner_config(ORACLE, ["run.mode=fast", "run.grid_cell=64", "keyframes.interval=0.5"])
    backend = Recording(OracleBackend())
    tasks = tasks_from_manifest(synth, tmp_path / "f.jsonl")[:6]
    recs = list(DiffSWCaptioner(cfg, backend).caption(tasks))
    assert [t for b in backend.batches for t in b].count("fast") == 6
    named = total = 0
    for r in recs:
        hits = caption_names_events(SceneSpec.from_dict(r["meta"]["scene"]), r["captions"]["dense"], tol=0.5)
        named += sum(ok for _, ok in hits)
        total += len(hits)
    assert total and named / total >= 0.8  # the grid cells are read back from one image


def test_clip_summary_and_recaption(synth, tmp_path, capsys):
    out = tmp_path / "c.jsonl"
    run_captioner(load_captioner_config(ORACLE), tasks_from_manifest(synth, out)[:8], out, progress=False)
    rec = next(r for r in read_manifest(out) if any(e["t"] >= 1.5 for e in r["meta"]["scene"]["events"]))
    spec = SceneSpec.from_dict(rec["meta"]["scene"])
    late = [e for e in spec.events if e.t >= 1.5]
    text = clip_summary(rec, 1.0, 4.0, OracleBackend())
    # events of the span are told with times counted from its start
    assert text != rec["captions"]["dense"] and late
    times = [t for t, _ in timed_sentences(text)]
    assert all(0 <= t <= 3.0 for t in times) and any(abs(t - (late[0].t - 1.0)) <= 0.25 for t in times), text
    with pytest.raises(ValueError, match="start < end"):
        clip_summary(rec, 2.0, 1.0, OracleBackend())
    from captioner.cli import main

    assert main(["clip-summary", str(out), "--id", rec["id"], "--start", "1", "--end", "4", "--config", str(ORACLE)]) == 0
    assert capsys.readouterr().out.strip() == text
    dense = recaption(["a big red circle and a small blue square moving on a white background"], OracleBackend())[0]
    assert "red circle" in dense and "blue square" in dense and "white" in dense and len(dense) > 120
    assert timed_sentences(dense), dense


def test_config_is_strict():
    with pytest.raises(ConfigError, match="keyframes.intervall"):
        load_captioner_config(ORACLE, ["keyframes.intervall=1"])
    with pytest.raises(ConfigError, match="backend.kind"):
        load_captioner_config(ORACLE, ["backend.kind=gpt"])
    with pytest.raises(ConfigError, match="backend.path"):
        load_captioner_config(None, ["backend.kind=hf"])


def test_cli_run_writes_a_manifest_and_prints_the_summary(synth, tmp_path):
    from captioner.cli import main

    out = tmp_path / "cli.jsonl"
    assert main(["run", "--manifest", str(synth), "--out", str(out), "--config", str(ORACLE), "--quiet",
                 "--num-shards", "4", "--shard-id", "1"]) == 0
    recs = read_manifest(out)
    assert len(recs) == 6 and all(r["status"] == "ok" for r in recs)
    assert json.loads(out.read_text().splitlines()[0])["meta"]["mode"] == "diffsw"


def test_every_shipped_captioner_config_loads():
    configs = sorted(ORACLE.parent.glob("*.yaml"))
    assert {p.stem for p in configs} >= {"oracle", "tiny-local", "qwen2.5-vl-7b", "openai"}
    kinds = {p.stem: load_captioner_config(p).backend.kind for p in configs}
    assert kinds["openai"] == "openai" and kinds["qwen2.5-vl-7b"] == "hf" and kinds["oracle"] == "oracle"


def test_tiny_local_vlm_captions_through_the_runner(synth, tmp_path):
    """The hf backend behind `captioner run`: a tiny random LLaVA built by `captioner tiny-vlm`."""
    from captioner.cli import main

    vlm = tmp_path / "vlm"
    assert main(["tiny-vlm", "--out", str(vlm)]) == 0
    out = tmp_path / "hf.jsonl"
    cfg = load_captioner_config(ORACLE.parent / "tiny-local.yaml", [f"backend.path={vlm}", "backend.max_new_tokens=6",
                                                                     "keyframes.interval=2.0"])
    s = run_captioner(cfg, tasks_from_manifest(synth, out)[:3], out, progress=False)
    assert (s.ok, s.error) == (3, 0)
    for r in read_manifest(out):
        assert r["captions"]["dense"] and r["captions"]["short"] and len(r["keyframes"]) >= 2
        assert all(k["caption"] for k in r["keyframes"])
        # 6 new tokens: the random model never reaches EOS, so every step was cut, kept and flagged
        steps = ["detail@0.0"] + [f"diff@{fmt_t(k['t'])}" for k in r["keyframes"][1:]] + ["summary", "short"]
        assert r["meta"]["truncated"] == steps
    assert s.truncated == 3


class Cutting(Recording):
    """The oracle, with the answers of chosen steps marked as cut at the token limit."""

    def __init__(self, inner, cut):
        super().__init__(inner)
        self.cut = cut

    def generate(self, requests):
        from captioner.backends.base import Answer
        from captioner.diffsw import step_label

        out = super().generate(requests)
        return [Answer(a, truncated=True) if step_label(r) in self.cut else a for r, a in zip(requests, out)]


def test_truncated_steps_are_flagged_not_errors(synth, tmp_path):
    cfg = load_captioner_config(ORACLE, ["run.window_seconds=2.0"])
    tasks = tasks_from_manifest(synth, tmp_path / "x.jsonl")[:2]
    cut = {"diff@0.5", "summary", "clip_summary@0.0-2.0"}
    recs = list(DiffSWCaptioner(cfg, Cutting(OracleBackend(), cut)).caption(tasks))
    assert [r["status"] for r in recs] == ["ok", "ok"]
    for r in recs:
        assert r["meta"]["truncated"] == ["diff@0.5", "summary", "clip_summary@0.0-2.0"]
        assert r["captions"]["dense"] and len(r["windows"]) == 2  # the window captions are still made
    # an oracle run flags nothing: its records are as before (no meta.truncated)
    plain = list(DiffSWCaptioner(cfg, OracleBackend()).caption(tasks[:1]))
    assert "truncated" not in plain[0]["meta"]
