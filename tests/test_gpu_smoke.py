"""The GPU smoke script stays current: its CPU half runs here (the checks that need CUDA are reported skipped,
with the reason), so a change that breaks a GPU path's command line breaks this test first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_smoke_script_runs_its_cpu_checks(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_smoke.py"), "--out", str(tmp_path), "--device",
                        "cpu"], capture_output=True, text=True, timeout=900, cwd=ROOT)
    report = json.loads((tmp_path / "gpu_smoke.json").read_text())
    assert r.returncode == 0 and report["failed"] == [], r.stdout[-4000:]
    checks = report["checks"]
    for name in ("synth", "cache", "train_one_device", "train_fsdp", "train_fsdp_half", "train_fsdp_resume_latest",
                 "generate", "generate_vae_slicing_tiling", "captioner_annotate", "captioner_mini_vlm",
                 "captioner_train", "captioner_run_fast"):
        assert checks[name]["status"] == "ok", name
    assert checks["generate_offload"]["status"] == "skipped" and "GPU" in checks["generate_offload"]["why"]
    assert checks["train_fsdp"]["parallel"] == "fsdp" and checks["train_fsdp"]["world_size"] == 2
    assert checks["train_fsdp_resume_latest"]["steps"] == checks["train_fsdp"]["steps"]
    assert checks["train_one_device"]["throughput"]["memory_peak_gb"] > 0
    assert 0 < checks["train_one_device"]["plan_total_gb"] < 1  # the plan of the same config, beside it
    assert (tmp_path / "videos" / "plain.mp4").is_file()
    assert checks["captioner_train"]["steps"] == 4 and checks["captioner_train"]["processes"] == 1
    learned = [json.loads(ln) for ln in (tmp_path / "captions-learned.jsonl").read_text().splitlines()]
    assert len(learned) == 8  # a 4-step model may end an answer at once: an error record, never a lost clip
    assert all(r["meta"]["mode"] == "fast" if r["status"] == "ok" else "empty answer" in r["error"] for r in learned)
    lines = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]  # one JSON line per check
    assert [ln["check"] for ln in lines if "check" in ln] == list(checks)
    assert checks["train_dit_b_256"]["status"] == "skipped"


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script runs for real (make gpu-smoke)")
def test_gpu_smoke_without_cuda_says_so(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_smoke.py"), "--out", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "no CUDA device on this machine: nothing run" in r.stdout
    assert not (tmp_path / "gpu_smoke.json").exists()
