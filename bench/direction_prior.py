"""How much of a direction score could come from the start position alone?

In a world where where a shape starts nearly decides where it goes (``World(moving_start=True)``: a
shape on an edge moves inwards, one in a corner has two inward ways), a model that put each shape
in the right region and then took the commonest way for that region would score well on motion
direction without reading a direction word. This prints that score — the *start-region prior* —
for held-out prompts, with the way frequencies counted on the training manifest, to stand beside
a model's direction score (which should be above it) and chance (below it).

    python bench/direction_prior.py --train-manifest runs/demo/data/manifest.jsonl \\
        --prompts runs/demo/prompts-heldout-dense.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict

from synthworld.spec import SceneSpec, region_of


def first_moves(spec: SceneSpec) -> list[tuple[str, str]]:
    """(start region, direction of its first move) for every object of ``spec`` that moves."""
    out = []
    for i, o in enumerate(spec.objects):
        moves = [e for e in spec.events if e.obj == i and e.kind == "move"]
        if moves:
            out.append((region_of(o.x, o.y), moves[0].direction))
    return out


def region_prior_score(train: list[SceneSpec], heldout: list[SceneSpec]) -> dict:
    """Share of held-out first moves whose direction is the commonest one for their start region in
    ``train`` (a region never seen moving in training guesses nothing: a miss)."""
    ways: dict[str, Counter] = defaultdict(Counter)
    for spec in train:
        for region, d in first_moves(spec):
            ways[region][d] += 1
    hits = [bool(ways[r]) and ways[r].most_common(1)[0][0] == d for spec in heldout for r, d in first_moves(spec)]
    return {"score": sum(hits) / len(hits) if hits else None, "moves": len(hits),
            "ways_per_region": {r: dict(c) for r, c in sorted(ways.items())}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-manifest", required=True, help="the synthworld manifest a model trained on")
    ap.add_argument("--prompts", required=True, help="held-out prompts with scenes (t2v prompts / make demo)")
    args = ap.parse_args()

    from clipio.manifest import read_manifest
    from t2v.compare.prompts import load_prompts

    train = [SceneSpec.from_dict(r["meta"]["scene"]) for r in read_manifest(args.train_manifest)
             if r["status"] == "ok" and "scene" in r.get("meta", {})]
    heldout = [it.scene for it in load_prompts(args.prompts) if it.scene is not None]
    res = region_prior_score(train, heldout)
    print(json.dumps(res["ways_per_region"], indent=1))
    print(f"start-region prior on {res['moves']} held-out moves: direction {res['score']:.2f}")


if __name__ == "__main__":
    main()
