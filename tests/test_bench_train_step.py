"""bench/train_step.py at toy size: the trainer's and pipeline's overhead figures in the docs come from it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

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


def test_the_trainer_step_trains(tmp_path):
    """The timed trainer closure is a real optimiser step: the weights move."""
    import torch

    cfg, ours, _, x0, text = train_step.build(2, 2, 4, text_len=5)
    before = [p.detach().clone() for p in ours.parameters()]
    step = train_step.trainer_step(cfg, ours, x0, text)
    step(), step()  # the first is at warm-up's lr 0
    assert any(not torch.equal(a, b) for a, b in zip(before, ours.parameters()))
