"""The activation constants of ``t2v plan`` (``t2v/training/memory.py``), measured and fitted in one run.

Each point is one fp32 AdamW step of the tiny Wan model (steady state: the second step, moments already
there) on the CPU, with the peak of live tensor bytes read from ``torch.profiler``'s memory events — what
CUDA's ``max_memory_allocated`` reports on a GPU, and unlike the process RSS independent of the allocator,
the thread count and the machine. The plan's model,

    peak = 16 × trainable + batch × tokens × width × (layers × (c_layer + c_ffn × ffn_mult) + c_other) × 4

(``layers × c_layer_checkpointed + c_other_checkpointed`` with gradient checkpointing: the layer inputs, and
one layer's activations while it is recomputed), is fitted by least squares over batch,
layers and FFN width, and the fit's worst relative error is printed.

    python bench/activation_memory.py --out runs/bench/activation_memory.json
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import torch

GRID = {"batch": (4, 16), "layers": (2, 4, 8), "ffn_mult": (2.0, 4.0)}


def measure(overrides: list[str]) -> dict:
    """Peak live tensor bytes of one steady-state training step of the tiny preset with ``overrides``."""
    from torch.profiler import ProfilerActivity, profile

    from t2v.config import load_config
    from t2v.models.build import build_transformer, build_vae
    from t2v.objective import flow_matching_loss
    from t2v.training.memory import model_shape

    cfg = load_config("tiny", ["vae.path=null", "train.mixed_precision='no'", *overrides])
    torch.manual_seed(0)
    vae = build_vae(cfg)  # untrained: the same shapes
    shape = model_shape(cfg)
    B, f, hw = cfg.train.batch_size, vae.latent_frames(cfg.data.num_frames), cfg.data.size // vae.spatial_factor
    x0, text, mask = torch.randn(B, 4, f, hw, hw), torch.randn(B, 96, 768), torch.ones(B, 96, dtype=torch.bool)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model = build_transformer(cfg, vae, 768)
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        for _ in range(2):
            flow_matching_loss(model, x0, text, mask, cfg.objective).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return {"overrides": overrides, "peak_bytes": peak, "trainable": shape.trainable, "batch": B,
            "tokens": shape.tokens, "width": shape.width, "layers": shape.layers, "ffn_mult": shape.ffn_mult,
            "gradient_checkpointing": bool(cfg.model.gradient_checkpointing)}


def per_value(p: dict) -> float:
    """Activation values per sample·token·width: what the constants add up to."""
    return (p["peak_bytes"] - 16 * p["trainable"]) / (p["batch"] * p["tokens"] * p["width"] * 4)


def fit(points: list[dict]) -> dict:
    plain = [p for p in points if not p["gradient_checkpointing"]]
    a = torch.tensor([[p["layers"], p["layers"] * p["ffn_mult"], 1.0] for p in plain], dtype=torch.float64)
    y = torch.tensor([per_value(p) for p in plain], dtype=torch.float64)
    c_layer, c_ffn, c_other = torch.linalg.lstsq(a, y[:, None]).solution[:, 0].tolist()
    ck = [p for p in points if p["gradient_checkpointing"]]  # the layer inputs, and one layer recomputed at a time
    a = torch.tensor([[p["layers"], 1.0] for p in ck], dtype=torch.float64)
    y = torch.tensor([per_value(p) for p in ck], dtype=torch.float64)
    c_ckpt, c_other_ckpt = torch.linalg.lstsq(a, y[:, None]).solution[:, 0].tolist()
    return {"c_layer": c_layer, "c_ffn": c_ffn, "c_other": c_other, "c_layer_checkpointed": c_ckpt,
            "c_other_checkpointed": c_other_ckpt}


def predicted(p: dict, c: dict) -> float:
    if p["gradient_checkpointing"]:
        values = p["layers"] * c["c_layer_checkpointed"] + c["c_other_checkpointed"]
    else:
        values = p["layers"] * (c["c_layer"] + c["c_ffn"] * p["ffn_mult"]) + c["c_other"]
    return 16 * p["trainable"] + p["batch"] * p["tokens"] * p["width"] * values * 4


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench/activation_memory.json"))
    ap.add_argument("--quick", action="store_true", help="a 4-point grid (the test's)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    grid = {"batch": (4, 16), "layers": (2, 4), "ffn_mult": (2.0, 4.0)} if args.quick else GRID
    from tqdm import tqdm

    runs = [(*c, False) for c in itertools.product(*grid.values())]
    runs += [(max(grid["batch"]), layers, max(grid["ffn_mult"]), True) for layers in grid["layers"]]
    points = [measure([f"train.batch_size={b}", f"model.num_layers={layers}", f"model.ffn_mult={ffn}",
                       f"model.gradient_checkpointing={str(ckpt).lower()}"])
              for b, layers, ffn, ckpt in tqdm(runs, desc="training steps")]
    c = fit(points)
    worst = max(abs(predicted(p, c) - p["peak_bytes"]) / p["peak_bytes"] for p in points)
    print("  ".join(f"{k} = {v:.1f}" for k, v in c.items()) + f"   worst fit error {worst:.1%} over {len(points)} steps")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"constants": c, "worst_relative_error": worst, "points": points}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
