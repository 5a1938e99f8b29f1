"""``t2v compare`` end to end (``compare_models``) on stand-in pipelines that render scenes: one model as an evaluation,
paired differences, the detector's defects, re-captioned and re-worded arms, and the VLM judge."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


class _IdentityVAE:
    def encode(self, x):
        return x

    def decode(self, z):
        return z


class _FakePipe:
    """A stand-in pipeline: ``follow`` renders the prompt's own scene (a perfect model), otherwise the
    same unrelated scene for every prompt (a model that ignores its prompt)."""

    def __init__(self, scenes: dict, follow: bool, frames: int = 16, size: int = 48):
        from types import SimpleNamespace

        import torch

        self.scenes, self.follow, self.size = scenes, follow, size
        self.calls: list[str] = []
        self.transformer = SimpleNamespace(config=SimpleNamespace(sample_frames=frames))
        self.video_vae, self.vae = _IdentityVAE(), SimpleNamespace(dtype=torch.float32)
        self.device = torch.device("cpu")

    def __call__(self, prompt, num_frames, num_inference_steps, guidance_scale, generator, progress):
        from types import SimpleNamespace

        from synthworld.render import render

        self.calls.append(prompt)
        spec = self.scenes.get(prompt, self.scenes["ignored"]) if self.follow else self.scenes["ignored"]
        return SimpleNamespace(frames=[render(spec, size=self.size, fps=8)[:num_frames]])


@pytest.fixture
def fake_models(tmp_path, monkeypatch):
    """Two pipeline folders (`good`, `ignores`) with a saved run config (fps 8) and held-out prompts."""
    from synthworld.generate import random_scene
    from t2v.compare import run
    from t2v.compare.prompts import load_prompts, write_heldout_prompts
    from t2v.config import load_config

    prompts = write_heldout_prompts(tmp_path / "p.jsonl", num=8, seconds=2.0)
    scenes = {it.prompt: it.scene for it in load_prompts(prompts)}
    scenes["ignored"] = random_scene(123_456, duration=2.0)
    dirs = {}
    for name in ("good", "ignores"):
        d = tmp_path / name / "pipeline"
        d.mkdir(parents=True)
        load_config(None, ["data.fps=8", f"data.caption_field={name}"]).save(d / "t2v_config.yaml")
        dirs[name] = d
    pipes = {dirs["good"]: _FakePipe(scenes, True), dirs["ignores"]: _FakePipe(scenes, False)}
    monkeypatch.setattr(run, "load_pipeline", lambda model, *a, **k: pipes[Path(model)])
    dirs["pipes"] = pipes
    return dirs, prompts


def test_compare_one_model_is_an_evaluation(fake_models, tmp_path):
    """`t2v compare --models DIR`: the model's scores next to chance and ceiling, no differences, and a
    table with one model column."""
    from t2v.compare.run import compare_models, report_table

    dirs, prompts = fake_models
    rep = compare_models([dirs["good"]], prompts, tmp_path / "one", gallery=2)
    assert rep["title"] == "Evaluation: good" and rep["differences"] == []
    assert [m["name"] for m in rep["models"]] == ["good"] and rep["models"][0]["caption_field"] == "good"
    assert rep["settings"]["fps"] == 8.0 and rep["settings"]["frames"] == 16
    assert [c["key"] for c in rep["categories"]] == ["colour", "shape", "binding", "position", "direction",
                                                     "events", "count", "flicker",
                                                     "jitter", "fragments", "bg_drift", "shape_flips"]
    good, chance, ceiling = rep["metrics"]["good"], rep["reference"]["chance"], rep["reference"]["ceiling"]
    assert good["colour"]["n"] == 8
    for c in ("colour", "shape", "position", "count"):  # rendered true scenes: the ceiling itself
        assert good[c]["mean"] >= 0.95 and ceiling[c]["mean"] >= 0.95, (c, good[c], ceiling[c])
        assert chance[c]["mean"] < good[c]["mean"], (c, chance[c], good[c])
    table = report_table(rep).splitlines()
    assert table[0] == "| category | good | chance | ceiling |" and len(table) == 2 + len(rep["categories"])
    md = (tmp_path / "one" / "report.md").read_text()
    assert "## Differences" not in md and "best model of the row" not in md
    assert sorted(p.name for p in (tmp_path / "one" / "gallery").iterdir()) == ["000-good.gif", "001-good.gif"]


def test_compare_two_models_paired_difference_has_the_right_sign(fake_models, tmp_path):
    """A model that renders each prompt's scene vs one that shows the same unrelated scene for every
    prompt: on colour the paired difference `ignores − good` is clearly negative, and equals the
    difference of the two models' means."""
    from t2v.compare.run import compare_models

    dirs, prompts = fake_models
    rep = compare_models([dirs["good"], dirs["ignores"]], prompts, tmp_path / "two", gallery=0)
    assert rep["title"] == "Comparison: good vs ignores"
    diffs = {d["category"]: d for d in rep["differences"]}
    assert all(d["a"] == "good" and d["b"] == "ignores" for d in diffs.values())
    good, ignores = rep["metrics"]["good"], rep["metrics"]["ignores"]
    for c in ("colour", "position"):
        d = diffs[c]
        assert d["hi"] < 0 and d["mean"] <= -0.4, (c, d)
        assert d["mean"] == pytest.approx(ignores[c]["mean"] - good[c]["mean"])
    assert ignores["colour"]["mean"] < good["colour"]["mean"] - 0.4


class _DriftingPipe(_FakePipe):
    """The perfect model, with the background's brightness ramped by −12 … +12 over the clip."""

    def __call__(self, *args, **kwargs):
        out = super().__call__(*args, **kwargs)
        v = out.frames[0].astype(np.int16)
        bg = np.all(v == v[0, 0, 0], axis=-1, keepdims=True)  # (T, H, W, 1): background pixels
        ramp = np.rint(np.linspace(-12, 12, len(v))).astype(np.int16)[:, None, None, None]
        out.frames[0] = np.clip(np.where(bg, v + ramp, v), 0, 255).astype(np.uint8)
        return out


def test_compare_reports_the_detectors_video_quality_next_to_the_ceiling(fake_models, tmp_path, monkeypatch):
    """The four defects (jitter, fragments, background drift, shape flips) are categories of their own kind,
    lower is better, with a value per model and for the ceiling (chance has none); the perfect model matches
    the ceiling, a model whose background drifts is clearly worse on drift, and the report shows them as a group
    with its own chart."""
    from t2v.compare import run
    from t2v.compare.report import DEFECT_GROUP

    dirs, prompts = fake_models
    good = dirs["pipes"][dirs["good"]]
    pipes = {dirs["good"]: good, dirs["ignores"]: _DriftingPipe(good.scenes, True)}
    monkeypatch.setattr(run, "load_pipeline", lambda model, *a, **k: pipes[Path(model)])
    rep = run.compare_models([dirs["good"], dirs["ignores"]], prompts, tmp_path / "vq", names=["good", "drifts"],
                             gallery=0)
    saved = json.loads((tmp_path / "vq" / "report.json").read_text())
    keys = ["jitter", "fragments", "bg_drift", "shape_flips"]
    cats = {c["key"]: c for c in saved["categories"]}
    assert all(cats[k]["kind"] == "defect" and cats[k]["lower_is_better"] for k in keys)
    ceiling, chance = saved["reference"]["ceiling"], saved["reference"]["chance"]
    for k in keys:
        assert saved["metrics"]["good"][k]["n"] == 8 and k not in chance
        assert saved["metrics"]["good"][k]["mean"] == pytest.approx(ceiling[k]["mean"])  # identity VAE: the same videos
        assert ceiling[k]["mean"] < (0.1 if k == "jitter" else 1e-9), (k, ceiling[k])
    drift = saved["metrics"]["drifts"]["bg_drift"]
    assert drift["lo"] > 5 and drift["mean"] == pytest.approx(np.std(np.rint(np.linspace(-12, 12, 16))), abs=0.2)
    d = {x["category"]: x for x in rep["differences"]}
    assert d["bg_drift"]["lo"] > 0 and d["fragments"]["mean"] == 0
    md = (tmp_path / "vq" / "report.md").read_text()
    assert f"| ***{DEFECT_GROUP}*** |" in md and "charts/defects.png" in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| background drift"))
    assert "↓" in row and row.count("[") == 3  # good, drifts, ceiling; chance has no figure (–)
    assert "drifts better" not in md and "good better" in md
    html = (tmp_path / "vq" / "report.html").read_text()
    assert f'<td class="group" colspan="6">{DEFECT_GROUP}</td>' in html
    assert (tmp_path / "vq" / "charts" / "defects.png").is_file()


def test_pipeline_config_is_loaded_strictly(tmp_path):
    """The fps and caption field come from the pipeline's t2v_config.yaml through the strict loader:
    an unknown key is an error naming the file and the key; no file means the defaults."""
    from t2v.compare.run import _caption_field
    from t2v.config import ConfigError
    from t2v.generate import training_fps

    (tmp_path / "t2v_config.yaml").write_text("data:\n  fps: 4\n  caption_field: short\n")
    assert training_fps(tmp_path) == 4.0 and _caption_field(tmp_path) == "short"
    (tmp_path / "t2v_config.yaml").write_text("data:\n  fps: 4\n  frame_rate: 3\n")
    with pytest.raises(ConfigError, match=r"t2v_config\.yaml.*data\.frame_rate"):
        training_fps(tmp_path)
    with pytest.raises(ConfigError, match=r"t2v_config\.yaml.*data\.frame_rate"):
        _caption_field(tmp_path)
    assert training_fps(tmp_path / "none") == 8.0 and _caption_field(tmp_path / "none") is None


def test_compare_recaption_adds_an_arm_on_the_rewritten_prompts(fake_models, tmp_path):
    """`t2v compare --recaption CAPTIONER`: each model also runs on the captioner's rewrites of the prompts (here
    the oracle's re-caption of held-out dense captions: new sentences this fake model does not know, so it shows
    an unrelated scene for them), scored against the original scenes with the same seeds; the arm is in the
    metrics, the paired differences and the report, and its prompts are written with the originals."""
    from t2v.compare.prompts import load_prompts
    from t2v.compare.run import compare_models

    dirs, prompts = fake_models
    rep = compare_models([dirs["good"]], prompts, tmp_path / "rc", gallery=2, recaption="oracle")
    originals = [it.prompt for it in load_prompts(prompts)]
    rewritten = [json.loads(ln) for ln in (tmp_path / "rc" / "prompts-recaptioned.jsonl").read_text().splitlines()]
    assert [r["original"] for r in rewritten] == originals and rep["recaption"]["captioner"] == "oracle"
    assert all(r["prompt"] != r["original"] and r["scene"] for r in rewritten)
    calls = dirs["pipes"][dirs["good"]].calls
    assert calls == originals + [r["prompt"] for r in rewritten]  # the arm generated from the rewrites
    assert [m["name"] for m in rep["models"]] == ["good", "good+recaption"]
    d = {x["category"]: x for x in rep["differences"]}["colour"]
    assert (d["a"], d["b"]) == ("good", "good+recaption") and d["hi"] < 0
    assert "good+recaption" in (tmp_path / "rc" / "report.md").read_text()
    assert (tmp_path / "rc" / "gallery" / "001-good+recaption.gif").is_file()


def test_compare_judge_rates_claims_and_agrees_with_the_detector(fake_models, tmp_path):
    """`t2v compare --judge oracle`: the judge's share of true claims per type is its own group of the report (a
    model that renders each prompt's scene near 1, one that ignores its prompt clearly lower, their paired
    difference negative), its verdicts agree with the detector's on ≥ 90% of each type's claims, and what it
    said is written per model (caption, claims, both verdicts)."""
    from t2v.compare.judge import JUDGE_KEYS
    from t2v.compare.prompts import load_prompts
    from t2v.compare.run import compare_models

    dirs, prompts = fake_models
    out = tmp_path / "judged"
    rep = compare_models([dirs["good"], dirs["ignores"]], prompts, out, gallery=1, judge="oracle")
    keys = [c["key"] for c in rep["categories"] if c["kind"] == "judge"]
    assert keys and set(keys) <= set(JUDGE_KEYS.values()) and {"judge_object", "judge_position"} <= set(keys)
    good, ignores = rep["metrics"]["good"], rep["metrics"]["ignores"]
    for k in ("judge_object", "judge_position"):
        assert good[k]["mean"] >= 0.9 and ignores[k]["mean"] < good[k]["mean"] - 0.3, (k, good[k], ignores[k])
        d = next(x for x in rep["differences"] if x["category"] == k)
        assert d["hi"] < 0, d
    for name in ("good", "ignores"):
        ag = rep["judge"]["agreement"][name]
        assert ag["all"]["n"] >= 50 and all(a["rate"] >= 0.9 for a in ag.values()), (name, ag)
    assert rep["judge"]["agreement"]["ignores"]["all"]["detector_true"] < 0.6  # agreement on false claims too
    rows = [json.loads(ln) for ln in (out / "judge" / "good.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == [it.prompt for it in load_prompts(prompts)]
    assert all(r["caption"] and r["claims"] and (out / "judge" / r["video"]).is_file() for r in rows)
    assert {"type", "claim", "judge", "detector"} <= set(rows[0]["claims"][0])
    md = (out / "report.md").read_text()
    assert "claims of the prompt a VLM judge finds true" in md and "Judge vs detector on good" in md
    assert (out / "charts" / "judge.png").is_file()
    with pytest.raises(ValueError, match="no claims in any of the 2 prompts"):  # before any video is made
        bad = tmp_path / "cats.txt"
        bad.write_text("A cat sleeps on a sofa.\nTwo dogs run on a beach.\n")
        compare_models([dirs["good"]], bad, tmp_path / "cats", judge="oracle")
    with pytest.raises(ValueError, match="give --judge"):
        compare_models([dirs["good"]], prompts, tmp_path / "nojudge", judge_claims="oracle")


def test_compare_variants_run_every_model_on_other_wordings_of_the_same_scenes(fake_models, tmp_path):
    """`t2v compare --variants para=FILE`: each model also runs on the same scenes in other words (here paraphrases
    this fake model does not know, so it shows an unrelated scene), with the same seeds, as arm MODEL@para: paired
    differences against the original wording; a variant of other scenes is refused naming its line."""
    from t2v.compare.prompts import load_prompts, parse_variants, write_heldout_prompts
    from t2v.compare.run import compare_models

    dirs, prompts = fake_models
    para = write_heldout_prompts(tmp_path / "para.jsonl", num=8, seconds=2.0, field="paraphrase", phrasing=2)
    assert [it.scene for it in load_prompts(para)] == [it.scene for it in load_prompts(prompts)]
    same = write_heldout_prompts(tmp_path / "same.jsonl", 0, 0.0, field="paraphrase", phrasing=2, scenes_from=prompts)
    assert same.read_text() == para.read_text()
    rep = compare_models([dirs["good"]], prompts, tmp_path / "v", gallery=1, variants=parse_variants([f"para={para}"]))
    assert [m["name"] for m in rep["models"]] == ["good", "good@para"] and rep["variants"] == {"para": str(para)}
    calls = dirs["pipes"][dirs["good"]].calls
    assert calls == [it.prompt for it in load_prompts(prompts)] + [it.prompt for it in load_prompts(para)]
    d = {x["category"]: x for x in rep["differences"]}["colour"]
    assert (d["a"], d["b"]) == ("good", "good@para") and d["hi"] < 0
    short = write_heldout_prompts(tmp_path / "short.jsonl", num=8, seconds=2.0, field="short")  # the oracle re-captions these
    both = compare_models([dirs["good"]], prompts, tmp_path / "vr", gallery=0, variants={"short": short},
                          recaption="oracle")
    assert [m["name"] for m in both["models"]] == ["good", "good+recaption", "good@short", "good@short+recaption"]
    rewritten = [json.loads(ln) for ln in (tmp_path / "vr" / "prompts-short-recaptioned.jsonl").read_text().splitlines()]
    assert [r["original"] for r in rewritten] == [it.prompt for it in load_prompts(short)]
    other = write_heldout_prompts(tmp_path / "other.jsonl", num=8, seconds=3.0, field="paraphrase")
    with pytest.raises(ValueError, match=r"other.jsonl:1: its scene is not the scene of line 1"):
        compare_models([dirs["good"]], prompts, tmp_path / "bad", variants={"other": other})
    for bad in (["para"], ["=x.jsonl"], ["a b=x.jsonl"], [f"p={para}", f"p={para}"]):
        with pytest.raises(ValueError, match="--variants"):
            parse_variants(bad)
    with pytest.raises(FileNotFoundError, match="--variants q=nowhere.jsonl: no such file"):
        parse_variants(["q=nowhere.jsonl"])
    with pytest.raises(ValueError, match="not all distinct"):  # a model named like another model's arm
        compare_models([dirs["good"], dirs["ignores"]], prompts, tmp_path / "clash", names=["good", "good@para"],
                       variants={"para": para})
    few = tmp_path / "few.jsonl"
    few.write_text("\n".join(para.read_text().splitlines()[:3]) + "\n")
    with pytest.raises(ValueError, match="3 prompts, but --prompts has 8"):
        compare_models([dirs["good"]], prompts, tmp_path / "few", variants={"few": few})
