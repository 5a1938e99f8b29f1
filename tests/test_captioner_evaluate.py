"""captioner.training.evaluate: a captioner scored against synthworld truth (oracle, wrong colours, errors)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from captioner.config import load_captioner_config
from captioner.run import tasks_from_manifest
from captioner.training.evaluate import CATEGORIES, bootstrap_ratio, evaluate, score_manifest, write_report
from clipio.manifest import error_record, read_manifest
from synthworld.dataset import DEMO_WORLD, write_synth_dataset
from synthworld.spec import COLOURS, SceneSpec

N_CLIPS = 8


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory):
    """8 demo-world clips captioned by the oracle preset through evaluate()."""
    root = tmp_path_factory.mktemp("captioner_eval")
    data = write_synth_dataset(root / "data", N_CLIPS, seed=0, size=48, fps=8.0, seconds=4.0, world=DEMO_WORLD,
                               workers=1, progress=False)
    out = root / "eval"
    tasks = tasks_from_manifest(data.manifest, out / "oracle.jsonl")
    result = evaluate("oracle", load_captioner_config("oracle"), tasks, out)
    return result, tasks, out


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_the_oracle_scores_full_marks(oracle_run):
    result, _, out = oracle_run
    assert result["name"] == "oracle" and result["mode"] == "diffsw"
    assert result["clips_per_s"] > 0 and result["seconds"] > 0
    s = result["scores"]
    assert (s["n_clips"], s["n_error"], s["n_missing"]) == (N_CLIPS, 0, 0)
    for c in CATEGORIES:
        assert s["categories"][c]["n"] >= N_CLIPS, c  # every demo clip has an object, a move, an event
    for a in CATEGORIES[1:]:
        assert s["categories"][a]["mean"] == 1.0, a
    assert s["categories"]["events"]["mean"] >= 0.9


def test_a_rerun_skips_everything_and_keeps_the_first_timing(oracle_run):
    result, tasks, out = oracle_run
    timing = json.loads((out / "oracle.timing.json").read_text())
    again = evaluate("oracle", load_captioner_config("oracle"), tasks, out)
    assert again["seconds"] == timing["seconds"] == result["seconds"]
    assert again["clips_per_s"] == result["clips_per_s"]
    assert len(read_manifest(out / "oracle.jsonl")) == N_CLIPS  # nothing captioned twice


def test_a_wrong_colour_word_fails_colour_but_not_shape(oracle_run, tmp_path):
    _, _, out = oracle_run
    records = read_manifest(out / "oracle.jsonl")
    for r in records:
        spec = SceneSpec.from_dict(r["meta"]["scene"])
        true = {o.colour for o in spec.objects}
        wrong = next(c for c in COLOURS if c not in true)
        dense = r["captions"]["dense"]
        for c in true:
            dense = re.sub(rf"\b{c}\b", wrong, dense)
        assert dense != r["captions"]["dense"]
        r["captions"]["dense"] = dense
    cats = score_manifest(_write(tmp_path / "wrong.jsonl", records))["categories"]
    assert cats["colour"]["mean"] == 0.0
    assert cats["shape"]["mean"] == 1.0 and cats["size"]["mean"] == 1.0
    assert cats["events"]["mean"] == 0.0  # an event names its object by colour and shape


def test_an_error_record_fails_every_item_of_its_clip(oracle_run, tmp_path):
    result, _, out = oracle_run
    records = read_manifest(out / "oracle.jsonl")
    bad = records[0]
    # a retried clip that failed: the later record of an id is the one that counts
    records.append(error_record(bad["id"], bad["video"], "RuntimeError: boom", meta=bad["meta"]))
    s = score_manifest(_write(tmp_path / "err.jsonl", records))
    assert (s["n_clips"], s["n_error"], s["n_missing"]) == (N_CLIPS, 1, 0)
    full = result["scores"]["categories"]
    spec = SceneSpec.from_dict(bad["meta"]["scene"])
    assert s["categories"]["events"]["n"] == full["events"]["n"]  # its items still count, as failures
    assert s["categories"]["events"]["mean"] == pytest.approx(1 - len(spec.events) / full["events"]["n"])
    for c in CATEGORIES:
        cat = s["categories"][c]
        assert cat["mean"] < 1.0, c
        assert cat["lo"] < cat["mean"] <= cat["hi"] == 1.0, c  # a real interval once a clip fails


def test_a_missing_clip_fails_and_its_truth_must_be_known(oracle_run, tmp_path):
    _, tasks, out = oracle_run
    records = read_manifest(out / "oracle.jsonl")
    path = _write(tmp_path / "short.jsonl", records[1:])
    ids = [t.id for t in tasks]
    with pytest.raises(ValueError, match=re.escape(repr(records[0]["id"]))):
        score_manifest(path, ids=ids)
    s = score_manifest(path, ids=ids, scenes={t.id: t.meta["scene"] for t in tasks})
    assert (s["n_clips"], s["n_error"], s["n_missing"]) == (N_CLIPS, 0, 1)
    assert all(s["categories"][c]["mean"] < 1.0 for c in CATEGORIES)


def test_bootstrap_ratio_is_seeded_and_weights_items():
    hits, n = np.array([2.0, 0.0, 1.0, 3.0]), np.array([2.0, 1.0, 1.0, 4.0])
    a, b = bootstrap_ratio(hits, n), bootstrap_ratio(hits, n)
    assert a == b
    assert a["mean"] == pytest.approx(6 / 8) and a["n"] == 8  # over items, not the mean of clip means
    assert 0.0 <= a["lo"] < a["mean"] < a["hi"] <= 1.0
    assert bootstrap_ratio(np.zeros(3), np.zeros(3))["mean"] is None


def test_write_report_writes_json_markdown_and_png(oracle_run, tmp_path):
    result, _, _ = oracle_run
    other = json.loads(json.dumps(result))
    other["name"], other["clips_per_s"] = "worse", 1.5
    other["scores"]["categories"]["colour"] = {"mean": 0.5, "lo": 0.25, "hi": 0.75, "n": 8}
    md = write_report([result, other], tmp_path / "report")
    assert md == tmp_path / "report" / "captioner_eval.md"
    lines = md.read_text().splitlines()
    header = next(ln for ln in lines if ln.startswith("| category"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["category", "oracle", "worse", "chance"]
    assert "| colour | 1.00 [1.00, 1.00] | 0.50 [0.25, 0.75] | 0.12 |" in lines  # 8 colours
    assert any(ln.startswith("| events |") and ln.endswith("| – |") for ln in lines)  # no guess hits the second
    assert any(ln.startswith("| clips/s |") and "1.50" in ln for ln in lines)
    assert [r["name"] for r in json.loads((tmp_path / "report" / "captioner_eval.json").read_text())] == \
        ["oracle", "worse"]
    assert (tmp_path / "report" / "captioner_eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recaption_scores_what_a_short_caption_carries(oracle_run):
    """The oracle's re-caption of each clip's short caption: colour, shape and size survive (the short caption
    says them), the start region cannot (it does not); the dense answers are written and scored per clip."""
    from captioner.training.evaluate import evaluate_recaption

    _, tasks, out = oracle_run
    r = evaluate_recaption("oracle-recaption", load_captioner_config("oracle"), out / "oracle.jsonl", out,
                           ids=[t.id for t in tasks[:6]])
    cats = r["scores"]["categories"]
    assert r["mode"] == "recaption" and r["scores"]["n_clips"] == 6 and r["clips_per_s"] > 0
    assert all(cats[a]["mean"] == 1.0 for a in ("colour", "shape", "size")), cats
    assert cats["region"]["mean"] < 1.0
    written = read_manifest(out / "oracle-recaption.jsonl")
    shorts = {x["id"]: x["captions"]["short"] for x in read_manifest(out / "oracle.jsonl")}
    assert [w["captions"]["short"] for w in written] == [shorts[t.id] for t in tasks[:6]]
    assert all(w["captions"]["dense"] != w["captions"]["short"] for w in written)


def test_first_keyframe_readout_scores_what_the_first_frame_shows(oracle_run, tmp_path):
    """The oracle's first key-frame captions name colour, shape, size and region of every clip; a record whose
    first caption names the wrong colour fails colour only; events and direction are not scored."""
    from captioner.training.evaluate import evaluate_first_keyframe

    _, tasks, out = oracle_run
    ids, scenes = [t.id for t in tasks], {t.id: t.meta["scene"] for t in tasks}
    r = evaluate_first_keyframe("first", out / "oracle.jsonl", tmp_path, ids=ids, scenes=scenes)
    cats = r["scores"]["categories"]
    assert all(cats[a]["mean"] == 1.0 and cats[a]["n"] == N_CLIPS for a in ("colour", "shape", "size", "region"))
    assert cats["events"]["n"] == cats["direction"]["n"] == 0
    records = read_manifest(out / "oracle.jsonl")
    first = records[0]["keyframes"][0]["caption"]
    truth = SceneSpec.from_dict(records[0]["meta"]["scene"]).objects[0].colour
    wrong = next(c for c in COLOURS if c != truth)
    records[0]["keyframes"][0]["caption"] = re.sub(rf"\b{truth}\b", wrong, first)
    del records[1]["keyframes"]  # no key-frame caption: fails its items
    bad = _write(tmp_path / "bad.jsonl", records)
    r = evaluate_first_keyframe("first-bad", bad, tmp_path, ids=ids, scenes=scenes)
    cats = r["scores"]["categories"]
    assert cats["colour"]["mean"] == (N_CLIPS - 2) / N_CLIPS
    assert cats["shape"]["mean"] == cats["size"]["mean"] == (N_CLIPS - 1) / N_CLIPS


def test_a_recaption_rerun_keeps_the_answers_and_the_first_timing(oracle_run, tmp_path):
    from captioner.training.evaluate import evaluate_recaption

    _, tasks, out = oracle_run
    ids = [t.id for t in tasks[:4]]
    first = evaluate_recaption("re", load_captioner_config("oracle"), out / "oracle.jsonl", tmp_path, ids=ids)
    written = (tmp_path / "re.jsonl").read_text()
    again = evaluate_recaption("re", load_captioner_config("oracle"), out / "oracle.jsonl", tmp_path, ids=ids,
                               backend=object())  # a backend that cannot caption: nothing is re-captioned
    assert (again["seconds"], again["clips_per_s"]) == (first["seconds"], first["clips_per_s"])
    assert again["scores"] == first["scores"] and (tmp_path / "re.jsonl").read_text() == written
    more = evaluate_recaption("re", load_captioner_config("oracle"), out / "oracle.jsonl", tmp_path,
                              ids=[t.id for t in tasks[:6]])  # two clips more: captioned again, all six
    assert more["scores"]["n_clips"] == 6
