"""Requests/s of the ``hf`` backend, batched vs one request at a time, on the tiny offline LLaVA.

Each request looks like a DiffSW differential step: two key-frames plus a ~100-word prompt, greedy,
``--max-new-tokens`` new tokens. The same requests go through ``HFBackend.generate`` once with
``--batch-size`` and once with batch size 1 (after a warm-up), in one process; the ratio of the two
throughputs is what batching buys. Answers are also checked to be identical (greedy, left padding).

torch runs on ``--threads`` threads (default 1): on the shared 2-core machines a second OpenMP thread
that competes with other jobs makes timings swing 10x, which would drown the ratio.

    python bench/hf_batching.py --requests 32 --batch-size 16 --out runs/bench/hf_batching.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from captioner.backends.base import ChatRequest, user_request
from captioner.backends.hf import HFBackend
from captioner.backends.tiny_vlm import build_tiny_llava

PROMPT = (
    "You are an expert video captioner. Your skill is to compare two key-frames of the same video and "
    "describe precisely what changed between them. Constraints: describe only visible changes, use "
    "plain English, mention the motion of objects, the camera movement and the lighting, and never "
    "invent events that are not shown. Input: the first image is the key-frame at {t0:.1f} seconds, "
    "the second image is the key-frame at {t1:.1f} seconds. The previous differential caption was: "
    "a red car drives from the left to the right while a man in a blue jacket walks his dog along "
    "the sidewalk. Write the differential caption for the second key-frame now."
)


def make_requests(n: int, size: int, seed: int) -> list[ChatRequest]:
    """``n`` DiffSW-like requests: two random ``size``² key-frames and the prompt (lengths vary a little)."""
    rng = np.random.default_rng(seed)
    reqs = []
    for i in range(n):
        frames = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(2)]
        text = PROMPT.format(t0=2.0 * i, t1=2.0 * i + 2.0) + " Be brief." * (i % 4)
        reqs.append(user_request([frames[0], frames[1], text], task="diff"))
    return reqs


def timed(backend: HFBackend, reqs: list[ChatRequest], batch_size: int) -> tuple[float, list]:
    backend.batch_size = batch_size
    t0 = time.perf_counter()
    out = backend.generate(reqs)
    return time.perf_counter() - t0, out


@torch.inference_mode()
def step_costs(backend: HFBackend, reqs: list[ChatRequest], n_new: int) -> dict[str, float]:
    """Prefill and per-decode-step milliseconds for these requests as one batch (EOS suppressed)."""
    inputs = backend.encode(reqs)

    def gen(n: int) -> float:
        t0 = time.perf_counter()
        backend.model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                               pad_token_id=backend.tokenizer.pad_token_id)
        return time.perf_counter() - t0

    first = min(gen(1) for _ in range(3))
    full = min(gen(n_new) for _ in range(2))
    return {"prefill_ms": round(1000 * first, 2), "decode_step_ms": round(1000 * (full - first) / (n_new - 1), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=224, help="key-frame side before the processor resizes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (see the module docstring)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/hf_batching.json"))
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(a.threads)

    # 1. Build the tiny model, load it the way a real checkpoint is loaded, warm up.
    with tempfile.TemporaryDirectory() as tmp:
        backend = HFBackend(str(build_tiny_llava(Path(tmp) / "tiny_llava", seed=a.seed)),
                            max_new_tokens=a.max_new_tokens)
    reqs = make_requests(a.requests, a.image_size, a.seed)
    timed(backend, reqs[:2], 2)
    n_prompt = backend.encode(reqs[:1])["input_ids"].shape[1]

    # 2. Batched, then one at a time, on the same requests.
    t_batched, out_batched = timed(backend, reqs, a.batch_size)
    t_single, out_single = timed(backend, reqs, 1)
    errors = sum(isinstance(o, Exception) for o in out_batched + out_single)
    # 3. Where the time goes: prefill vs one decode step, for 1 request and for a full batch.
    costs = {"batch_1": step_costs(backend, reqs[:1], a.max_new_tokens),
             f"batch_{a.batch_size}": step_costs(backend, reqs[:a.batch_size], a.max_new_tokens)}
    res = {
        "requests": a.requests, "batch_size": a.batch_size, "max_new_tokens": a.max_new_tokens,
        "images_per_request": 2, "prompt_tokens": int(n_prompt), "threads": a.threads,
        "model_params": sum(p.numel() for p in backend.model.parameters()),
        "batched_seconds": round(t_batched, 3), "single_seconds": round(t_single, 3),
        "batched_requests_per_s": round(a.requests / t_batched, 2),
        "single_requests_per_s": round(a.requests / t_single, 2),
        "speedup": round(t_single / t_batched, 2),
        "same_answers": out_batched == out_single, "errors": errors, "costs": costs,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    print(f"batched x{a.batch_size}: {res['batched_requests_per_s']} req/s, one at a time: "
          f"{res['single_requests_per_s']} req/s -> {res['speedup']}x  (written to {a.out})")


if __name__ == "__main__":
    main()
