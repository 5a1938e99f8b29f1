"""The miniature ShareCaptioner-Video: a small LLaVA built offline and trained from scratch on oracle DiffSW
annotations of synthworld clips, then measured against the clips' ground truth.

    synthworld clips (train + held out) → ``captioner run`` (oracle, DiffSW) → annotations
    → build the miniature (CLIP vision tower + Llama decoder from configs; a BPE tokenizer fitted to the
      annotations and prompts) → ``captioner train`` (preset ``mini``) → evaluate on the held-out clips:
      oracle (ceiling), untrained miniature (floor), learned fast mode, learned DiffSW mode

``make captioner`` runs it (``captioner miniature --out runs/captioner``); every step is skipped when its
output exists, so an interrupted run resumes (training from its last checkpoint).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Nine visual tokens per image (96 px, patch 32): one per cell of the fast mode's 3x3 grid, one per 3x3 region
# of a single key-frame (where synthworld places its shapes), so the decoder need not find the one token holding
# a small shape among 64 (patch 12). Neither has taught it to read the shape yet: 1084 steps with 64 tokens gave
# colour 0.16, 3552 with 9 gave 0.14 (chance 0.12); docs/captioner-training.md. Captions are ~80 tokens.
MINI_TEXT = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=4, max_position_embeddings=1024, initializer_range=0.02)
MINI_VISION = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                   image_size=96, patch_size=32, projection_dim=128, initializer_range=0.02)
MINI_VOCAB = 1024
FAST_PRESET, DIFFSW_PRESET, TRAIN_PRESET = "mini-fast", "mini-diffsw", "mini"
FAMILIES = ("llava", "idefics3")
# vision pretraining's rate per family: Idefics3's SigLIP-style tower (no pre-norm, no CLS) at 1e-3 ends at loss 1.78,
# at 3e-4 at 0.47 (chance 5.55); the CLIP tower of the LLaVA at 1e-3 at 0.71 (docs/captioner-training.md)
PRETRAIN_LR = {"llava": 1e-3, "idefics3": 3e-4}
TRAIN_SEED, HELDOUT_SEED = 2, 1  # synthworld dataset seeds (the T2V runs use 0)


def annotation_texts(records: list[dict[str, Any]]) -> list[str]:
    """Every caption of the records (key-frame, dense, short): the text the tokenizer is fitted to."""
    out = []
    for r in records:
        out += [k["caption"] for k in r.get("keyframes") or [] if k.get("caption")]
        out += [c for c in (r.get("captions") or {}).values() if isinstance(c, str)]
    return out


def build_miniature(out: str | Path, records: list[dict[str, Any]], prompts_folder: str | None = "compact",
                    seed: int = 0, family: str = "llava") -> Path:
    """The untrained miniature ShareCaptioner in ``out`` (a ``from_pretrained`` folder), its tokenizer fitted to
    the records' captions and the prompt set's text. ``family``: ``llava`` (nine visual tokens an image, one a
    patch) or ``idefics3`` (the same tower's nine patches concatenated into one token by a pixel-shuffle
    connector, as SmolVLM does)."""
    from captioner.backends.tiny_vlm import build_idefics3, build_llava, fit_tokenizer
    from captioner.prompting import PromptSet

    if family not in FAMILIES:
        raise ValueError(f"miniature family must be one of {FAMILIES}, not {family!r}")
    prompts = PromptSet(prompts_folder)
    corpus = annotation_texts(records) + [p.system + "\n" + p.user for p in prompts.prompts.values()]
    tokenizer = fit_tokenizer(corpus, vocab_size=MINI_VOCAB)
    if family == "idefics3":
        side = MINI_VISION["image_size"] // MINI_VISION["patch_size"]
        return build_idefics3(out, tokenizer, MINI_TEXT, MINI_VISION, scale_factor=side, seed=seed)
    return build_llava(out, tokenizer, MINI_TEXT, MINI_VISION, seed=seed, feature_layer=-1)


def run_miniature(out: str | Path = "runs/captioner", num_clips: int = 2000, num_heldout: int = 100,
                  overrides: list[str] | None = None, workers: int = 0, family: str = "llava") -> Path:
    """The whole stage; returns the report's markdown path. ``family``: the miniature's VLM (``build_miniature``)."""
    from captioner.config import load_captioner_config
    from captioner.run import run_captioner, tasks_from_manifest
    from captioner.training.config import load_train_config
    from captioner.training.evaluate import (
        evaluate,
        evaluate_first_keyframe,
        evaluate_recaption,
        write_report,
    )
    from captioner.training.train import load_records, train_captioner
    from captioner.training.vision_pretrain import VisionPretrainConfig, pretrain_vision_tower
    from synthworld.dataset import DEMO_WORLD, write_synth_dataset

    out = Path(out)
    # a rerun that finds a stage done keeps the time its first run took (times.json is the stage's cost)
    times_path = out / "times.json"
    times: dict[str, float] = json.loads(times_path.read_text()) if times_path.is_file() else {}

    def stamp(name: str, since: float, ran: bool) -> None:
        if ran or name not in times:
            times[name] = round(time.time() - since, 1)
        log.info("captioner miniature: %s done in %.0f s", name, time.time() - since)

    # 1. clips and their oracle DiffSW annotations (the GPT-4V role). Seeds: 2 for its training clips, 1 for the
    # held-out ones; the T2V runs (demo, experiment) use seed 0, so a captioner made here captions their clips
    # without having been trained on them (as ShareCaptioner-Video labels clips GPT-4V never saw)
    s = time.time()
    oracle = load_captioner_config("oracle")
    sets = {}
    for name, n, seed in (("train", num_clips, TRAIN_SEED), ("heldout", num_heldout, HELDOUT_SEED)):
        synth = write_synth_dataset(out / "data" / name, n, seed=seed, size=48, fps=8.0, seconds=4.0,
                                    world=DEMO_WORLD, workers=workers)
        sets[name] = synth.manifest
    annotations = out / "data" / "annotations.jsonl"
    annotated = run_captioner(oracle, tasks_from_manifest(sets["train"], annotations), annotations)
    stamp("clips+annotations", s, ran=annotated.ok + annotated.error > 0)

    # 2. the untrained miniature (the floor), then its vision tower pretrained on the annotations (CLIP-style;
    # the decoder alone cannot teach a random tower to see: docs/captioner-training.md)
    s = time.time()
    untrained, pretrained = out / "untrained", out / "pretrained"
    ran = not (pretrained / "config.json").is_file()
    if not (untrained / "config.json").is_file():
        build_miniature(untrained, load_records(annotations), family=family)
    if not (pretrained / "config.json").is_file():
        pretrain_vision_tower(untrained, load_records(annotations), pretrained,
                              VisionPretrainConfig(lr=PRETRAIN_LR[family]), captioner=FAST_PRESET)
    stamp("vision pretraining", s, ran)

    # 3. training
    s = time.time()
    tcfg = load_train_config(TRAIN_PRESET, [f"data.manifest={annotations}", f"model.path={pretrained}",
                                            f"train.output_dir={out / 'train'}", *(overrides or [])])
    model = Path(tcfg.train.output_dir) / "model"
    ran = not (model / "config.json").is_file()
    if ran:
        summary = train_captioner(tcfg)
        log.info("trained: %s", summary)
    stamp("train", s, ran)

    # 4. measured on the held-out clips against their truth
    s = time.time()
    ev = out / "eval"
    ran = not (ev / "captioner_eval.json").is_file()
    heldout_tasks = tasks_from_manifest(sets["heldout"], ev / "x.jsonl")
    runs = [("oracle (ceiling)", oracle),
            ("untrained fast (floor)", load_captioner_config(FAST_PRESET, [f"backend.path={untrained}"])),
            ("learned fast", load_captioner_config(FAST_PRESET, [f"backend.path={model}"])),
            ("learned DiffSW", load_captioner_config(DIFFSW_PRESET, [f"backend.path={model}"]))]
    results = [evaluate(_slug(name), cfg, heldout_tasks, ev) | {"name": name} for name, cfg in runs]
    # DiffSW read at its first step (the detail caption of the first key-frame): does it see the first frame?
    results.append(evaluate_first_keyframe("learned-diffsw-first-keyframe", ev / f"{_slug(runs[3][0])}.jsonl", ev,
                                           ids=[t.id for t in heldout_tasks],
                                           scenes={t.id: t.meta["scene"] for t in heldout_tasks})
                   | {"name": "learned DiffSW, first key-frame"})
    # re-caption mode on the oracle's short captions of the same clips (what `t2v generate --recaption` does)
    results.append(evaluate_recaption("learned-recaption", runs[2][1], ev / "oracle.jsonl", ev,
                                      ids=[t.id for t in heldout_tasks]) | {"name": "learned re-caption (short)"})
    stamp("eval", s, ran)
    report = write_report(results, ev)
    times_path.write_text(json.dumps(times, indent=1))
    return report


def _slug(name: str) -> str:
    return name.split(" (")[0].replace(" ", "-").lower()
