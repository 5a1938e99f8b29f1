"""Spans of a longer video: times inside a record count from its ``start`` everywhere — the DiffSW
prompts and key-frames, the summary, ``clip-summary`` and the ShareGPT4Video import/export — tested on
a span that starts at 3.0 s of an 8-second synthworld clip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from captioner.backends.oracle import OracleBackend
from captioner.config import load_captioner_config
from captioner.modes import clip_summary
from captioner.run import run_captioner, tasks_from_manifest
from captioner.sharegpt4video import export_sharegpt4video, import_sharegpt4video
from clipio.manifest import read_manifest
from synthworld.dataset import write_synth_dataset
from synthworld.score import caption_names_events, timed_sentences
from synthworld.simulate import sub_span
from synthworld.spec import SceneSpec

ORACLE = Path(__file__).resolve().parents[1] / "captioner" / "presets" / "oracle.yaml"
START, END = 3.0, 7.0


@pytest.fixture(scope="module")
def span_captions(tmp_path_factory):
    """Six 8 s clips; the span [3, 7] s of each, captioned by DiffSW with the oracle."""
    root = tmp_path_factory.mktemp("spans")
    write_synth_dataset(root / "data", 6, seed=21, size=64, fps=8.0, seconds=8.0, progress=False)
    spans = root / "spans.jsonl"
    with open(spans, "w") as f:
        for r in read_manifest(root / "data" / "manifest.jsonl"):
            f.write(json.dumps({**r, "id": f"{r['id']}/3-7", "video": f"data/{r['video']}", "start": START,
                                "end": END}) + "\n")
    out = root / "captions.jsonl"
    cfg = load_captioner_config(ORACLE)
    s = run_captioner(cfg, tasks_from_manifest(spans, out), out, progress=False)
    assert (s.ok, s.error) == (6, 0)
    return out, cfg


def test_a_span_is_captioned_as_a_clip_of_its_own(span_captions):
    out, cfg = span_captions
    total = 0
    for r in read_manifest(out):
        assert (r["start"], r["end"]) == (START, END)
        times = [k["t"] for k in r["keyframes"]]
        assert times[0] == 0.0 and times[-1] <= END - START and times == sorted(times)
        assert r["keyframes"][1]["caption"].startswith("From 0.0s to 0.25s")  # the diff prompt's times too
        truth = sub_span(SceneSpec.from_dict(r["meta"]["scene"]), START, END)  # the span's events, from 0 s
        hits = caption_names_events(truth, r["captions"]["dense"], tol=cfg.keyframes.interval)
        total += len(hits)
        assert all(ok for _, ok in hits), (r["id"], r["captions"]["dense"])
        assert all(0 <= t <= END - START for t, _ in timed_sentences(r["captions"]["dense"]))
    assert total >= 6  # the spans have events to name


def test_clip_summary_of_a_span_and_of_an_imported_record(span_captions, tmp_path):
    out, _ = span_captions
    rec = next(r for r in read_manifest(out)
               if any(1.0 < e.t < 3.0 for e in sub_span(SceneSpec.from_dict(r["meta"]["scene"]), START, END).events))
    text = clip_summary(rec, 1.0, 3.0, OracleBackend())  # seconds 4-6 of the video
    truth = sub_span(sub_span(SceneSpec.from_dict(rec["meta"]["scene"]), START, END), 1.0, 3.0)
    hits = caption_names_events(truth, text, tol=0.25)
    assert text and hits and all(ok for _, ok in hits), text
    with pytest.raises(ValueError, match=r"<= 4.00 \(seconds from the start"):
        clip_summary(rec, 1.0, 5.0, OracleBackend())  # past the span's end

    # the ShareGPT4Video round trip keeps the span and its relative times; clip-summary reads the import
    line = tmp_path / "40k.jsonl"
    export_sharegpt4video(out, line)
    exported = [json.loads(x) for x in line.read_text().splitlines()]
    assert all((x["start"], x["end"]) == (START, END) and x["timestamp"][0] == 0.0 for x in exported)
    back = tmp_path / "back.jsonl"
    import_sharegpt4video(line, back)
    again = {r["id"]: r for r in read_manifest(back)}[rec["id"]]
    assert (again["start"], again["end"]) == (START, END) and again["keyframes"] == rec["keyframes"]
    assert clip_summary(again, 1.0, 3.0, OracleBackend()) == text
    del again["end"], again["start"]  # an imported record without its span: no KeyError, the timeline bounds it
    assert clip_summary(again, 1.0, 3.0, OracleBackend()) == text
    again["keyframes"][2]["t"] = None
    with pytest.raises(ValueError, match="without times"):
        clip_summary(again, 1.0, 3.0, OracleBackend())
