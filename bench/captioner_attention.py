"""Where does a VLM's decoder look when it writes a fast-mode caption? Attention over the image tokens.

The visual tokens can hold where the object is and where it goes (bench/captioner_probe.py), and the decoder
still writes the start region and the direction at little above chance. This bench shows why: it feeds each
held-out clip's fast-mode conversation (the request inference sends, the oracle's dense caption as the answer,
teacher-forced) through the decoder and measures, per layer, averaged over heads and answer tokens,

- ``image_mass``: the share of attention the answer tokens give to the image tokens, and
- ``entropy``: the entropy of that attention spread over the image tokens, divided by log(tokens): 1.0 is a
  uniform average over the tokens (the decoder reads their mean; where a token sits is lost), 0 is one token.

    make captioner
    python bench/captioner_attention.py runs/captioner/train/model --out runs/bench/captioner_attention.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from tqdm import tqdm

from captioner.config import load_captioner_config
from captioner.prompting import PromptSet
from captioner.training.conversations import FrameSource, answer_eos_id, conversation, tokenize
from captioner.training.train import load_records


@torch.no_grad()
def image_attention(model_dir: Path, records: list[dict], captioner: str = "mini-fast") -> list[dict[str, float]]:
    """Per decoder layer: mean attention mass on the image tokens and its normalised entropy over them."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, attn_implementation="eager").eval()
    ccfg = load_captioner_config(captioner)
    prompts, frames = PromptSet(ccfg.run.prompts), FrameSource(ccfg)
    eos = answer_eos_id(processor.tokenizer)
    image_id = getattr(model.config, "image_token_id", None) or model.config.image_token_index
    sums: list[list[float]] = []
    for r in tqdm(records, desc=f"attention ({model_dir.name})", unit="clip"):
        ex = tokenize(conversation(r, "fast", 0, prompts, frames), processor, eos)
        ids = ex["input_ids"]
        images = {k: v for k, v in ex.items() if k not in ("input_ids", "attention_mask", "labels")}
        out = model(input_ids=ids[None], **images, output_attentions=True)
        img = (ids == image_id).nonzero().flatten()
        # the position before each answer token predicts it
        query = (ex["labels"] != -100).nonzero().flatten() - 1
        rows = []
        for att in out.attentions:  # (1, heads, seq, seq)
            a = att[0][:, query][:, :, img]  # (heads, answer, image tokens)
            p = a / a.sum(-1, keepdim=True).clamp_min(1e-12)
            # over one image token (Idefics3's merged grid) there is nothing to choose between: entropy 0
            entropy = -(p * p.clamp_min(1e-12).log()).sum(-1) / math.log(len(img)) if len(img) > 1 else p[..., 0] * 0
            rows.append([float(a.sum(-1).mean()), float(entropy.mean())])
        sums = rows if not sums else [[x + y for x, y in zip(s, row)] for s, row in zip(sums, rows)]
    return [{"layer": i, "image_mass": round(m / len(records), 3), "entropy": round(e / len(records), 3)}
            for i, (m, e) in enumerate(sums)]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path, help="trained VLM folders (LLaVA, Idefics3)")
    ap.add_argument("--annotations", type=Path, default=Path("runs/captioner/eval/oracle.jsonl"),
                    help="annotated records to feed (default: the oracle's captions of the held-out clips)")
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/captioner_attention.json"))
    a = ap.parse_args(argv)
    records = load_records(a.annotations)[: a.clips]
    if not records:
        raise SystemExit(f"{a.annotations}: no ok records to feed")
    result = {"clips": len(records), "models": {str(m): image_attention(m, records) for m in a.models}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(f"decoder attention on the image tokens, fast mode, {len(records)} clips (entropy 1.0 = uniform):")
    for name, rows in result["models"].items():
        print(f"  {name}: " + "  ".join(f"L{r['layer']} mass {r['image_mass']:.2f} H {r['entropy']:.2f}" for r in rows))
    print(f"wrote {a.out}")
    return result


if __name__ == "__main__":
    main()
