"""Does the miniature ShareCaptioner's decoder learn to read the image? Random vs pretrained vision tower.

The simplest visual request alone — one key-frame in, its detail caption out ("At 0.0s, a small red square
at the upper left …") — trained through the real conversations, tokeniser and LLaVA forward, from the
untrained miniature (a random vision tower) and from the one whose tower was pretrained on the annotations
(``captioner/training/vision_pretrain.py``), same steps, same batches. Scored on held-out records by
teacher forcing: the caption with its colour word swapped for each of the eight colours, the model's most
likely one counts as its answer (chance 1/8). Next to them, the random tower trained directly on colour
labels (a linear head on its tokens): whether it can see colour at all when the signal reaches it.

    make captioner   # the annotations and both model folders
    python bench/captioner_vision.py [--steps 400] --out runs/bench/captioner_vision.json
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch
from tqdm import tqdm

from captioner.config import load_captioner_config
from captioner.prompting import PromptSet
from captioner.training.conversations import (
    Conversation,
    FrameSource,
    answer_eos_id,
    collate,
    conversation,
    most_likely,
    tokenize,
)
from captioner.training.train import load_records
from synthworld.spec import COLOURS


def _colour_trial(conv: Conversation, colour: str, processor, eos: int) -> tuple[list[dict], int]:
    """The detail conversation with its colour word set to each colour in turn, and the true one's index."""
    names = list(COLOURS)
    variants = [tokenize(Conversation(conv.request, re.sub(rf"\b{colour}\b", c, conv.answer), conv.mode,
                                      conv.record_id), processor, eos) for c in names]
    return variants, names.index(colour)


@torch.no_grad()
def colour_accuracy(model, trials, pad: int) -> float:
    model.eval()
    hits = 0
    for variants, truth in trials:
        hits += most_likely(model, variants, pad) == truth
    model.train()
    return hits / len(trials)


def run(folder: Path, train, trials, steps: int, batch: int, lr: float, seed: int, pad: int) -> dict:
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(folder)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    curve, t0 = [], time.time()
    for step in tqdm(range(1, steps + 1), desc=f"detail request ({folder.name})", unit="step"):
        idx = torch.randint(0, len(train), (batch,), generator=gen).tolist()
        loss = model(**collate([train[i] for i in idx], pad)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % max(1, steps // 4) == 0:
            curve.append({"step": step, "loss": round(loss.item(), 4), "colour": colour_accuracy(model, trials, pad)})
    return {"model": str(folder), "curve": curve, "colour": curve[-1]["colour"], "seconds": round(time.time() - t0, 1)}


def supervised(folder: Path, processor, records, heldout: int, steps: int, batch: int, lr: float, seed: int) -> dict:
    """The random tower alone with a linear head on its mean-pooled tokens, trained on the colour labels of
    the first key-frames: can the tower see colour at all, when the signal reaches it directly?"""
    from transformers import AutoModelForImageTextToText

    tower = AutoModelForImageTextToText.from_pretrained(folder).model.vision_tower
    names = list(COLOURS)
    frames = FrameSource(load_captioner_config("mini-fast"))
    images = [frames.at(r, [r["keyframes"][0]["t"]])[0] for r in records]
    x = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    y = torch.tensor([names.index(r["meta"]["scene"]["objects"][0]["colour"]) for r in records])
    head = torch.nn.Linear(tower.config.hidden_size, len(names))
    opt = torch.optim.AdamW([*tower.parameters(), *head.parameters()], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(records) - heldout

    def logits(px):
        return head(tower(pixel_values=px).last_hidden_state[:, 1:].mean(1))

    for _ in tqdm(range(steps), desc="colour head (random tower)", unit="step"):
        idx = torch.randint(0, n, (batch,), generator=gen)
        loss = torch.nn.functional.cross_entropy(logits(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = float((logits(x[n:]).argmax(1) == y[n:]).float().mean())
    return {"steps": steps, "batch_size": batch, "colour": acc}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--annotations", type=Path, default=Path("runs/captioner/data/annotations.jsonl"))
    ap.add_argument("--untrained", type=Path, default=Path("runs/captioner/untrained"))
    ap.add_argument("--pretrained", type=Path, default=Path("runs/captioner/pretrained"))
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--probe-steps", type=int, default=100, help="steps of the supervised colour head (batch 32)")
    ap.add_argument("--heldout", type=int, default=120, help="last N records: scored, never trained on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/captioner_vision.json"))
    a = ap.parse_args(argv)

    from transformers import AutoProcessor

    records = [r for r in load_records(a.annotations) if r.get("meta", {}).get("scene")]
    processor = AutoProcessor.from_pretrained(a.untrained)
    eos, pad = answer_eos_id(processor.tokenizer), processor.tokenizer.pad_token_id
    prompts, frames = PromptSet("compact"), FrameSource(load_captioner_config("mini-fast"))
    convs = [conversation(r, "sliding", 0, prompts, frames) for r in records]  # step 0: the detail request
    train = [tokenize(c, processor, eos) for c in convs[: -a.heldout]]
    trials = [_colour_trial(c, r["meta"]["scene"]["objects"][0]["colour"], processor, eos)
              for c, r in zip(convs[-a.heldout:], records[-a.heldout:])]
    rows = {name: run(folder, train, trials, a.steps, a.batch_size, a.lr, a.seed, pad)
            for name, folder in (("random tower", a.untrained), ("pretrained tower", a.pretrained))}
    probe = supervised(a.untrained, processor, records, a.heldout, a.probe_steps, 32, a.lr, a.seed)
    result = {"steps": a.steps, "batch_size": a.batch_size, "lr": a.lr, "train": len(train), "heldout": len(trials),
              "chance": 1 / len(COLOURS), "runs": rows,
              "supervised_random_tower": probe,
              "ratio_pretrained_over_random": rows["pretrained tower"]["colour"] / max(rows["random tower"]["colour"], 1e-9)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(f"colour named right on {len(trials)} held-out key-frames after {a.steps} steps of {a.batch_size} "
          f"(chance {result['chance']:.2f}):")
    for name, r in rows.items():
        print(f"  {name:<17} {r['colour']:.2f}   " + "  ".join(f"step {c['step']}: {c['colour']:.2f}" for c in r["curve"]))
    print(f"  pretrained / random: {result['ratio_pretrained_over_random']:.1f}x")
    print(f"the random tower with a linear colour head, {probe['steps']} steps of {probe['batch_size']}: "
          f"{probe['colour']:.2f}  -> {a.out}")
    return result


if __name__ == "__main__":
    main()
