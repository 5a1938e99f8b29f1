"""``captioner train``: the four modes' conversations are what inference sends, the loss is on the answer only,
the mode mix draws what it says, a run learns, resumes exactly, runs as LoRA and on 2 DDP processes, and
its output folder is what the ``hf`` backend loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from captioner.backends.hf import HFBackend
from captioner.config import build_backend, load_captioner_config
from captioner.diffsw import DiffSWCaptioner
from captioner.prompting import PromptSet
from captioner.run import run_captioner, tasks_from_manifest
from captioner.training.config import load_train_config
from captioner.training.conversations import (
    IGNORE_INDEX,
    FrameSource,
    collate,
    conversation,
    count_items,
    tokenize,
)
from captioner.training.data import AnnotationDataset, ModeMixSampler
from captioner.training.miniature import build_miniature
from captioner.training.train import load_records, train_captioner
from clipio.config import ConfigError
from synthworld.dataset import DEMO_WORLD, write_synth_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    """6 synthworld clips with oracle DiffSW annotations, and an untrained miniature fitted to them."""
    root = tmp_path_factory.mktemp("annotated")
    synth = write_synth_dataset(root / "clips", 6, seed=0, size=48, fps=8.0, seconds=4.0, world=DEMO_WORLD,
                                workers=1, progress=False)
    ann = root / "annotations.jsonl"
    run_captioner(load_captioner_config("oracle"), tasks_from_manifest(synth.manifest, ann), ann, progress=False)
    build_miniature(root / "untrained", load_records(ann))
    return root, ann


def _cfg(root: Path, ann: Path, out: Path, *extra: str):
    return load_train_config("mini", [f"data.manifest={ann}", f"model.path={root / 'untrained'}",
                                      f"train.output_dir={out}", "data.val_clips=1", "train.batch_size=4",
                                      "train.log_every=1", "train.val_every=0", "train.checkpoint_every=0",
                                      "train.val_max_new_tokens=8", *extra])


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
    cfg = _cfg(root, one, tmp_path / "run", "data.modes.fast=0", "data.modes.sliding=0", "data.modes.summary=0",
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
    straight = train_captioner(_cfg(root, ann, tmp_path / "a", "train.max_steps=6", *common), progress=False)
    train_captioner(_cfg(root, ann, tmp_path / "b", "train.max_steps=4", *common), progress=False)
    resumed = train_captioner(_cfg(root, ann, tmp_path / "b", "train.max_steps=6", *common), progress=False)
    assert straight["steps"] == resumed["steps"] == 6 and resumed["steps_this_run"] == 2
    a, b = (load_file(str(tmp_path / x / "model" / "model.safetensors")) for x in ("a", "b"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    # LoRA: fewer trainable weights, an adapter folder, a merged model folder of the base's shape (data from a
    # spawned worker process)
    lora = train_captioner(_cfg(root, ann, tmp_path / "lora", "train.max_steps=2", "model.lora.r=4",
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
    train_captioner(_cfg(root, ann, tmp_path / "run", "train.max_steps=1", f"data.val_manifest={val}",
                         "data.modes.sliding=0"), progress=False)
    answers = [json.loads(ln) for ln in (tmp_path / "run" / "validation" / "step-000001.jsonl").read_text().splitlines()]
    assert {a["id"] for a in answers} == {held["id"]} and {a["mode"] for a in answers} == {
        "fast", "sliding", "summary", "recaption"}


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
    cfg = _cfg(root, ann, tmp_path / "run", f"model.path={out}", "data.modes.sliding=0", "data.modes.summary=0",
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


def test_the_projector_can_be_frozen_or_trained_at_its_own_lr(annotated, tmp_path):
    """model.freeze_projector keeps LLaVA's multi_modal_projector as it was (with freeze_vision: the whole vision
    side), train.projector_lr moves it at its own rate while the language model trains at train.lr."""
    root, ann = annotated
    common = ["train.max_steps=2", "train.lr_scheduler=constant", "train.warmup_steps=0", "data.modes.sliding=0",
              "data.modes.summary=0", "model.freeze_vision=true", "train.lr=1e-3"]
    base = load_file(str(root / "untrained" / "model.safetensors"))

    def moved(run: str, *extra: str) -> dict[str, float]:
        train_captioner(_cfg(root, ann, tmp_path / run, *common, *extra), progress=False)
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


def test_the_attention_bench_measures_each_decoder_layer(annotated, tmp_path):
    """bench/captioner_attention.py at toy size: one row per decoder layer, the image tokens' share of attention
    and its normalised entropy within (0, 1]."""
    sys.path.insert(0, str(ROOT / "bench"))
    import captioner_attention

    root, ann = annotated
    res = captioner_attention.main([str(root / "untrained"), "--annotations", str(ann), "--clips", "2",
                                    "--out", str(tmp_path / "a.json")])
    rows = res["models"][str(root / "untrained")]
    layers = json.loads((root / "untrained" / "config.json").read_text())["text_config"]["num_hidden_layers"]
    assert [r["layer"] for r in rows] == list(range(layers))
    assert all(0 < r["image_mass"] < 1 and 0 < r["entropy"] <= 1.0 for r in rows)
    assert json.loads((tmp_path / "a.json").read_text())["clips"] == 2
