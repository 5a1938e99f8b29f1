"""Clips/s of the whole DiffSW captioner on the tiny ``hf`` backend: batched across clips vs one clip at a time.

The same synthworld clips are captioned twice in one process with the same config except
``run.active_clips``: ``--active-clips`` (step k of that many clips goes to the backend as one batch)
vs 1 (each clip's steps go alone). Key-frame extraction is included in both. torch uses one thread
(see bench/hf_batching.py for why).

    python bench/captioner_batching.py --num-clips 16 --active-clips 16 --out runs/bench/captioner_batching.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from captioner.backends.hf import HFBackend
from captioner.backends.tiny_vlm import build_tiny_llava
from captioner.config import load_captioner_config
from captioner.diffsw import DiffSWCaptioner
from captioner.run import tasks_from_manifest
from synthworld.dataset import write_synth_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-clips", type=int, default=16)
    ap.add_argument("--active-clips", type=int, default=16)
    ap.add_argument("--interval", type=float, default=1.0, help="key-frame interval (s) of the 4 s clips")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/captioner_batching.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_synth_dataset(tmp / "data", a.num_clips, seed=3, size=64, fps=8.0, progress=False)
        model = build_tiny_llava(tmp / "vlm")
        backend = HFBackend(str(model), max_new_tokens=a.max_new_tokens, batch_size=a.active_clips * 2)
        tasks = tasks_from_manifest(tmp / "data" / "manifest.jsonl", tmp / "out.jsonl")
        results = {}
        for active in (1, a.active_clips, 1):  # one-at-a-time twice: the first run also warms up
            cfg = load_captioner_config(None, ["backend.kind=hf", f"backend.path={model}",
                                               f"keyframes.interval={a.interval}", "keyframes.threshold=1.0",
                                               f"run.active_clips={active}", "run.prefetch=2"])
            t0 = time.perf_counter()
            recs = list(DiffSWCaptioner(cfg, backend).caption(tasks))
            dt = time.perf_counter() - t0
            assert all(r["status"] == "ok" for r in recs), [r.get("error") for r in recs]
            results[active] = {"seconds": round(dt, 3), "clips_per_s": round(len(recs) / dt, 3)}
            print(f"active_clips={active:3d}: {len(recs)} clips in {dt:.2f} s ({len(recs) / dt:.2f} clips/s)")
    ratio = results[a.active_clips]["clips_per_s"] / results[1]["clips_per_s"]
    print(f"batched across {a.active_clips} clips / one clip at a time: {ratio:.2f}x")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"clips": a.num_clips, "interval": a.interval, "max_new_tokens": a.max_new_tokens,
                                 "threads": a.threads, "one_at_a_time": results[1],
                                 "batched": results[a.active_clips], "ratio": round(ratio, 2)}, indent=1))


if __name__ == "__main__":
    main()
