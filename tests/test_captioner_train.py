"""``captioner train``: the four modes' conversations are what inference sends, the loss is on the answer only,
the mode mix draws what it says, a run learns, resumes exactly, runs as LoRA and on 2 DDP processes, freezes
or slows the projector, and its output folder is what the ``hf`` backend loads. (The vision side — tower
pretraining and the benches that look into the tokens — is tests/test_captioner_vision.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import train_cfg
from safetensors.torch import load_file

from captioner.backends.hf import HFBackend
from captioner.config import build_backend, load_captioner_config
from captioner.diffsw import DiffSWCaptioner
from captioner.prompting import PromptSet
from captioner.run import tasks_from_manifest
from captioner.training.config import load_train_config
from captioner.training.conversations import (
    IGNORE_INDEX,
    FrameSource,
    collate,
    conversation,
    count_items,
    mirrored,
    tokenize,
    weighted_loss,
)
from captioner.training.data import AnnotationDataset, ModeMixSampler
from captioner.training.train import load_records, train_captioner
from clipio.config import ConfigError
from synthworld.score.caption_parse import parse_dense

ROOT = Path(__file__).resolve().parents[1]


def test_conversations_are_the_requests_inference_sends(annotated):
    root, ann = annotated
    rec = load_records(ann)[0]
    ccfg = load_captioner_config("mini-fast", [f"backend.path={root / 'untrained'}"])
    prompts, frames = PromptSet(ccfg.run.prompts), FrameSource(ccfg)
    n_kf = len(rec["keyframes"])
    assert [count_items(rec, m) for m in ("fast", "sliding", "summary", "recaption")] == [2, n_kf, 2, 1]
    # fast: the grid and prompt `captioner run --mode fast` builds for this clip
    cap = DiffSWCaptioner(ccfg, backend=None)
    job = cap.extract(tasks_from_manifest(ann, root / "x.jsonl")[0])
    (want,) = cap._requests(job)
    got = conversation(rec, "fast", 0, prompts, frames)
    assert got.request.text == want.text and got.answer == rec["captions"]["dense"]
    assert np.array_equal(got.request.images[0], want.images[0])
    # sliding step 3: key-frames 2 and 3, their times, the previous caption -> the differential caption
    kfs = rec["keyframes"]
    diff = conversation(rec, "sliding", 3, prompts, frames)
    assert diff.request.task == "diff" and diff.answer == kfs[3]["caption"]
    assert kfs[2]["caption"] in diff.request.text and f"{kfs[3]['t']}s" in diff.request.text
    assert len(diff.request.images) == 2 and conversation(rec, "sliding", 0, prompts, frames).request.task == "detail"
    summ = conversation(rec, "summary", 0, prompts, frames)
    assert not summ.request.images and all(k["caption"] in summ.request.text for k in kfs)
    rc = conversation(rec, "recaption", 0, prompts, frames)
    assert rec["captions"]["short"] in rc.request.text and rc.answer == rec["captions"]["dense"]


def test_loss_is_on_the_answer_and_eos_only_and_the_prompt_matches_inference(annotated):
    root, ann = annotated
    rec = load_records(ann)[0]
    backend = HFBackend(str(root / "untrained"))
    ccfg = load_captioner_config("mini-fast", [f"backend.path={root / 'untrained'}"])
    conv = conversation(rec, "sliding", 2, PromptSet(ccfg.run.prompts), FrameSource(ccfg))
    tok = backend.processor.tokenizer
    ex = tokenize(conv, backend.processor, tok.eos_token_id, prepare_image=backend.prepare_image)
    prompt_ids = backend.encode([conv.request])["input_ids"][0].tolist()
    n = len(prompt_ids)
    assert ex["input_ids"][:n].tolist() == prompt_ids  # what generate() continues from
    assert (ex["labels"][:n] == IGNORE_INDEX).all() and (ex["labels"][n:] != IGNORE_INDEX).all()
    assert ex["labels"][-1] == tok.eos_token_id
    assert tok.decode(ex["labels"][n:-1]).strip() == conv.answer
    assert torch.equal(ex["pixel_values"], backend.encode([conv.request])["pixel_values"])
    # a batch pads on the right with pad / mask 0 / -100, and keeps every image
    other = tokenize(conversation(rec, "recaption", 0, PromptSet("compact"), None), backend.processor,
                     tok.eos_token_id)
    batch = collate([ex, other], tok.pad_token_id)
    short = len(other["input_ids"])
    assert batch["input_ids"].shape == (2, max(len(ex["input_ids"]), short))
    assert (batch["labels"][1, short:] == IGNORE_INDEX).all() and (batch["attention_mask"][1, short:] == 0).all()
    assert batch["pixel_values"].shape[0] == 2


def test_a_prompt_is_never_cut_even_by_a_tokenizer_saved_with_truncation(annotated, tmp_path):
    """A fast tokenizer called once with truncation=True, max_length=16 saves that truncation into
    tokenizer.json; training and inference of a folder saved so must still see every prompt whole."""
    from transformers import AutoProcessor

    root, ann = annotated
    proc = AutoProcessor.from_pretrained(root / "untrained")
    proc.tokenizer(["a long text " * 20], truncation=True, max_length=16)
    proc.save_pretrained(tmp_path / "cut")
    assert json.loads((tmp_path / "cut" / "tokenizer.json").read_text())["truncation"]["max_length"] == 16
    rec = load_records(ann)[0]
    summ = conversation(rec, "summary", 0, PromptSet("compact"), None)
    whole = len(proc(text=[summ.request.text], truncation=False)["input_ids"][0])
    reloaded = AutoProcessor.from_pretrained(tmp_path / "cut")
    ex = tokenize(summ, reloaded, reloaded.tokenizer.eos_token_id)
    assert int((ex["labels"] == IGNORE_INDEX).sum()) > 16
    untouched = tokenize(summ, AutoProcessor.from_pretrained(root / "untrained"), reloaded.tokenizer.eos_token_id)
    assert torch.equal(ex["input_ids"], untouched["input_ids"]) and whole > 16


def test_mode_mix_draws_what_the_weights_say(annotated):
    root, ann = annotated
    records = load_records(ann)
    ccfg = load_captioner_config("mini-fast")
    ds = AnnotationDataset(records, ("fast", "sliding", "recaption"), PromptSet("compact"), FrameSource(ccfg),
                           None, 0, 512)
    counts = ds.counts()
    s = ModeMixSampler(ds, {"fast": 2.0, "sliding": 0.25, "recaption": 1.0})
    drawn = [i for b in s for i in b]
    got = {m: sum(ds.mode_of(i) == m for i in drawn) for m in counts}
    assert got == {"fast": 2 * counts["fast"], "sliding": round(0.25 * counts["sliding"]),
                   "recaption": counts["recaption"]}
    assert len(drawn) == len(s) and [i for b in s for i in b] == drawn
    s.set_epoch(1)
    assert [i for b in s for i in b] != drawn
    # batches of one mode each (a mode's last partial batch dropped), modes interleaved
    s4 = ModeMixSampler(ds, {"fast": 2.0, "sliding": 0.25, "recaption": 1.0}, batch_size=4)
    batches = list(s4)
    assert all(len(b) == 4 and len({ds.mode_of(i) for i in b}) == 1 for b in batches)
    assert len(batches) == len(s4) == sum(n // 4 for n in got.values())
    assert [ds.mode_of(b[0]) for b in batches] != sorted(ds.mode_of(b[0]) for b in batches)


def test_a_mirrored_conversation_is_what_the_annotator_says_of_the_flipped_clip(annotated):
    """data.hflip's premise: a clip flipped left to right is described by its captions mirrored. The oracle
    annotator reads pixels, so it is asked the mirrored requests (flipped key-frames, mirrored previous
    captions) and must answer the mirrored annotations."""
    root, ann = annotated
    records = load_records(ann)
    ccfg = load_captioner_config("mini-fast")
    prompts, frames = PromptSet(ccfg.run.prompts), FrameSource(ccfg)
    oracle = build_backend(load_captioner_config("oracle").backend)
    changed = 0
    for rec in records:
        kf0 = rec["keyframes"][0]["caption"]
        for mode, k in (("fast", 0), ("sliding", 0), ("sliding", 3)):
            plain, mirror = (conversation(rec, mode, k, prompts, frames, mirror=m) for m in (False, True))
            assert mirror.answer == mirrored(plain.answer, "horizontal")
            assert not np.array_equal(plain.request.images[0], mirror.request.images[0])
            said, said_mirrored = oracle.generate([plain.request, mirror.request])

            def read(caption: str, first: str, after_first: bool = mode == "sliding" and k > 0) -> object:
                """What a caption says (the oracle words a scene by a draw of its own); a later key-frame's
                caption is read after the first one's, which places the object."""
                return parse_dense(f"{first} {caption}" if after_first else caption)

            if mode == "sliding":  # the annotation is the oracle's answer to this very request
                assert read(said, kf0) == read(plain.answer, kf0)
            got = read(said_mirrored, mirrored(kf0, "horizontal"))
            assert got == read(mirrored(said, "horizontal"), mirrored(kf0, "horizontal")), (said, said_mirrored)
            changed += got != read(said, kf0)
    # the sampler draws a mirrored conversation as index len(dataset) + i, in the share it is asked for
    ds = AnnotationDataset(records, ("fast", "sliding"), prompts, frames, None, 0, 512)
    drawn = [i for b in ModeMixSampler(ds, {"fast": 4.0, "sliding": 1.0}, hflip=0.5) for i in b]
    share = sum(i >= len(ds) for i in drawn) / len(drawn)
    assert 0.4 < share < 0.6 and all(i < 2 * len(ds) for i in drawn)
    j = next(i for i in drawn if i >= len(ds) and ds.mode_of(i) == "fast")
    assert ds.conversation(j).answer == mirrored(ds.conversation(j - len(ds)).answer, "horizontal")
    assert [i for b in ModeMixSampler(ds, {"fast": 4.0, "sliding": 1.0}) for i in b if i >= len(ds)] == []
    with pytest.raises(ValueError, match="hflip"):
        ModeMixSampler(ds, {"fast": 1.0}, hflip=1.5)


def test_emphasis_weighs_the_matched_answer_words_and_only_them(annotated):
    """``data.emphasis``: the answer tokens of the matched words carry the weight, the prompt none, the rest 1;
    the loss is the weighted mean of the per-token losses, and with every weight 1 it is the model's own."""
    from transformers import AutoModelForImageTextToText

    root, ann = annotated
    rec = load_records(ann)[0]
    backend = HFBackend(str(root / "untrained"))
    tok = backend.processor.tokenizer
    ccfg = load_captioner_config("mini-fast", [f"backend.path={root / 'untrained'}"])
    conv = conversation(rec, "fast", 0, PromptSet(ccfg.run.prompts), FrameSource(ccfg))
    cfg = load_train_config("mini", ["data.emphasis=[left, right, upper, lower, 'up(ward)?', 'down(ward)?']",
                                     "data.emphasis_weight=4"])
    ex = tokenize(conv, backend.processor, tok.eos_token_id, prepare_image=backend.prepare_image,
                  emphasis=cfg.data.emphasis_pattern())
    plain = tokenize(conv, backend.processor, tok.eos_token_id, prepare_image=backend.prepare_image)
    assert torch.equal(ex["input_ids"], plain["input_ids"]) and "loss_weights" not in plain
    w, answer = ex["loss_weights"], ex["labels"] != IGNORE_INDEX
    assert (w[~answer] == 0).all() and set(w[answer].tolist()) == {1.0, 4.0}
    heavy = tok.decode(ex["input_ids"][w == 4]).lower()
    light = tok.decode(ex["input_ids"][answer & (w == 1)]).lower()
    assert any(x in heavy for x in ("left", "right", "up", "down"))
    assert not any(x in light for x in ("left", "right", "upper", "lower"))  # every matched word is weighted
    model = AutoModelForImageTextToText.from_pretrained(root / "untrained")
    batch = collate([ex, tokenize(conversation(rec, "recaption", 0, PromptSet("compact"), None), backend.processor,
                                  tok.eos_token_id, emphasis=cfg.data.emphasis_pattern())], tok.pad_token_id)
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k not in ("labels", "loss_weights")}).logits[:, :-1]
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch["labels"][:, 1:],
                                               ignore_index=IGNORE_INDEX, reduction="none")
        wt = batch["loss_weights"][:, 1:]
        assert torch.isclose(weighted_loss(model, batch), (ce * wt).sum() / wt.sum(), rtol=1e-4)
        ones = dict(batch, loss_weights=(batch["labels"] != IGNORE_INDEX).float())
        no_w = {k: v for k, v in batch.items() if k != "loss_weights"}
        assert torch.isclose(weighted_loss(model, ones), model(**no_w).loss, rtol=1e-4)
        assert not torch.isclose(weighted_loss(model, batch), model(**no_w).loss, rtol=1e-4)
    with pytest.raises(ConfigError, match=r"data.emphasis\[1\]"):
        load_train_config("mini", ["data.emphasis=[left, '(up']"])
    with pytest.raises(ConfigError, match=r"data.emphasis\[0\]"):  # compiles alone, not joined with the others
        load_train_config("mini", ["data.emphasis=['(?i)left', right]"])


def test_config_is_strict():
    with pytest.raises(ConfigError, match="data.modes.fats"):
        load_train_config("mini", ["data.modes.fats=1"])
    with pytest.raises(ConfigError, match="data.modes"):
        load_train_config("mini", ["data.modes.fast=0", "data.modes.sliding=0", "data.modes.summary=0",
                                   "data.modes.recaption=0"])
    assert load_train_config("qwen2.5-vl-7b-lora").model.lora.r == 64


def test_a_run_learns_and_its_folder_is_what_the_hf_backend_loads(annotated, tmp_path):
    """Re-caption mode only, one record: 60 steps memorise its dense caption, which the exported folder then
    writes through the captioner's own re-caption path."""
    from captioner.modes import recaption

    root, ann = annotated
    one = tmp_path / "one.jsonl"
    recs = load_records(ann)
    one.write_text("".join(json.dumps(r) + "\n" for r in recs[:2]))  # load_records made the videos absolute
    cfg = train_cfg(root, one, tmp_path / "run", "data.modes.fast=0", "data.modes.sliding=0", "data.modes.summary=0",
               "data.modes.recaption=8", "train.max_steps=60", "train.lr=3e-3", "train.lr_scheduler=constant",
               "train.warmup_steps=0", f"data.manifest={one}")
    summary = train_captioner(cfg, progress=False)
    assert summary["steps"] == 60 and summary["final_loss"] < 0.1
    assert (tmp_path / "run" / "validation" / "step-000060.jsonl").is_file()
    # the folder names its own captioner config (what `t2v generate --recaption DIR` loads)
    ccfg = load_captioner_config(tmp_path / "run" / "model", ["backend.max_new_tokens=160"])
    assert ccfg.backend.path == str(tmp_path / "run" / "model") and ccfg.run.prompts == "compact"
    backend = build_backend(ccfg.backend)
    (dense,) = recaption([recs[0]["captions"]["short"]], backend, prompts=PromptSet(ccfg.run.prompts))
    assert dense == recs[0]["captions"]["dense"]


def test_a_killed_run_resumes_exactly_and_lora_merges(annotated, tmp_path):
    root, ann = annotated
    # 3 batches per epoch (fast 10 -> 2, recaption 5 -> 1): 6 steps straight, or 4, killed, and resumed to 6
    # in the middle of the second epoch (its draw, its position)
    common = ["train.lr_scheduler=constant", "train.warmup_steps=0", "data.modes.sliding=0", "data.modes.summary=0"]
    straight = train_captioner(train_cfg(root, ann, tmp_path / "a", "train.max_steps=6", *common), progress=False)
    train_captioner(train_cfg(root, ann, tmp_path / "b", "train.max_steps=4", *common), progress=False)
    resumed = train_captioner(train_cfg(root, ann, tmp_path / "b", "train.max_steps=6", *common), progress=False)
    assert straight["steps"] == resumed["steps"] == 6 and resumed["steps_this_run"] == 2
    a, b = (load_file(str(tmp_path / x / "model" / "model.safetensors")) for x in ("a", "b"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    # LoRA: fewer trainable weights, an adapter folder, a merged model folder of the base's shape (data from a
    # spawned worker process)
    lora = train_captioner(train_cfg(root, ann, tmp_path / "lora", "train.max_steps=2", "model.lora.r=4",
                                "model.freeze_vision=true", "data.num_workers=1", *common), progress=False)
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").is_file()
    merged = load_file(str(tmp_path / "lora" / "model" / "model.safetensors"))
    assert merged.keys() == a.keys() and lora["steps"] == 2
    base = load_file(str(root / "untrained" / "model.safetensors"))
    vision = [k for k in base if "vision_tower" in k]
    assert vision and all(torch.equal(base[k], merged[k]) for k in vision)
    assert any(not torch.equal(base[k], merged[k]) for k in base if "language_model" in k and "proj" in k)


def test_two_ddp_processes_train_as_one(annotated, tmp_path):
    root, ann = annotated
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    ov = [f"data.manifest={ann}", f"model.path={root / 'untrained'}", f"train.output_dir={tmp_path / 'ddp'}",
          "data.val_clips=1", "train.batch_size=2", "train.max_steps=3", "train.val_every=0",
          "train.val_max_new_tokens=8", "data.modes.sliding=0.2"]
    # the shipped launch config, as users launch it, on 2 CPU processes instead of 8 GPUs
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file",
           str(ROOT / "configs/accelerate/multi_gpu.yaml"), "--num_processes", "2", "--mixed_precision", "no",
           "--main_process_port", "29533", "-m", "captioner.cli", "train", "mini", *ov]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 3
    assert (tmp_path / "ddp" / "model" / "config.json").is_file()


def test_a_validation_manifest_in_another_folder_finds_its_videos(annotated, tmp_path):
    """Its relative video paths are relative to its own folder, not to the training manifest's."""
    root, ann = annotated
    held = json.loads(ann.read_text().splitlines()[-1])
    val = tmp_path / "elsewhere" / "val.jsonl"
    val.parent.mkdir()
    video = os.path.relpath(root / held["video"], val.parent)  # the annotations name it relative to root
    val.write_text(json.dumps({**held, "video": video}) + "\n")
    train_captioner(train_cfg(root, ann, tmp_path / "run", "train.max_steps=1", f"data.val_manifest={val}",
                         "data.modes.sliding=0"), progress=False)
    answers = [json.loads(ln) for ln in (tmp_path / "run" / "validation" / "step-000001.jsonl").read_text().splitlines()]
    assert {a["id"] for a in answers} == {held["id"]} and {a["mode"] for a in answers} == {
        "fast", "sliding", "summary", "recaption"}


def test_the_projector_can_be_frozen_or_trained_at_its_own_lr(annotated, tmp_path):
    """model.freeze_projector keeps LLaVA's multi_modal_projector as it was (with freeze_vision: the whole vision
    side), train.projector_lr moves it at its own rate while the language model trains at train.lr."""
    root, ann = annotated
    common = ["train.max_steps=2", "train.lr_scheduler=constant", "train.warmup_steps=0", "data.modes.sliding=0",
              "data.modes.summary=0", "model.freeze_vision=true", "train.lr=1e-3"]
    base = load_file(str(root / "untrained" / "model.safetensors"))

    def moved(run: str, *extra: str) -> dict[str, float]:
        train_captioner(train_cfg(root, ann, tmp_path / run, *common, *extra), progress=False)
        after = load_file(str(tmp_path / run / "model" / "model.safetensors"))
        out = {"vision": 0.0, "projector": 0.0, "language": 0.0}
        for k, v in base.items():
            part = "projector" if "projector" in k else "vision" if "vision_tower" in k else "language"
            out[part] = max(out[part], float((after[k] - v).abs().max()))
        return out

    frozen = moved("frozen", "model.freeze_projector=true")
    assert frozen["vision"] == 0 and frozen["projector"] == 0 and frozen["language"] > 1e-4
    slow, default = moved("slow", "train.projector_lr=1e-8"), moved("default")
    assert slow["projector"] < 1e-6 < 1e-4 < default["projector"] and slow["language"] > 1e-4
    with pytest.raises(ConfigError, match="train.projector_lr"):
        load_train_config("mini", ["data.manifest=x", "model.path=y", "train.projector_lr=0"])
