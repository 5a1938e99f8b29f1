"""Does a trained captioner fail on the place and motion of clips it never saw, or of the clips it trained on too?

Fast mode on the first N clips of its training set (whose dense captions it was taught) next to the first N
held-out ones, scored against the truth as the miniature's report scores them. Far better on seen clips than
on unseen ones: it memorised captions instead of learning to read them (more clips, augmentation); as bad on
both: it has not learned to read them at all (the model, its training, what the tokens hold).

    make captioner      # or a `captioner miniature --out RUN ...` variant
    python bench/captioner_seen_clips.py runs/captioner [--model runs/captioner/train/model] [--clips 100]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from captioner.config import load_captioner_config
from captioner.run import tasks_from_manifest
from captioner.training.evaluate import evaluate
from captioner.training.miniature import FAST_PRESET


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a `captioner miniature` folder (its data/train and data/heldout)")
    ap.add_argument("--model", type=Path, help="the trained captioner (default: RUN/train/model)")
    ap.add_argument("--clips", type=int, default=100, help="clips of each set")
    ap.add_argument("--out", type=Path, help="default: RUN/seen-clips/seen_clips.json")
    a = ap.parse_args(argv)
    model = a.model or a.run / "train" / "model"
    work = a.run / "seen-clips"
    cfg = load_captioner_config(FAST_PRESET, [f"backend.path={model}"])
    result: dict = {"model": str(model), "clips": a.clips}
    for name in ("train", "heldout"):
        tasks = tasks_from_manifest(a.run / "data" / name / "manifest.jsonl", work / "unused.jsonl")[:a.clips]
        scores = evaluate(f"{model.parent.name}-{name}", cfg, tasks, work)["scores"]["categories"]
        result[name] = {c: s["mean"] for c, s in scores.items()}
    out = a.out or work / "seen_clips.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'':10}" + "".join(f"{c:>10}" for c in result["train"]))
    for name, label in (("train", "seen"), ("heldout", "unseen")):
        print(f"{label:10}" + "".join(f"{v if v is None else round(v, 2):>10}" for v in result[name].values()))
    print(f"-> {out}")
    return result


if __name__ == "__main__":
    main()
