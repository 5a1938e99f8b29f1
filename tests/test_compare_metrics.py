"""Metrics of ``t2v compare``: flicker, bootstrap intervals, CLIPScore, Fréchet distance, and the
synthworld scene-following categories they sit next to in the report."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from synthworld.detect import detect_video
from synthworld.generate import random_scene
from synthworld.render import render
from synthworld.score import SCENE_CATEGORIES, scene_following
from synthworld.simulate import states_at
from synthworld.spec import ObjectSpec, SceneSpec
from t2v.compare.metrics import (
    ClipScorer,
    bootstrap_ci,
    chance_rates,
    frechet_distance,
    paired_difference_ci,
    per_prompt_rates,
    temporal_flicker,
)


# ----------------------------------------------------------------------------- flicker
def test_temporal_flicker_steady_and_alternating():
    assert temporal_flicker(np.full((6, 8, 8, 3), 77, np.uint8)) == 1.0
    alternating = np.stack([np.full((8, 8, 3), 255 * (k % 2), np.uint8) for k in range(6)])
    assert temporal_flicker(alternating) == pytest.approx(0.0, abs=1e-9)
    half = np.stack([np.full((8, 8, 3), 51 * (k % 2), np.uint8) for k in range(4)])  # MAD 51
    assert temporal_flicker(half) == pytest.approx((255 - 51) / 255)
    with pytest.raises(ValueError, match="at least 2"):
        temporal_flicker(np.zeros((1, 8, 8, 3), np.uint8))


# ----------------------------------------------------------------------------- bootstrap
def test_bootstrap_ci_contains_mean_narrows_and_is_reproducible():
    rng = np.random.default_rng(0)
    small, large = rng.random(20).tolist(), rng.random(500).tolist()
    ci = bootstrap_ci(small, seed=3)
    assert ci["n"] == 20 and ci["lo"] < ci["mean"] < ci["hi"]
    assert ci["mean"] == pytest.approx(np.mean(small))
    assert bootstrap_ci(small, seed=3) == ci
    assert bootstrap_ci(small, seed=4) != ci
    wide = bootstrap_ci(large)
    assert wide["hi"] - wide["lo"] < 0.5 * (ci["hi"] - ci["lo"])
    assert bootstrap_ci([]) == {"mean": None, "lo": None, "hi": None, "n": 0}
    with pytest.raises(ValueError, match="None/NaN"):
        bootstrap_ci([0.5, None])


def test_paired_difference_ci():
    a = [0.1, 0.5, 0.9, 0.3]
    assert paired_difference_ci(a, a) == {"mean": 0.0, "lo": 0.0, "hi": 0.0, "n": 4}
    # b is a + 0.2 on every prompt: the pairing removes the prompts' spread entirely
    d = paired_difference_ci(a, [x + 0.2 for x in a])
    assert d["mean"] == pytest.approx(0.2) and d["lo"] == pytest.approx(0.2) and d["hi"] == pytest.approx(0.2)
    # two genuinely different models: b is worse by 0.3 on average, with per-prompt noise. The paired CI
    # lies below 0 and is far narrower than the spread of either model over the prompts
    rng = np.random.default_rng(1)
    many = rng.uniform(0.1, 0.9, 40)
    worse = many - 0.3 + rng.normal(0, 0.05, 40)
    d = paired_difference_ci(many, worse)
    assert d["mean"] == pytest.approx(np.mean(worse) - np.mean(many)) and d["n"] == 40
    assert d["lo"] < d["mean"] < d["hi"] < 0
    alone = bootstrap_ci(worse)
    assert d["hi"] - d["lo"] < 0.3 * (alone["hi"] - alone["lo"])
    assert paired_difference_ci(worse, many)["lo"] == pytest.approx(-d["hi"])  # b − a: swapping flips the sign
    with pytest.raises(ValueError, match="same prompts"):
        paired_difference_ci(a, a[:3])


def test_per_prompt_rates():
    assert per_prompt_rates({"colour": [True, False], "binding": []}) == {"colour": 0.5, "binding": None}


# ----------------------------------------------------------------------------- CLIP
def _tiny_clip(path):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

    words = "a the red blue green circle square triangle moves left right up down and on gray".split()
    vocab = {t: i for i, t in enumerate(["<|pad|>", "<|unk|>", "<|startoftext|>", "<|endoftext|>", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|unk|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", 2), ("<|endoftext|>", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                                        unk_token="<|unk|>", pad_token="<|pad|>")
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=2, eos_token_id=3,
                         pad_token_id=0),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return str(path)


def test_clip_scorer_from_pretrained_folder(tmp_path, caplog):
    scorer = ClipScorer(_tiny_clip(tmp_path / "clip"))
    rng = np.random.default_rng(0)
    video_a = rng.integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    video_b = np.zeros((3, 40, 40, 3), np.uint8)
    video_b[..., 2] = 200
    prompt = "a red circle moves left"
    s = scorer.score(video_a, prompt)
    assert 0.0 <= s <= 100.0
    assert scorer.score(video_a, prompt) == s  # deterministic
    assert scorer.score(video_b, prompt) != s
    # the score is the mean of the per-frame clipped cosines, times 100
    cos = scorer.image_embeddings(video_a) @ scorer.text_embedding(prompt)
    assert s == pytest.approx(float(np.maximum(100 * cos, 0).mean()), abs=1e-4)
    feats = scorer.video_features(video_a)
    assert feats.shape == (16,)
    assert np.allclose(np.linalg.norm(scorer.image_embeddings(video_a), axis=1), 1.0, atol=1e-5)
    # a prompt longer than the 16 positions is cut, with one warning
    long_prompt = " ".join(["the red square moves right"] * 10)
    with caplog.at_level(logging.WARNING, logger="t2v.compare.metrics"):
        s_long = scorer.score(video_a, long_prompt)
        scorer.score(video_a, long_prompt)
    assert 0.0 <= s_long <= 100.0
    assert sum("sees only the first 16" in r.message for r in caplog.records) == 1


# ----------------------------------------------------------------------------- Fréchet distance
def test_frechet_distance():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(150, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    near, far = frechet_distance(a, b + 0.5), frechet_distance(a, b + 2.0)
    assert 0 < near < far
    assert far == pytest.approx(8 * 2.0**2, rel=0.15)  # the mean-shift term dominates
    assert frechet_distance(b + 2.0, a) == pytest.approx(far, rel=1e-6)
    # fewer samples than dimensions (singular covariances) still gives a finite, ~0 self-distance
    c = rng.normal(size=(5, 16))
    assert frechet_distance(c, c) == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(ValueError, match="N=1, M=150"):
        frechet_distance(a[:1], b)


# ----------------------------------------------------------------------------- synthworld categories
@pytest.fixture(scope="module")
def scenes():
    specs = [random_scene(s) for s in range(0, 40)]
    return specs, [detect_video(render(sp, size=64, fps=8), fps=8) for sp in specs]


def test_scene_following_true_videos_vs_other_scenes(scenes):
    """Rendered clips follow their own scene in every category; against another scene's truth,
    events and binding drop far below."""
    specs, dets = scenes
    own = {c: [] for c in SCENE_CATEGORIES}
    other = {c: [] for c in SCENE_CATEGORIES}
    for k, (sp, det) in enumerate(zip(specs, dets)):
        hits = scene_following(sp, det)
        n_start = sum(s.visible for s in states_at(sp, 0.0))  # one colour/shape/position item per start object
        assert len(hits["colour"]) == len(hits["shape"]) == len(hits["position"]) == n_start and len(hits["count"]) == 1
        for c, v in hits.items():
            own[c] += v
        for c, v in scene_following(specs[(k + 1) % len(specs)], det).items():
            other[c] += v
    assert all(len(own[c]) >= 30 for c in SCENE_CATEGORIES if c != "count"), {c: len(v) for c, v in own.items()}
    for c in SCENE_CATEGORIES:
        assert np.mean(own[c]) >= 0.95, (c, np.mean(own[c]))
    assert np.mean(other["events"]) < 0.25 * np.mean(own["events"])
    assert np.mean(other["binding"]) < 0.4 * np.mean(own["binding"])
    assert np.mean(other["position"]) < 0.5 * np.mean(own["position"])


def test_chance_rates_average_other_scenes_per_video(scenes):
    """Chance: one row per video, each the mean of its rates against the next `others` scenes (never its
    own); videos without a detection are skipped; true videos score far above their chance."""
    specs, dets = scenes
    rows = chance_rates(specs, dets, scene_following, others=3)
    assert len(rows) == len(specs)
    k = 5
    want = [per_prompt_rates(scene_following(specs[k + j], dets[k]))["colour"] for j in (1, 2, 3)]
    want = [v for v in want if v is not None]
    assert rows[k]["colour"] == pytest.approx(np.mean(want))
    own = [per_prompt_rates(scene_following(s, d))["colour"] for s, d in zip(specs, dets)]
    assert np.mean([r["colour"] for r in rows if "colour" in r]) < 0.5 * np.mean([v for v in own if v is not None])
    assert len(chance_rates(specs, [None] * 3 + dets[3:], scene_following)) == len(specs) - 3
    assert chance_rates(specs[:1], dets[:1], scene_following) == [{}]  # one scene: nothing to compare with


def test_scene_following_events_need_the_right_time(scenes):
    """The same clip two frames late (0.25 s at 8 fps) misses its events at the default 1-frame
    tolerance, and finds them all again when the tolerance is widened past the lag."""
    specs, dets = scenes
    own, late, late_tol3 = [], [], []
    for sp, det in zip(specs[:15], dets):
        frames = render(sp, size=64, fps=8)
        lagged = detect_video(np.concatenate([frames[:1], frames[:1], frames[:-2]]), fps=8)
        own += scene_following(sp, det)["events"]
        late += scene_following(sp, lagged)["events"]
        late_tol3 += scene_following(sp, lagged, tol_frames=3)["events"]
    assert len(own) >= 30
    assert np.mean(own) == 1.0 and np.mean(late) < 0.2 and np.mean(late_tol3) >= 0.9


def test_scene_following_binding_swapped_attributes():
    """Prompt "a red circle and a blue square"; video: a red square and a blue circle. Both colours
    are there and matched, but no object has its colour on its shape: binding 0."""
    def scene(shapes):
        return SceneSpec(background="gray", objects=[
            ObjectSpec(shape=shapes[0], colour="red", size="large", x=0.25, y=0.5),
            ObjectSpec(shape=shapes[1], colour="blue", size="large", x=0.75, y=0.5)])

    prompt, swapped = scene(("circle", "square")), scene(("square", "circle"))
    det = detect_video(render(swapped, size=64, fps=8), fps=8)
    hits = scene_following(prompt, det)
    assert hits["colour"] == [True, True] and hits["count"] == [True]
    assert hits["binding"] == [False, False]
    assert hits["shape"] == [False, False]  # matched colour to colour, so the shapes are what is wrong
    assert scene_following(swapped, det)["binding"] == [True, True]
    # one object alone: nothing to bind
    lone = SceneSpec(background="gray", objects=[prompt.objects[0]])
    assert scene_following(lone, detect_video(render(lone, size=64, fps=8), fps=8))["binding"] == []
