"""Captions that match the window trained on: 8-second synthworld clips captioned with
``run.window_seconds=4`` carry the dense caption of each 4 s window (its own events, re-timed from 0),
and a t2v dataset with a 4 s window trains on those windows — frames and caption of the same span."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch

from captioner.config import ConfigError, load_captioner_config
from captioner.run import run_captioner, tasks_from_manifest
from clipio.manifest import read_manifest, resolve_video, window_spans
from synthworld.dataset import write_synth_dataset
from synthworld.score import caption_names_events, timed_sentences
from synthworld.simulate import states_at, sub_span
from synthworld.spec import SceneSpec
from t2v.data.dataset import ManifestClipDataset, decode_clip

WINDOW = 4.0


@pytest.fixture(scope="module")
def windowed(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("windows")
    write_synth_dataset(root / "data", 16, seed=4, size=48, fps=8.0, seconds=8.0, progress=False)
    out = root / "captions.jsonl"
    cfg = load_captioner_config("oracle", [f"run.window_seconds={WINDOW}"])
    s = run_captioner(cfg, tasks_from_manifest(root / "data" / "manifest.jsonl", out), out, progress=False)
    assert (s.ok, s.error) == (16, 0)
    return root / "data" / "manifest.jsonl", out


def _outside_only(spec: SceneSpec, start: float, end: float) -> list[str]:
    """'colour shape' of objects not visible at any time of [start, end] (they appear later or left before)."""
    names = []
    for i, o in enumerate(spec.objects):
        seen = [st[i] for t in torch.linspace(start, end - 1e-3, 33).tolist() for st in [states_at(spec, t)]]
        if not any(s.visible for s in seen):
            names += {f"{s.colour} {o.shape}" for s in (states_at(spec, e.t)[i] for e in spec.events if e.obj == i)}
    return names


def test_window_captions_name_the_events_inside_their_window_and_none_outside(windowed):
    _, out = windowed
    total = named = outside_checked = 0
    for r in read_manifest(out):
        spec = SceneSpec.from_dict(r["meta"]["scene"])
        assert [(w["start"], w["end"]) for w in r["windows"]] == window_spans(8.0, WINDOW) == [(0.0, 4.0), (4.0, 8.0)]
        for w in r["windows"]:
            dense = w["captions"]["dense"]
            hits = caption_names_events(sub_span(spec, w["start"], w["end"]), dense, tol=0.25)
            total += len(hits)
            named += sum(ok for _, ok in hits)
            assert all(0 <= t <= WINDOW for t, _ in timed_sentences(dense)), dense  # re-timed from 0
            for name in _outside_only(spec, w["start"], w["end"]):
                outside_checked += 1
                assert not re.search(name, dense), (name, dense)
    assert total > 30 and named / total >= 0.95, (named, total)
    assert outside_checked > 0  # some windows miss a shape that only the other window shows


def test_the_dataset_trains_on_the_windows(windowed, caplog):
    plain, out = windowed
    ds = ManifestClipDataset(out, "dense", 4, 1.0, 32)  # 4 frames at 1 fps: 4 s windows
    assert len(ds) == 2 * len(ds.records) and ds.samples[1]["id"] == f"{ds.records[0]['id']}@4"
    item, rec = ds[1], ds.records[0]
    assert item["caption"] == rec["windows"][1]["captions"]["dense"] != rec["captions"]["dense"]
    frames = decode_clip(resolve_video(out, rec), 4.0, 8.0, 4, 1.0, 32)  # seconds 4-7 of the clip
    assert torch.allclose(item["video"], torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1, atol=1e-6)
    # the clip-long window trains the whole clip, as before
    assert len(ManifestClipDataset(out, "dense", 8, 1.0, 32)) == len(ds.records)
    # a long clip without window captions is an error naming it, unless asked for the old behaviour
    with pytest.raises(ValueError, match=r"lasts 8.00 s but trains in 4.00 s windows .* run.window_seconds=4"):
        ManifestClipDataset(plain, "dense", 4, 1.0, 32)
    with caplog.at_level(logging.WARNING):
        old = ManifestClipDataset(plain, "dense", 4, 1.0, 32, window_captions="clip")
    assert len(old) == len(old.records) and "whole clip's caption" in caplog.text


def test_synth_writes_true_window_captions_and_fast_mode_cannot(tmp_path):
    s = write_synth_dataset(tmp_path, 2, seed=1, size=32, fps=4.0, seconds=6.0, progress=False, window=2.0)
    for r in read_manifest(s.manifest):
        spec = SceneSpec.from_dict(r["meta"]["scene"])
        assert [(w["start"], w["end"]) for w in r["windows"]] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]
        for w in r["windows"]:
            hits = caption_names_events(sub_span(spec, w["start"], w["end"]), w["captions"]["dense"], tol=0.0)
            assert all(ok for _, ok in hits) and w["captions"]["short"]
    with pytest.raises(ConfigError, match="run.window_seconds"):
        load_captioner_config("oracle", ["run.window_seconds=4", "run.mode=fast"])
