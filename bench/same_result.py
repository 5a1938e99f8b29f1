"""Do two revisions of the code train the same model? Bit for bit, stage by stage, on this machine.

Runs a miniature ``t2v demo`` (64 clips, a 20-step VAE, 60 training steps through every phase of the tiny
preset's curriculum: 15 at σ = 1, a 15-step ramp, then logit-normal) once per run spec and compares the
SHA-256 of what each stage wrote: synthworld clips and manifest, VAE weights, latent/text cache, DiT weights,
the generated videos and the report's scores. ``--experiment`` runs a miniature ``t2v experiment`` instead
(oracle captioning, a short and a dense model of 40 steps each, the comparison).

A run spec is ``REV`` or ``REV:THREADS``: a git revision (``WORKTREE`` = the checkout as it is, uncommitted
edits included), optionally with a CPU thread count (OMP/MKL threads; default: torch's own choice).
Each revision is checked out into a temporary git worktree and imported from there (PYTHONPATH) with this
checkout's virtualenv.

Why it exists: the demo is deterministic on one machine, but not across machines — float reductions are split
differently by thread count and CPU kernel, and 1400 steps of training amplify the last bit. So a figure that
moved between two clean-clone runs on two machines says nothing about the code; this says whether the code did.

    python bench/same_result.py HEAD~5 WORKTREE --out runs/bench/same_result.json
    python bench/same_result.py WORKTREE:1 WORKTREE:2          # same code, 1 vs 2 threads
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ["demo", "--num-clips", "64", "--num-prompts", "4", "--vae-steps", "20", "train.max_steps=60",
        "objective.pure_noise_steps=15", "objective.noise_ramp_steps=15", "optim.warmup_steps=5"]
EXPERIMENT = ["experiment", "--num-clips", "64", "--num-prompts", "4", "--vae-steps", "20", "--minutes", "30",
              "train.max_steps=40", "objective.pure_noise_steps=10", "objective.noise_ramp_steps=10",
              "optim.warmup_steps=5"]
# stage -> glob patterns under the run folder (paths and timings inside JSON differ between runs by design)
STAGES = {
    "synthworld clips + manifest": ["data/clips/*.mp4", "data/manifest.jsonl"],
    "captions (oracle)": ["data/captions.jsonl"],
    "VAE weights": ["vae/*.safetensors"],
    "latent + text cache": ["data/cache/*/*.safetensors"],
    "DiT weights": ["t2v/pipeline/transformer/*.safetensors", "short/pipeline/transformer/*.safetensors",
                    "dense/pipeline/transformer/*.safetensors"],
    "videos": ["videos/*.mp4", "report/gallery/*.gif"],
}


def digest(run: Path, patterns: list[str]) -> str | None:
    files = sorted(p for pat in patterns for p in run.glob(pat))
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())  # not the folder: a cache folder's name hashes the run's own paths
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def scores(run: Path) -> dict:
    """The report's per-model category means (what the README's table is made of)."""
    metrics = json.loads((run / "report" / "report.json").read_text())["metrics"]
    return {model: {c: v["mean"] for c, v in cats.items()} for model, cats in metrics.items()}


def checkout(rev: str, tmp: Path) -> Path:
    if rev == "WORKTREE":
        return ROOT
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"], check=True,
                         capture_output=True, text=True).stdout.strip()
    path = tmp / f"src-{sha[:10]}"
    if not path.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), sha], check=True,
                       capture_output=True)
    return path


def run_one(spec: str, tmp: Path, argv: list[str], index: int) -> dict:
    rev, _, threads = spec.partition(":")
    src = checkout(rev, tmp)
    out = tmp / f"run-{index}"
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONHASHSEED": "0", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    if threads:
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    cmd = [sys.executable, "-m", "t2v.cli", *argv[:1], "--out", str(out), *argv[1:]]
    print(f"[{spec}] {' '.join(cmd[2:])}", flush=True)
    proc = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"[{spec}] failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"spec": spec, "stages": {s: digest(out, p) for s, p in STAGES.items()}, "scores": scores(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("specs", nargs="+", help="REV or REV:THREADS (REV may be WORKTREE)")
    ap.add_argument("--experiment", action="store_true", help="a miniature t2v experiment instead of t2v demo")
    ap.add_argument("--out", default="runs/bench/same_result.json")
    args = ap.parse_args()
    argv = EXPERIMENT if args.experiment else DEMO
    with tempfile.TemporaryDirectory(prefix="same-result-") as d:
        tmp = Path(d)
        try:
            runs = [run_one(s, tmp, argv, i) for i, s in enumerate(args.specs)]
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], capture_output=True)
    first = runs[0]
    print(f"\n{'stage':<30}" + "".join(f"{r['spec']:>20}" for r in runs))
    for stage in STAGES:
        if first["stages"][stage] is None:
            continue
        row = [("same" if r["stages"][stage] == first["stages"][stage] else "DIFFERS") if i else
               first["stages"][stage] for i, r in enumerate(runs)]
        print(f"{stage:<30}" + "".join(f"{v:>20}" for v in row))
    print(f"{'report scores':<30}{'':>20}" + "".join(
        f"{('same' if r['scores'] == first['scores'] else 'DIFFERS'):>20}" for r in runs[1:]))
    for r in runs:
        r["same_as_first"] = r["stages"] == first["stages"] and r["scores"] == first["scores"]
    result = {"kind": "experiment" if args.experiment else "demo", "argv": argv, "runs": runs,
              "identical": all(r["same_as_first"] for r in runs)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"identical: {result['identical']}  -> {args.out}")


if __name__ == "__main__":
    main()
