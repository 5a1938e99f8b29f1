"""The miniature's vision side: CLIP-style pretraining of the tower on its own annotations (flattened or mean
tokens), and the benches that look into what the decoder is given (colour trials, linear probes on the visual
tokens, the decoder's attention over them)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import train_cfg
from safetensors.torch import load_file

from captioner.backends.hf import HFBackend
from captioner.config import load_captioner_config
from captioner.prompting import PromptSet
from captioner.training.conversations import FrameSource, conversation, tokenize
from captioner.training.train import load_records, train_captioner

ROOT = Path(__file__).resolve().parents[1]


def test_vision_pretraining_teaches_the_tower_to_match_its_annotations_and_leaves_the_decoder(annotated, tmp_path):
    """CLIP-style pretraining on (key-frame, caption) and (fast grid, dense caption) pairs: the contrastive loss
    falls below chance and image->text retrieval on the pairs beats chance; only the vision side changes; the
    folder is a VLM the trainer starts from. The pairs are the images inference sends."""
    from captioner.training.vision_pretrain import (
        VisionPretrainConfig,
        annotation_pairs,
        pretrain_vision_tower,
    )

    root, ann = annotated
    recs = load_records(ann)
    images, texts = annotation_pairs(recs, "mini-fast")
    assert len(images) == len(texts) == 2 * len(recs)
    prompts, frames = PromptSet("compact"), FrameSource(load_captioner_config("mini-fast"))
    grid = conversation(recs[1], "fast", 0, prompts, frames)
    assert np.array_equal(images[3], grid.request.images[0]) and texts[3] == recs[1]["captions"]["dense"]
    assert texts[0] == recs[0]["keyframes"][0]["caption"]

    out = tmp_path / "pretrained"
    summary = pretrain_vision_tower(root / "untrained", recs, out, VisionPretrainConfig(steps=40, batch_size=12, lr=1e-4,
                                    warmup_steps=0), progress=False)
    assert summary["pairs"] == 12 and summary["loss_last"] < summary["loss_first"]
    dim = json.loads((root / "untrained" / "config.json").read_text())["text_config"]["hidden_size"]
    assert summary["embedding_inputs"] == summary["image_tokens"] * dim  # flattened: where a token sits counts
    assert summary["loss_last"] < summary["chance_loss"] and summary["retrieval_last_batch"] > 3 / 12
    before, after = load_file(root / "untrained" / "model.safetensors"), load_file(out / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("vision_tower" in k or "projector" in k for k in changed)
    assert any("vision_tower" in k for k in changed) and any("projector" in k for k in changed)
    # its processor is the one it started from: the text side's max_length leaves no truncation behind, so a
    # summary request (longer than max_text_tokens) is tokenised whole for training, as inference sends it
    summ = conversation(recs[0], "summary", 0, prompts, None)
    want = HFBackend(str(root / "untrained")).encode([summ.request])["input_ids"][0]
    assert len(want) > VisionPretrainConfig().max_text_tokens
    pre = HFBackend(str(out))
    assert torch.equal(pre.encode([summ.request])["input_ids"][0], want)
    eos = pre.processor.tokenizer.eos_token_id
    assert torch.equal(tokenize(summ, pre.processor, eos)["input_ids"][:len(want)], want)
    # the trainer starts from it
    cfg = train_cfg(root, ann, tmp_path / "run", f"model.path={out}", "data.modes.sliding=0", "data.modes.summary=0",
               "train.max_steps=2")
    assert train_captioner(cfg, progress=False)["steps"] == 2


def test_the_vision_bench_runs_both_towers_on_held_out_colour_trials(annotated, tmp_path):
    """bench/captioner_vision.py at toy size: each held-out trial is the detail caption with every colour, the
    true one among them once, and both towers (random, pretrained) are trained and scored."""
    sys.path.insert(0, str(ROOT / "bench"))
    import captioner_vision

    from captioner.training.vision_pretrain import VisionPretrainConfig, pretrain_vision_tower

    root, ann = annotated
    recs = load_records(ann)
    pretrain_vision_tower(root / "untrained", recs, tmp_path / "pre", VisionPretrainConfig(steps=2, batch_size=4),
                          progress=False)
    proc = HFBackend(str(root / "untrained"), device="cpu").processor
    conv = conversation(recs[0], "sliding", 0, PromptSet("compact"), FrameSource(load_captioner_config("mini-fast")))
    colour = recs[0]["meta"]["scene"]["objects"][0]["colour"]
    variants, truth = captioner_vision._colour_trial(conv, colour, proc, proc.tokenizer.eos_token_id)
    want = tokenize(conv, proc, proc.tokenizer.eos_token_id)["input_ids"]
    assert [torch.equal(v["input_ids"], want) for v in variants].count(True) == 1
    assert torch.equal(variants[truth]["input_ids"], want)
    out = tmp_path / "b.json"
    res = captioner_vision.main(["--annotations", str(ann), "--untrained", str(root / "untrained"), "--pretrained",
                                 str(tmp_path / "pre"), "--steps", "2", "--batch-size", "2", "--heldout", "2", "--probe-steps", "2",
                                 "--out", str(out)])
    assert json.loads(out.read_text())["heldout"] == 2 and set(res["runs"]) == {"random tower", "pretrained tower"}
    assert all(0 <= r["colour"] <= 1 and r["curve"][-1]["step"] == 2 for r in res["runs"].values())
    assert 0 <= res["supervised_random_tower"]["colour"] <= 1


def test_mean_pooling_still_pretrains_and_a_bad_pool_is_named(annotated, tmp_path):
    """pool="mean" (the tokens' mean as the image embedding) still trains: the loss falls and the folder saves;
    an unknown pool is refused by name before any step."""
    from captioner.training.vision_pretrain import VisionPretrainConfig, pretrain_vision_tower

    root, ann = annotated
    recs = load_records(ann)
    summary = pretrain_vision_tower(root / "untrained", recs, tmp_path / "mean", VisionPretrainConfig(
        steps=40, batch_size=12, warmup_steps=0, pool="mean"), progress=False)
    assert summary["config"]["pool"] == "mean" and summary["loss_last"] < summary["loss_first"]
    dim = json.loads((root / "untrained" / "config.json").read_text())["text_config"]["hidden_size"]
    assert summary["image_tokens"] > 1 and summary["embedding_inputs"] == dim
    assert (tmp_path / "mean" / "model.safetensors").is_file()
    with pytest.raises(ValueError, match="pool must be 'mean' or 'flatten', not 'max'"):
        pretrain_vision_tower(root / "untrained", recs, tmp_path / "bad", VisionPretrainConfig(steps=1, pool="max"),
                              progress=False)
    assert not (tmp_path / "bad").exists()


def test_mirrored_captions_swap_places_and_motions_and_nothing_else():
    from captioner.training.conversations import mirrored

    text = "A red square at the lower left pops up. Left of it, it moves upward, then down to the top-right corner."
    assert mirrored(text, "horizontal") == ("A red square at the lower right pops up. Right of it, it moves upward, "
                                            "then down to the top-left corner.")
    assert mirrored(text, "vertical") == ("A red square at the upper left pops up. Left of it, it moves downward, "
                                          "then up to the bottom-right corner.")
    assert mirrored("A blue circle in the centre.", "vertical") == "A blue circle in the centre."
    # "right" of "right from the start" (the oracle's "immediately") names no place
    assert mirrored("Right from the start, it moves right.", "horizontal") == "Right from the start, it moves left."


def test_hard_negatives_put_each_captions_mirrors_among_the_answers(annotated, tmp_path):
    """hard_negatives=True adds the mirrored captions as image->text negatives: the first step's loss is that of
    a threefold wider choice in its image->text half (log 36 vs log 12 at batch 12: +0.55 on the mean of both
    halves), and the run still learns."""
    from captioner.training.vision_pretrain import VisionPretrainConfig, pretrain_vision_tower

    root, ann = annotated
    recs = load_records(ann)
    runs = {hard: pretrain_vision_tower(root / "untrained", recs, tmp_path / str(hard), VisionPretrainConfig(
        steps=30, batch_size=12, warmup_steps=0, hard_negatives=hard), progress=False) for hard in (False, True)}
    assert runs[False]["hard_negatives"] == 0 and runs[True]["hard_negatives"] > runs[True]["captions"]
    assert runs[True]["loss_first"] > runs[False]["loss_first"] + 0.4
    assert runs[True]["loss_last"] < runs[True]["loss_first"]


def test_the_token_probe_reads_what_the_features_hold_and_not_what_they_do_not():
    """bench/captioner_probe.py's linear probe: a label written linearly into noisy features is read on held-out
    rows; a label independent of the features stays near chance; rows without a label are left out."""
    sys.path.insert(0, str(ROOT / "bench"))
    import captioner_probe

    g = torch.Generator().manual_seed(0)
    labels = [["up", "down", "left", "right"][int(i)] for i in torch.randint(0, 4, (600,), generator=g)]
    code = torch.randn(4, 64, generator=g)
    x = torch.stack([code[["up", "down", "left", "right"].index(y)] for y in labels]) + 2 * torch.randn(600, 64, generator=g)
    held = captioner_probe.linear_probe(x[:400], labels[:400], x[400:], labels[400:])
    assert held["heldout"] > 0.9 and held["n"] == 200
    noise = [["up", "down", "left", "right"][int(i)] for i in torch.randint(0, 4, (600,), generator=g)]
    blind = captioner_probe.linear_probe(x[:400], noise[:400], x[400:], noise[400:])
    assert blind["heldout"] < 0.45 and blind["train"] > blind["heldout"]
    partial = captioner_probe.linear_probe(x[:400], labels[:400], x[400:], [None] * 100 + labels[500:])
    assert partial["n"] == 100
    # the code's share of the variance: 64 * var(code) against 64 * (var(code) + 4) of the noise added, about 1/5
    share = captioner_probe.explained_variance(x, labels)
    assert 0.12 < share < 0.3 and captioner_probe.explained_variance(x, noise) < 0.02
    assert captioner_probe.explained_variance(x, labels[:300] + [None] * 300) == pytest.approx(
        captioner_probe.explained_variance(x[:300], labels[:300]))


def test_the_token_probe_bench_runs_on_annotations(annotated, tmp_path):
    """The bench end to end at toy size: the probed facts come from each record's scene, every model folder gets
    a probe per attribute, and the JSON is written."""
    sys.path.insert(0, str(ROOT / "bench"))
    import captioner_probe

    from synthworld.spec import region_of

    root, ann = annotated
    rec = load_records(ann)[0]
    obj = rec["meta"]["scene"]["objects"][0]
    facts = captioner_probe.attributes(rec)
    assert facts["region"] == region_of(obj["x"], obj["y"]) and facts["colour"] == obj["colour"]
    out = tmp_path / "probe.json"
    res = captioner_probe.main([str(root / "untrained"), "--annotations", str(ann), "--heldout-manifest", str(ann),
                                "--train", "6", "--steps", "5", "--out", str(out)])
    assert json.loads(out.read_text())["heldout"] == 6
    probes = res["probes"][str(root / "untrained")]
    assert set(probes) == set(captioner_probe.ATTRIBUTES)
    assert all(0 <= p["heldout"] <= 1 for p in probes.values())


def test_the_attention_bench_measures_each_decoder_layer(annotated, tmp_path):
    """bench/captioner_attention.py at toy size: one row per decoder layer, the image tokens' share of attention
    and its entropy over them normalised to (0, 1]."""
    sys.path.insert(0, str(ROOT / "bench"))
    import captioner_attention

    root, ann = annotated
    res = captioner_attention.main([str(root / "untrained"), "--annotations", str(ann), "--clips", "2",
                                    "--out", str(tmp_path / "a.json")])
    rows = res["models"][str(root / "untrained")]
    layers = json.loads((root / "untrained" / "config.json").read_text())["text_config"]["num_hidden_layers"]
    assert [r["layer"] for r in rows] == list(range(layers))
    assert all(0 < r["image_mass"] < 1 and 0 < r["entropy"] <= 1.0 for r in rows)
    # an untrained decoder (weights of std 0.02) attends almost evenly: normalised by log(image tokens), that
    # reads ~1.0 (by the sequence length, or by the wrong token count, it would not)
    assert all(r["entropy"] > 0.98 for r in rows)
    assert json.loads((tmp_path / "a.json").read_text())["clips"] == 2


def test_an_idefics3_miniature_gives_one_token_a_grid_and_pretrains_trains_and_captions(annotated, tmp_path):
    """The Idefics3 miniature (``family="idefics3"``): its pixel-shuffle connector hands the decoder one token per
    image holding all nine patches in slots of their own (a patch moved moves the token); vision pretraining changes
    only the tower and connector; the trainer batches sliding requests of one and two key-frames together (zero
    images padded in, as its processor pads them); the hf backend captions a clip with it in fast mode."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from captioner.run import run_captioner, tasks_from_manifest
    from captioner.training.miniature import build_miniature
    from captioner.training.vision_pretrain import (
        VisionPretrainConfig,
        image_inputs,
        image_tokens,
        pretrain_vision_tower,
    )

    root, ann = annotated
    recs = load_records(ann)
    from captioner.cli import main

    untrained = tmp_path / "untrained"
    assert main(["mini-vlm", "--annotations", str(ann), "--out", str(untrained), "--family", "idefics3"]) == 0
    assert json.loads((untrained / "config.json").read_text())["model_type"] == "idefics3"
    with pytest.raises(ValueError, match="family must be one of .* not 'qwen'"):
        build_miniature(tmp_path / "bad", recs, family="qwen")
    model = AutoModelForImageTextToText.from_pretrained(untrained).eval()
    proc = AutoProcessor.from_pretrained(untrained)
    grid = FrameSource(load_captioner_config("mini-fast")).grid(recs[0])[0]
    moved = grid.copy()
    moved[:48, :48] = moved[:48, :48][::-1]  # the first key-frame's cell alone, flipped
    with torch.no_grad():
        toks = image_tokens(model, image_inputs(proc, [grid, moved, grid]))
    assert toks.shape == (3, 1, model.config.text_config.hidden_size)
    assert torch.allclose(toks[0], toks[2]) and not torch.allclose(toks[0], toks[1], atol=1e-4)
    # the attention bench on it: one image token a grid, so there is no spread over tokens to measure (entropy 0)
    sys.path.insert(0, str(ROOT / "bench"))
    import captioner_attention

    rows = captioner_attention.main([str(untrained), "--annotations", str(ann), "--clips", "2",
                                     "--out", str(tmp_path / "a.json")])["models"][str(untrained)]
    assert all(0 < r["image_mass"] < 1 and r["entropy"] == 0 for r in rows)

    pre = tmp_path / "pretrained"
    summary = pretrain_vision_tower(untrained, recs, pre, VisionPretrainConfig(steps=20, batch_size=12, lr=1e-4,
                                    warmup_steps=0), progress=False)
    assert summary["image_tokens"] == 1 and summary["loss_last"] < summary["loss_first"]
    before, after = load_file(untrained / "model.safetensors"), load_file(pre / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any("vision_model" in k for k in changed) and any("connector" in k for k in changed)
    assert all("vision_model" in k or "connector" in k for k in changed)

    # a sliding batch of the first key-frame (one image) and the next (two): the one-image request is padded with a
    # zero image, which the model drops, so its logits are those it gets alone
    from captioner.training.conversations import collate

    prompts, frames = PromptSet("compact"), FrameSource(load_captioner_config("mini-fast"))
    eos = proc.tokenizer.eos_token_id
    one, two = (tokenize(conversation(recs[0], "sliding", k, prompts, frames), proc, eos) for k in (0, 1))
    assert one["pixel_values"].shape[1] == 1 and two["pixel_values"].shape[1] == 2
    batch = collate([one, two], proc.tokenizer.pad_token_id)
    assert batch["pixel_values"].shape[:2] == (2, 2) and not batch["pixel_values"][0, 1].any()
    with torch.no_grad():
        alone = model(**{k: v[None] if v.dim() == 1 else v for k, v in one.items() if k != "labels"}).logits[0]
        both = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0, :len(alone)]
    assert torch.allclose(alone, both, atol=1e-4)

    cfg = train_cfg(root, ann, tmp_path / "run", f"model.path={pre}", "data.modes.fast=0", "data.modes.summary=0",
                    "data.modes.recaption=0", "train.batch_size=8", "train.max_steps=3")
    assert train_captioner(cfg, progress=False)["steps"] == 3
    trained = load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert all(torch.equal(after[k], trained[k]) for k in after if "vision_model" in k)  # freeze_vision
    assert any(not torch.equal(after[k], trained[k]) for k in after if "connector" in k)

    out = tmp_path / "fast.jsonl"
    tasks = tasks_from_manifest(str(root / "clips" / "manifest.jsonl"), out)[:2]
    result = run_captioner(load_captioner_config("mini-fast", [f"backend.path={tmp_path / 'run' / 'model'}",
                                                               "backend.max_new_tokens=8"]), tasks, out, progress=False)
    assert result.ok == 2
    assert all(isinstance(r["captions"]["dense"], str) for r in load_records(out))


def test_the_region_trial_varies_only_the_start_region_of_the_first_sentence(annotated, tmp_path):
    """bench/captioner_region_trial.py: nine variants of the dense caption's first sentence, one per region,
    identical but for the region phrase, the true one among them as written; the blacked-out request has black
    images and the same text; the bench runs end to end and scores within [0, 1]."""
    sys.path.insert(0, str(ROOT / "bench"))
    import captioner_region_trial as rt

    from synthworld.spec import region_of

    root, ann = annotated
    rec = load_records(ann)[0]
    obj = rec["meta"]["scene"]["objects"][0]
    truth = region_of(obj["x"], obj["y"])
    conv = conversation(rec, "fast", 0, PromptSet("compact"), FrameSource(load_captioner_config("mini-fast")))
    variants = rt.region_variants(conv, truth)
    assert len(variants) == 9 and len({v.answer for v in variants}) == 9
    first = variants[rt.REGIONS.index(truth)].answer
    assert conv.answer.startswith(first) and first.endswith(".") and first.count(".") == 1
    from captioner.training.conversations import Conversation

    assert rt.region_variants(Conversation(conv.request, "A clip.", conv.mode, conv.record_id), truth) is None
    black = rt.blacked_out(conv.request)
    img = [p for m in black.messages if isinstance(m["content"], list) for p in m["content"] if p["type"] == "image"]
    assert img and all(not p["image"].any() for p in img)
    assert [p.get("text") for m in black.messages for p in (m["content"] if isinstance(m["content"], list) else [])] \
        == [p.get("text") for m in conv.request.messages for p in (m["content"] if isinstance(m["content"], list) else [])]
    res = rt.main([str(root / "untrained"), "--annotations", str(ann), "--clips", "2", "--out", str(tmp_path / "r.json")])
    row = res["models"][str(root / "untrained")]
    assert row["clips"] == 2 and 0 <= row["grid"] <= 1 and 0 <= row["black"] <= 1
    assert json.loads((tmp_path / "r.json").read_text())["chance"] == round(1 / 9, 3)


def test_the_seen_clips_bench_scores_training_and_held_out_clips_alike(annotated, tmp_path):
    """bench/captioner_seen_clips.py scores fast mode on a run's training and held-out clips; given the same
    clips as both, it must report the same scores for both, every one within [0, 1]."""
    sys.path.insert(0, str(ROOT / "bench"))
    import captioner_seen_clips as sc

    root, _ = annotated
    for name in ("train", "heldout"):
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / name).symlink_to(root / "clips")
    res = sc.main([str(tmp_path), "--model", str(root / "untrained"), "--clips", "2"])
    assert res["train"] == res["heldout"] and set(res["train"]) >= {"colour", "region", "direction", "events"}
    assert all(v is None or 0 <= v <= 1 for v in res["train"].values())
    assert json.loads((tmp_path / "seen-clips" / "seen_clips.json").read_text())["clips"] == 2
