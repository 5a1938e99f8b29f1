"""How well the synthworld detector recovers the ground truth of random scenes.

Each scene is rendered, blurred, noised, encoded to mp4 (h264) and decoded again, then detected and
scored against its spec: colour, shape, size, motion direction, and event timing (within one frame).

    python bench/detector_accuracy.py --scenes 200 --out runs/bench/detector_accuracy.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from clipio.video import open_video, write_mp4
from synthworld.score import evaluate_detector


def mp4_roundtrip(tmp: Path, crf: int):
    def roundtrip(frames, fps):
        path = tmp / "clip.mp4"
        write_mp4(path, frames, fps, crf=crf)
        with open_video(path) as v:
            return v.read_all()

    return roundtrip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=200)
    ap.add_argument("--seed", type=int, default=10_000, help="first scene seed")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--fps", type=float, default=8.0)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--noise", type=float, default=8.0, help="Gaussian noise std (0..255 units)")
    ap.add_argument("--blur", type=float, default=0.8, help="Gaussian blur sigma (pixels)")
    ap.add_argument("--crf", type=int, default=23, help="h264 quality of the round trip (higher = lossier)")
    ap.add_argument("--no-mp4", action="store_true", help="skip the mp4 round trip")
    ap.add_argument("--show-failures", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/detector_accuracy.json"))
    a = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rt = None if a.no_mp4 else mp4_roundtrip(Path(tmp), a.crf)
        sc = evaluate_detector(range(a.seed, a.seed + a.scenes), a.size, a.fps, a.seconds, a.noise, a.blur, rt,
                               progress=True)
    errs = [abs(e) for e in sc.time_errors]
    res = {
        "scenes": a.scenes, "size": a.size, "fps": a.fps, "seconds": a.seconds, "noise_std": a.noise,
        "blur_sigma": a.blur, "mp4_crf": None if a.no_mp4 else a.crf,
        "accuracy": sc.accuracy(),
        "counts": {k: [sc.correct[k], sc.total[k]] for k in sorted(sc.total)},
        "event_time_abs_error_s": {"mean": sum(errs) / max(len(errs), 1), "max": max(errs, default=0.0)},
        "spurious_events": sc.spurious_events,
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))
    for line in sc.failures[: a.show_failures]:
        print(line)
    for k, v in res["accuracy"].items():
        c, n = res["counts"][k]
        print(f"{k:>11}: {100 * v:6.2f}%  ({c}/{n})")
    print(f"event time |error|: mean {res['event_time_abs_error_s']['mean']:.3f}s, "
          f"max {res['event_time_abs_error_s']['max']:.3f}s; spurious events: {res['spurious_events']}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
