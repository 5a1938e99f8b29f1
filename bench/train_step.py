"""The trainer's and the pipeline's overhead over the bare libraries, measured in one run.

1. Training step: the trainer's micro-step (``t2v.training.loop._micro_step``: cached batch → caption dropout →
   curriculum σ → flow-matching loss → ``accelerate`` backward, clipping, AdamW and LR schedule) against a bare
   diffusers ``WanTransformer3DModel`` forward + MSE backward + ``torch.optim.AdamW`` step on the same batch,
   config and initial weights. Goal: ratio ≤ 1.10 on CPU.
2. Sampling: ``TextToVideoPipeline`` (``output_type="latent"``) against a hand-written Euler loop over the same
   text encoder, transformer and scheduler. Goal: ratio ≤ 1.05.

3. Efficiency: one training step of the tiny preset's own model (``t2v.demo.probe_step``: text adapter, positions,
   batch 16, a 96-token caption) — its FLOPs counted by torch's ``FlopCounterMode`` (forward + backward), its
   achieved FLOP/s next to a 2048² fp32 matmul's measured in the same run (goal ≥ 0.30 of that peak), and the
   same step under CPU bf16 autocast next to a bf16 matmul (AMX, where the CPU has it, runs those ~10× fp32).

Timed alternately (ABAB…) so that a slow spell of the machine hits both; the ratio is of medians.

    python bench/train_step.py --out runs/bench/train_step.json [--rounds 7 --steps 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import torch


def build(batch: int, frames: int, size: int, text_len: int):
    from diffusers import WanTransformer3DModel

    from t2v.config import load_config
    from t2v.models.backbone import T2VTransformer, wan_config

    cfg = load_config("tiny", ["model.text_adapter_layers=0", "model.text_adapter_dim=0", "model.abs_pos_embed=false",
                               f"train.batch_size={batch}", "optim.max_grad_norm=1.0"])
    m = cfg.model
    torch.manual_seed(0)
    ours = T2VTransformer.build("wan", 4, 384, m.num_layers, m.num_heads, m.head_dim, m.ffn_mult, m.patch_size,
                                frames, size)
    bare = WanTransformer3DModel(**wan_config(4, 384, m.num_layers, m.num_heads, m.head_dim, m.ffn_mult,
                                              m.patch_size))
    bare.load_state_dict(ours.dit.state_dict())
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(batch, 4, frames, size, size, generator=g)
    text = torch.randn(batch, text_len, 384, generator=g)
    return cfg, ours, bare, x0, text


def trainer_step(cfg, model, x0, text):
    """A closure running one optimiser step of the trainer's own loop code on a cached batch."""
    from accelerate import Accelerator

    from t2v.data.sampler import collate_cached
    from t2v.training.loop import _micro_step
    from t2v.training.optim import build_optimizer, build_scheduler

    acc = Accelerator(mixed_precision="no")
    opt = build_optimizer(cfg.optim, model)
    sched = build_scheduler(cfg.optim, cfg.train, opt, 1)
    model, opt, sched = acc.prepare(model, opt, sched)
    run = SimpleNamespace(cfg=cfg, acc=acc, model=model, vae=None, text_encoder=None, sharded=False,
                          empty_text=torch.zeros(1, text.shape[-1]), use_cache=True, opt=opt, sched=sched)
    batch = collate_cached([{"id": str(i), "latents": x0[i], "text": text[i]} for i in range(len(x0))])
    state = {"step": cfg.objective.pure_noise_steps + cfg.objective.noise_ramp_steps}  # ordinary noise levels

    def step():
        _micro_step(run, batch, state["step"])
        state["step"] += 1
    return step


def bare_step(cfg, model, x0, text):
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                            weight_decay=cfg.optim.weight_decay)

    def step():
        sigma = torch.rand(x0.shape[0])
        noise = torch.randn_like(x0)
        s = sigma.view(-1, 1, 1, 1, 1)
        pred = model(hidden_states=(1 - s) * x0 + s * noise, timestep=sigma * 1000, encoder_hidden_states=text,
                     return_dict=False)[0]
        loss = torch.mean((pred - (noise - x0)) ** 2)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def timed(fn, steps: int) -> float:
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps


def alternate(a, b, rounds: int, steps: int) -> dict:
    a(), b()  # warm-up
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(timed(a, steps))
        tb.append(timed(b, steps))
    ma, mb = statistics.median(ta), statistics.median(tb)
    return {"ours_s": ma, "bare_s": mb, "ratio": ma / mb, "ours_all_s": ta, "bare_all_s": tb}


def sampling(steps: int, size: int, frames: int):
    """(pipeline call, hand-written loop) over the same tiny components, both returning final latents."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from t2v.models.backbone import T2VTransformer
    from t2v.models.text import TextEncoder
    from t2v.models.vae import build_tiny_kl
    from t2v.pipeline import TextToVideoPipeline

    enc = TextEncoder.from_pretrained("minilm")
    torch.manual_seed(0)
    tr = T2VTransformer.build("wan", 4, enc.dim, 4, 4, 32, 4.0, [1, 2, 2], frames, size)
    pipe = TextToVideoPipeline(build_tiny_kl(4, [16, 32, 32], size * 4), enc.model, enc.tokenizer, tr,
                               FlowMatchEulerDiscreteScheduler(shift=3.0))
    prompt, guidance = "A small red circle on a white background moves to the right.", 5.0

    def with_pipeline():
        return pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, output_type="latent",
                    generator=torch.Generator().manual_seed(0), progress=False).frames

    @torch.no_grad()
    def by_hand():
        text, mask = enc([prompt])
        neg, neg_mask = enc([""])
        L = max(text.shape[1], neg.shape[1])
        pad = lambda s, m: (torch.nn.functional.pad(s, (0, 0, 0, L - s.shape[1])),  # noqa: E731
                            torch.nn.functional.pad(m, (0, L - m.shape[1])))
        (text, mask), (neg, neg_mask) = pad(text, mask), pad(neg, neg_mask)
        text, mask = torch.cat([neg, text]), torch.cat([neg_mask, mask])
        sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
        sched.set_timesteps(steps)
        x = torch.randn(1, 4, frames, size, size, generator=torch.Generator().manual_seed(0))
        for t in sched.timesteps:
            v = tr(torch.cat([x, x]), t.expand(2), text, mask)
            u, c = v.chunk(2)
            x = sched.step(u + guidance * (c - u), t, x, return_dict=False)[0]
        return x

    torch.testing.assert_close(with_pipeline(), by_hand())  # the same computation, or the ratio means nothing
    return with_pipeline, by_hand


def matmul_flops(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """FLOP/s of an n × n matmul in ``dtype`` here and now (median of ``reps`` after a warm-up): the peak a
    training step is held against."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times)


def efficiency(batch: int, rounds: int, steps: int) -> dict:
    """The tiny preset's training step in FLOP/s, fp32 and under bf16 autocast, each next to its matmul peak."""
    from torch.utils.flop_counter import FlopCounterMode

    from t2v.config import load_config
    from t2v.demo import probe_step

    cfg = load_config("tiny", [f"train.batch_size={batch}"])
    torch.manual_seed(0)
    fp32, bf16 = probe_step(cfg), probe_step(cfg, bf16=True)
    with FlopCounterMode(display=False) as counter:
        fp32()
    flops = counter.get_total_flops()
    times = alternate(fp32, bf16, rounds, steps)
    peak32, peak16 = matmul_flops(torch.float32), matmul_flops(torch.bfloat16)
    return {"step_gflop": flops / 1e9, "fp32_step_s": times["ours_s"], "bf16_step_s": times["bare_s"],
            "fp32_gflops": flops / times["ours_s"] / 1e9, "bf16_gflops": flops / times["bare_s"] / 1e9,
            "fp32_matmul_peak_gflops": peak32 / 1e9, "bf16_matmul_peak_gflops": peak16 / 1e9,
            "fp32_of_peak": flops / times["ours_s"] / peak32, "bf16_of_peak": flops / times["bare_s"] / peak16,
            "bf16_step_vs_fp32": times["bare_s"] / times["ours_s"], "goal_fp32_of_peak": 0.30,
            "amx": bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/bench/train_step.json"))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=5, help="steps (training) / calls (sampling) per timed round")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--frames", type=int, default=8, help="latent frames (the tiny preset's)")
    p.add_argument("--size", type=int, default=12, help="latent size (the tiny preset's)")
    p.add_argument("--sample-steps", type=int, default=20)
    a = p.parse_args(argv)

    cfg, ours, bare, x0, text = build(a.batch, a.frames, a.size, text_len=48)
    train = alternate(trainer_step(cfg, ours, x0, text), bare_step(cfg, bare, x0, text), a.rounds, a.steps)
    sample = alternate(*sampling(a.sample_steps, a.size, a.frames), a.rounds, max(1, a.steps // 2))
    eff = efficiency(a.batch, a.rounds, a.steps)
    result = {
        "machine": {"threads": torch.get_num_threads(), "torch": torch.__version__},
        "train_step": {**train, "goal": 1.10, "batch": a.batch, "latent": [4, a.frames, a.size, a.size]},
        "sampling": {**sample, "goal": 1.05, "denoising_steps": a.sample_steps},
        "efficiency": {**eff, "batch": a.batch},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(f"training step: trainer {train['ours_s']:.3f} s vs bare diffusers + AdamW {train['bare_s']:.3f} s "
          f"= {train['ratio']:.3f} (goal <= 1.10)")
    print(f"sampling:      pipeline {sample['ours_s']:.3f} s vs hand-written loop {sample['bare_s']:.3f} s "
          f"= {sample['ratio']:.3f} (goal <= 1.05)")
    print(f"tiny preset:   {eff['step_gflop']:.1f} GFLOP a step; fp32 {eff['fp32_step_s']:.3f} s = "
          f"{eff['fp32_gflops']:.1f} GFLOP/s, {eff['fp32_of_peak']:.2f} of a {eff['fp32_matmul_peak_gflops']:.0f} "
          f"GFLOP/s fp32 matmul (goal >= 0.30); bf16 autocast {eff['bf16_step_s']:.3f} s "
          f"({eff['bf16_step_vs_fp32']:.2f}x fp32's time), {eff['bf16_of_peak']:.2f} of a "
          f"{eff['bf16_matmul_peak_gflops']:.0f} GFLOP/s bf16 matmul (AMX: {eff['amx']})")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
