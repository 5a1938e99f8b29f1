"""Does a trained captioner's decoder know where the object starts, when it is not asked to write it? A trial.

Greedy captions say the start region in fast mode at little above chance; this asks the decoder directly, by
teacher forcing. For each held-out clip, the first sentence of the oracle's dense caption ("The clip starts
with a large cyan triangle at the upper left on a black background.") is the answer to the fast-mode request,
its region phrase set to each of the nine regions' phrase in turn (same wording otherwise); the variant the
model finds most likely is its answer. Only that sentence is scored, so no later sentence (where it ends, where
it goes) gives the start away. The same trial with the grid blacked out says what the text alone gives.

    make captioner
    python bench/captioner_region_trial.py runs/captioner/train/model [MORE_FOLDERS] \\
        --out runs/bench/captioner_region_trial.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from captioner.backends.base import ChatRequest
from captioner.config import load_captioner_config
from captioner.prompting import PromptSet
from captioner.training.conversations import (
    Conversation,
    FrameSource,
    answer_eos_id,
    conversation,
    most_likely,
    tokenize,
)
from captioner.training.train import load_records
from synthworld.captions import REGION_PHRASES
from synthworld.spec import region_of

REGIONS = list(REGION_PHRASES)


def blacked_out(request: ChatRequest) -> ChatRequest:
    """The request with every image set to black."""
    def part(p: dict) -> dict:
        return dict(p, image=np.zeros_like(p["image"])) if p.get("type") == "image" else p
    messages = [dict(m, content=[part(p) for p in m["content"]]) if isinstance(m["content"], list) else m
                for m in request.messages]
    return ChatRequest(messages=messages, task=request.task, fields=request.fields)


def region_variants(conv: Conversation, region: str) -> list[Conversation] | None:
    """The first sentence of ``conv``'s answer with its ``region`` phrase set to each region's (REGIONS order);
    None when the answer names the region in none of its phrasings."""
    found = [(conv.answer.find(p), k) for k, p in enumerate(REGION_PHRASES[region]) if p in conv.answer]
    if not found:
        return None
    at, k = min(found)
    phrase = REGION_PHRASES[region][k]
    end = conv.answer.find(".", at)
    tail = conv.answer[at + len(phrase): end + 1 if end >= 0 else None]
    return [Conversation(conv.request, conv.answer[:at] + REGION_PHRASES[r][k] + tail, conv.mode, conv.record_id)
            for r in REGIONS]


def region_trial(model_dir: Path, records: list[dict], captioner: str = "mini-fast") -> dict[str, float | int]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    ccfg = load_captioner_config(captioner)
    prompts, frames = PromptSet(ccfg.run.prompts), FrameSource(ccfg)
    eos, pad = answer_eos_id(processor.tokenizer), processor.tokenizer.pad_token_id
    hits, n = {"grid": 0, "black": 0}, 0
    for r in tqdm(records, desc=f"region trial ({model_dir.name})", unit="clip"):
        obj = r["meta"]["scene"]["objects"][0]
        truth = region_of(obj["x"], obj["y"])
        conv = conversation(r, "fast", 0, prompts, frames)
        variants = region_variants(conv, truth)
        if variants is None:
            continue
        n += 1
        for name, request in (("grid", conv.request), ("black", blacked_out(conv.request))):
            toks = [tokenize(Conversation(request, v.answer, v.mode, v.record_id), processor, eos) for v in variants]
            hits[name] += most_likely(model, toks, pad) == REGIONS.index(truth)
    return {"clips": n, **{k: round(v / max(1, n), 3) for k, v in hits.items()}}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path, help="trained VLM folders")
    ap.add_argument("--annotations", type=Path, default=Path("runs/captioner/eval/oracle.jsonl"),
                    help="annotated records (default: the oracle's captions of the held-out clips)")
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/captioner_region_trial.json"))
    a = ap.parse_args(argv)
    records = [r for r in load_records(a.annotations) if r.get("meta", {}).get("scene")][: a.clips]
    if not records:
        raise SystemExit(f"{a.annotations}: no ok records with a scene")
    result = {"chance": round(1 / len(REGIONS), 3), "models": {str(m): region_trial(m, records) for m in a.models}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(f"start region by teacher forcing, nine variants of the first sentence (chance {result['chance']}):")
    for name, r in result["models"].items():
        print(f"  {name}: {r['grid']:.2f} with the grid, {r['black']:.2f} with it blacked out ({r['clips']} clips)")
    print(f"wrote {a.out}")
    return result


if __name__ == "__main__":
    main()
