"""The VLM judge of ``t2v compare --judge`` against the synthworld detector, on every claim type.

``t2v compare --judge oracle`` on the demo model reports the judge's agreement with the detector, but the demo's
world (one shape, one move) has no order claims and few timed events. Here the scenes come from a busier world
(``--max-objects``, ``--max-events``): each rendered clip (``--size`` px at ``--fps``, as a model would make
it, written to mp4) is judged against its own dense caption (claims mostly true) and against the next scene's
(claims mostly false), so both verdicts are exercised. Per claim type: claims judged, the share where the judge
and the detector (:func:`synthworld.score.claims.read_detection` at the full frame rate) agree, and each one's
share of true verdicts. Goal: agreement ≥ 0.90 per type.

    python bench/judge_agreement.py --out runs/bench/judge_agreement.json [--num 100 --judge oracle]
    python bench/judge_agreement.py --judge my-vlm.yaml --claims oracle   # a model judge, on claims the detector reads
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/judge_agreement.json"))
    ap.add_argument("--judge", default="oracle", help="captioner config, preset or trained folder")
    ap.add_argument("--claims", default=None, help="another captioner that splits the prompts into claims (oracle: "
                                                    "claims the detector checks, for a model judge)")
    ap.add_argument("--num", type=int, default=100, help="scenes (each judged against two prompts)")
    ap.add_argument("--max-objects", type=int, default=2)
    ap.add_argument("--max-events", type=int, default=2)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--fps", type=float, default=4.0)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=10_000)
    a = ap.parse_args()

    from synthworld.captions import dense_caption
    from synthworld.dataset import World
    from synthworld.detect import detect_video
    from synthworld.render import render
    from t2v.compare.judge import Judge, agreement, detector_verdicts

    t0 = time.perf_counter()
    world = World(max_objects=a.max_objects, max_events=a.max_events)
    scenes = [world.scene(a.seed + k, a.seconds) for k in range(a.num)]
    videos = [render(s, size=a.size, fps=a.fps) for s in scenes]
    dets = [detect_video(v, a.fps) for v in videos]
    judge = Judge(a.judge, claims_config=a.claims)
    caps = judge.captions(videos, a.fps, a.out.parent / "judge_agreement_videos", desc="rendered scenes")
    result = {"judge": a.judge, "claims_by": a.claims or a.judge, "world": {"max_objects": a.max_objects, "max_events": a.max_events},
              "scenes": a.num, "size": a.size, "fps": a.fps, "captioned": sum(c is not None for c in caps)}
    for name, shift in [("own prompt", 0), ("next scene's prompt", 1)]:
        prompts = [dense_caption(scenes[(k + shift) % a.num]) for k in range(a.num)]
        claims = judge.claims(prompts)
        verdicts = judge.verify(caps, claims)
        result[name] = agreement(claims, verdicts, detector_verdicts(claims, dets))
    pooled: dict[str, list[int]] = {}
    for name in ("own prompt", "next scene's prompt"):
        for kind, r in result[name].items():
            p = pooled.setdefault(kind, [0, 0])
            p[0] += r["agree"]
            p[1] += r["n"]
    result["pooled"] = {k: {"agree": g, "n": n, "rate": g / n} for k, (g, n) in pooled.items()}
    result["goal"] = 0.9
    result["seconds"] = time.perf_counter() - t0
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(f"{'claim type':<10} {'own prompt (agree, n, true)':>28} {'next scene (agree, n, true)':>28} {'pooled':>14}")
    for kind in result["pooled"]:
        own, other = result["own prompt"].get(kind), result["next scene's prompt"].get(kind)
        cell = lambda r: f"{r['rate']:.3f} (n={r['n']}, {r['detector_true']:.2f} true)" if r else "–"  # noqa: E731
        pool = result["pooled"][kind]
        print(f"{kind:<10} {cell(own):>28} {cell(other):>28} {pool['rate']:>8.3f} (n={pool['n']})")
    print(f"wrote {a.out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
