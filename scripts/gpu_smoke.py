"""The GPU paths, end to end, as one command: run this first on a machine with NVIDIA GPUs.

    python scripts/gpu_smoke.py --out runs/gpu-smoke            # CUDA (without it: says so, runs nothing, exits 0)
    python scripts/gpu_smoke.py --out /tmp/smoke --device cpu   # the same checks that can run on CPU (CI)

Each check runs the CLI a user runs, in a subprocess; a failed check is recorded (its last output lines) and
the rest go on. Prints one JSON line per check (ok / failed / skipped, seconds, and what it measured:
samples/s and tokens/s per device, memory peak, MFU where the GPU's peak is known), writes them all to
``OUT/gpu_smoke.json`` and exits 1 when any failed. On CUDA (one GPU: a few minutes):

- synth → ``t2v cache`` on the GPU (UMT5-style bf16 text states when the run is bf16);
- training in bf16 on one GPU (DDP path; ``t2v plan``'s estimate beside its memory peak) and sharded (``train.parallel=fsdp``) on every GPU through the
  shipped launch config (one GPU: a mesh of one), then ``--resume latest`` of the sharded run;
- Latte with xformers attention when xformers is installed;
- ``t2v generate`` on the GPU in bf16, with ``--offload`` and with ``--vae-slicing --vae-tiling``;
- the captioner: oracle annotations of the synth clips → the miniature ShareCaptioner → ``captioner train mini``
  on the GPU (bf16 mixed precision) → ``captioner run --mode fast`` with the trained folder on the GPU;
- a few steps of ``dit-b-256`` at full size (Wan VAE, UMT5-XXL in bf16) when ``ckpts/wan2.1-1.3b`` is there
  (``huggingface-cli download Wan-AI/Wan2.1-T2V-1.3B-Diffusers --local-dir ckpts/wan2.1-1.3b``).

On ``--device cpu`` bf16, offload and xformers are skipped and the sharded run uses 2 CPU processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--steps", type=int, default=0, help="training steps per run (default: 30 on CUDA, 4 on CPU)")
    a = p.parse_args(argv)

    import torch

    gpu = a.device == "cuda"
    if gpu and not torch.cuda.is_available():
        print("gpu_smoke: no CUDA device on this machine: nothing run (--device cpu runs the CPU checks)")
        return 0
    n_gpu = torch.cuda.device_count() if gpu else 0
    steps = a.steps or (30 if gpu else 4)
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"device": torch.cuda.get_device_name(0) if gpu else "cpu", "gpus": n_gpu,
                    "torch": torch.__version__, "bf16": bool(gpu and torch.cuda.is_bf16_supported()), "checks": {}}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if not gpu:
        env.update(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")

    def check(name: str, cmd: list[str], skip: str | None = None, measure=None) -> bool:
        if skip:
            report["checks"][name] = {"status": "skipped", "why": skip}
            print(json.dumps({"check": name, **report["checks"][name]}), flush=True)
            return False
        t = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
        entry = {"status": "ok" if r.returncode == 0 else "failed", "seconds": round(time.time() - t, 1)}
        if r.returncode:
            entry["output_tail"] = (r.stdout + r.stderr)[-2000:]
        elif measure is not None:
            entry.update(measure())
        report["checks"][name] = entry
        print(json.dumps({"check": name, **entry}), flush=True)
        return r.returncode == 0

    # 1. data and cache
    data = out / "data"
    size, frames = (48, 8) if gpu else (32, 4)
    check("synth", [str(BIN / "t2v"), "synth", "--out", str(data), "--num-clips", "16" if gpu else "8",
                    "--size", "48", "--max-objects", "1", "--max-events", "1", "--no-sheet"])
    base = [f"data.manifest={data / 'manifest.jsonl'}", f"data.size={size}", f"data.num_frames={frames}",
            f"data.fps={frames / 4}", f"data.cache_dir={out / 'cache'}", "vae.path=null",
            "train.batch_size=2", f"train.max_steps={steps}", "train.log_every=2",
            f"train.checkpoint_every={max(steps // 2, 1)}", "optim.warmup_steps=1", "sample.steps=4",
            "objective.pure_noise_steps=1", "objective.noise_ramp_steps=2",
            f"train.mixed_precision={'bf16' if report['bf16'] else repr('no')}"]  # quoted: YAML reads no as false
    if not gpu:
        base += ["vae.block_out_channels=[8, 16]", "model.num_layers=2", "model.head_dim=16",
                 "model.text_adapter_dim=16"]
    tiny = str(ROOT / "t2v" / "presets" / "tiny.yaml")
    check("cache", [str(BIN / "t2v"), "cache", "--config", tiny, "--device", a.device, *base])

    # 2. training: one device (DDP path), then sharded on every device, then its resume
    def summary(run: Path):
        def read() -> dict:
            s = json.loads((run / "train_summary.json").read_text())
            return {"steps": s["steps"], "world_size": s["world_size"], "parallel": s.get("parallel"),
                    "mixed_precision": s["mixed_precision"], "throughput": s["throughput"]}
        return read

    one = out / "one-device"
    single = [str(BIN / "t2v"), "train", "--config", tiny, *base, f"train.output_dir={one}"]

    def with_plan() -> dict:  # `t2v plan`'s estimate next to the measured peak (on CUDA: max_memory_allocated)
        from t2v.config import load_config
        from t2v.training.memory import plan

        row = next(r for r in plan(load_config(tiny, base), gpus=1) if r["strategy"] == "ddp"
                   and not r["gradient_checkpointing"])
        return {**summary(one)(), "plan_total_gb": round(row["total_gb"], 3)}

    check("train_one_device", single, measure=with_plan)
    procs = max(n_gpu, 1) if gpu else 2
    launch = [str(BIN / "accelerate"), "launch", "--config_file", str(ROOT / "configs/accelerate/multi_gpu.yaml"),
              "--num_processes", str(procs), "--main_process_port", "29517",
              "--mixed_precision", "bf16" if report["bf16"] else "no"]
    def fsdp(run: Path, *extra: str) -> list[str]:
        return [*launch, str(ROOT / "train_t2v.py"), "--config", tiny, *base, f"train.output_dir={run}",
                "train.parallel=fsdp", "train.ema_decay=0.9", *extra]

    sharded, resumed = out / "fsdp", out / "fsdp-resumed"
    ok = check("train_fsdp", fsdp(sharded), measure=summary(sharded))
    half = None if ok else "train_fsdp failed"
    check("train_fsdp_half", fsdp(resumed, f"train.max_steps={max(steps // 2, 1)}"), skip=half)
    check("train_fsdp_resume_latest", fsdp(resumed, "--resume", "latest"), skip=half, measure=summary(resumed))
    try:
        import xformers  # noqa: F401

        no_xformers = None if gpu else "xformers needs CUDA"
    except ImportError:
        no_xformers = "xformers is not installed (pip install -e .[xformers])"
    latte = out / "latte-xformers"
    check("train_latte_xformers", [*single[:-1], f"train.output_dir={latte}", "model.backbone=latte",
                                   "model.attention=xformers"], skip=no_xformers, measure=summary(latte))

    # 3. inference on the device
    pipe = one / "pipeline"
    gen = [str(BIN / "t2v"), "generate", "--model", str(pipe), "--prompt",
           "A small red circle on a white background moves to the right.", "--steps", "4", "--device", a.device]
    check("generate", [*gen, "--out", str(out / "videos" / "plain.mp4")])
    check("generate_offload", [*gen, "--offload", "--out", str(out / "videos" / "offload.mp4")],
          skip=None if gpu else "model CPU offload needs a GPU")
    check("generate_vae_slicing_tiling", [*gen, "--vae-slicing", "--vae-tiling",
                                          "--out", str(out / "videos" / "tiled.mp4")])

    # 4. the captioner: annotate, build the miniature, train it on the device, caption with it on the device
    ann, mini, ctrain = out / "annotations.jsonl", out / "mini-untrained", out / "captioner-train"
    cap = [str(BIN / "captioner")]
    ok = check("captioner_annotate", [*cap, "run", "--manifest", str(data / "manifest.jsonl"), "--out", str(ann),
                                      "--config", "oracle", "--quiet"])
    ok = ok and check("captioner_mini_vlm", [*cap, "mini-vlm", "--annotations", str(ann), "--out", str(mini)])

    def captioner_summary() -> dict:
        s = json.loads((ctrain / "train_summary.json").read_text())
        return {k: s[k] for k in ("steps", "final_loss", "seconds", "processes")}

    ok = ok and check("captioner_train", [*cap, "train", "--quiet", "mini", f"data.manifest={ann}",
                                          f"model.path={mini}", f"train.output_dir={ctrain}", "data.val_clips=2",
                                          f"train.max_steps={steps}", "train.batch_size=4", "train.val_every=0",
                                          "train.val_max_new_tokens=16",
                                          f"train.mixed_precision={'bf16' if report['bf16'] else repr('no')}"],
                      measure=captioner_summary)
    check("captioner_run_fast", [*cap, "run", "--manifest", str(data / "manifest.jsonl"), "--out",
                                 str(out / "captions-learned.jsonl"), "--config", str(ctrain / "model"), "--quiet",
                                 f"backend.device={a.device}", "backend.max_new_tokens=16"],
          skip=None if ok else "captioner_train failed")

    # 5. the GPU preset at full size, a few steps, when its public checkpoint has been downloaded
    ckpts = ROOT / "ckpts" / "wan2.1-1.3b"
    no_ckpts = None if gpu and ckpts.is_dir() else (f"{ckpts} is not there (the Wan VAE and UMT5-XXL)" if gpu
                                                    else "the full-size preset needs a GPU")
    full = out / "data-256"
    if not no_ckpts:
        check("synth_256", [str(BIN / "t2v"), "synth", "--out", str(full), "--num-clips", "8", "--size", "256",
                            "--fps", "16", "--seconds", "3", "--window", str(33 / 16), "--no-sheet"])
    big = out / "dit-b-256"
    check("train_dit_b_256", [str(BIN / "t2v"), "train", "--config", "dit-b-256", f"data.manifest={full / 'manifest.jsonl'}",
                              "data.use_cache=false", "data.num_workers=2", "train.max_steps=3", "train.log_every=1",
                              "train.batch_size=1", "train.validate_every=0", "train.validation_prompts=[]",
                              f"train.output_dir={big}", f"vae.path={ckpts / 'vae'}", f"text.path={ckpts / 'text_encoder'}",
                              f"text.tokenizer={ckpts / 'tokenizer'}"], skip=no_ckpts, measure=summary(big))

    failed = [k for k, v in report["checks"].items() if v["status"] == "failed"]
    report["failed"] = failed
    (out / "gpu_smoke.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({"summary": "gpu_smoke", "device": report["device"], "failed": failed,
                      "json": str(out / "gpu_smoke.json")}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
