"""bench/train_step.py at toy size: the trainer's and pipeline's overhead figures in the docs come from it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import train_step  # noqa: E402


def test_overhead_bench_times_the_same_work_both_ways(tmp_path):
    out = tmp_path / "t.json"
    assert train_step.main(["--out", str(out), "--rounds", "2", "--steps", "1", "--batch", "2",
                            "--sample-steps", "2"]) == 0  # the sampling halves are asserted equal inside
    res = json.loads(out.read_text())
    for key, goal in (("train_step", 1.10), ("sampling", 1.05)):
        r = res[key]
        assert r["goal"] == goal and len(r["ours_all_s"]) == len(r["bare_all_s"]) == 2
        assert r["ratio"] > 0 and r["ours_s"] > 0 and r["bare_s"] > 0
    e = res["efficiency"]  # the tiny preset's step at batch 2: FLOPs counted, held against measured matmul peaks
    assert e["batch"] == 2 and e["step_gflop"] > 0 and e["fp32_matmul_peak_gflops"] > 0
    assert e["fp32_of_peak"] == pytest.approx(e["step_gflop"] / e["fp32_step_s"] / e["fp32_matmul_peak_gflops"])


def test_the_efficiency_probe_counts_the_presets_flops_once_per_step():
    """probe_step's FLOPs grow with the batch (linear layers, attention) and bf16 autocast leaves the count alone."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from t2v.config import load_config
    from t2v.demo import probe_step

    def count(batch: int, bf16: bool = False) -> int:
        step = probe_step(load_config("tiny", [f"train.batch_size={batch}"]), bf16=bf16)
        with FlopCounterMode(display=False) as c:
            step()
        return c.get_total_flops()

    torch.manual_seed(0)
    one, two = count(1), count(2)
    assert two == pytest.approx(2 * one, rel=0.02) and count(1, bf16=True) == one


def test_the_trainer_step_trains(tmp_path):
    """The timed trainer closure is a real optimiser step: the weights move."""
    import torch

    cfg, ours, _, x0, text = train_step.build(2, 2, 4, text_len=5)
    before = [p.detach().clone() for p in ours.parameters()]
    step = train_step.trainer_step(cfg, ours, x0, text)
    step(), step()  # the first is at warm-up's lr 0
    assert any(not torch.equal(a, b) for a, b in zip(before, ours.parameters()))
