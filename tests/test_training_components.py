"""The trainer's components on their own: the model's token count, throughput and MFU, the expected run
time, the time cap, the EMA swap, checkpoint lookup and pruning, the LR schedule."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from t2v.config import OptimConfig, TrainConfig
from t2v.models.backbone import T2VTransformer
from t2v.training.checkpoint import latest_checkpoint, load_checkpoint, prune_checkpoints
from t2v.training.ema import ema_weights
from t2v.training.loop import TimeCap
from t2v.training.metrics import ThroughputMeter, expected_run, mfu, throughput
from t2v.training.optim import build_optimizer, build_scheduler


@pytest.mark.parametrize("backbone", ["wan", "latte"])
def test_the_model_counts_the_tokens_its_dit_makes(backbone):
    """patch (2, 2, 2): Wan patches time too, Latte only space; the count equals what the patch embedding emits."""
    model = T2VTransformer.build(backbone, 4, 32, 1, 2, 16, 2.0, [2, 2, 2], 4, 8)
    seen = []
    if backbone == "wan":  # Conv3d: (B, D, F', H', W')
        model.dit.patch_embedding.register_forward_hook(lambda m, i, o: seen.append(o.shape[2:].numel()))
    else:  # PatchEmbed per frame: (B·F, N, D)
        model.dit.pos_embed.register_forward_hook(lambda m, i, o: seen.append(o.shape[0] // 2 * o.shape[1]))
    latents = torch.randn(2, 4, 4, 8, 8)  # (B, C, F, H, W)
    with torch.no_grad():
        model(latents, torch.full((2,), 500.0), torch.randn(2, 3, 32))
    assert model.patch_volume == (8 if backbone == "wan" else 4)
    assert model.tokens(latents.shape) == model.tokens(latents.shape[1:]) == seen[0]


def test_mfu_is_per_device():
    one = throughput(samples=40, seconds=2.0, world_size=1, tokens_per_sample=16, n_params=1000,
                     peak_flops_per_device=1e9)
    two = throughput(samples=80, seconds=2.0, world_size=2, tokens_per_sample=16, n_params=1000,
                     peak_flops_per_device=1e9)
    # twice the devices, twice the samples: the same work per device, so the same MFU
    assert two["samples_per_s"] == 2 * one["samples_per_s"] == 40
    assert two["samples_per_s_per_device"] == one["samples_per_s_per_device"] == 20
    assert two["tokens_per_s_per_device"] == 20 * 16
    assert two["mfu"] == one["mfu"] == pytest.approx(6 * 1000 * 20 * 16 / 1e9)
    assert mfu(1000, 320.0, 1e9) == pytest.approx(one["mfu"])
    assert "mfu" not in throughput(80, 2.0, 2, 16, 1000)  # unknown peak: no MFU


def test_throughput_meter_counts_between_reads():
    now = [0.0]
    meter = ThroughputMeter(clock=lambda: now[0])
    meter.add(6)
    meter.add(6)
    now[0] = 4.0
    assert meter.read(world_size=2, tokens_per_sample=1, n_params=1)["samples_per_s"] == 3
    meter.add(2)
    now[0] = 5.0
    assert meter.read(world_size=2, tokens_per_sample=1, n_params=1)["samples_per_s_per_device"] == 1


def test_expected_run():
    # 10 steps in 20 s: 2 s/step
    assert expected_run(10, 10, 20.0, max_steps=100) == (100, 2.0, pytest.approx(200 / 60))
    end, _, minutes = expected_run(10, 10, 20.0, max_steps=100, cap_minutes=1.0)  # 60 s cap: stops at step 31
    assert end == 31 and minutes == pytest.approx(62 / 60)
    end, _, _ = expected_run(10, 10, 20.0, max_steps=100, cap_minutes=1.0, min_steps=50)  # not inside the curriculum
    assert end == 50
    assert expected_run(10, 10, 20.0, max_steps=20, cap_minutes=1.0)[0] == 20  # max_steps first


def test_time_cap_is_not_honoured_inside_the_curriculum(caplog):
    now = [0.0]
    cap = TimeCap(minutes=1.0, curriculum_end=6, clock=lambda: now[0])
    assert not cap.reached(1)  # within the cap
    now[0] = 61.0
    with caplog.at_level(logging.WARNING, logger="t2v.training.loop"):
        assert [cap.reached(s) for s in range(2, 8)] == [False, False, False, False, True, True]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "passed at step 2" in warnings[0] and "= 6)" in warnings[0]
    assert "goes on until the curriculum ends" in warnings[0]
    assert not TimeCap(minutes=0.0, curriculum_end=0, clock=lambda: now[0]).reached(10**6)  # 0: no cap


def test_ema_weights_swaps_in_and_back_also_on_error():
    from diffusers.training_utils import EMAModel

    model = nn.Linear(3, 2)
    ema = EMAModel(model.parameters(), decay=0.5)  # the average starts at the current weights
    averaged = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # "training" moves the model away from its average
    trained = [p.detach().clone() for p in model.parameters()]
    with ema_weights(ema, model) as m:
        assert m is model
        assert all(torch.equal(a, p) for a, p in zip(averaged, model.parameters()))
    assert all(torch.equal(t, p) for t, p in zip(trained, model.parameters()))
    with pytest.raises(RuntimeError), ema_weights(ema, model):
        raise RuntimeError("boom")
    assert all(torch.equal(t, p) for t, p in zip(trained, model.parameters()))
    with ema_weights(None, model):  # no EMA: the model as it is
        assert all(torch.equal(t, p) for t, p in zip(trained, model.parameters()))


def test_checkpoint_lookup_and_pruning(tmp_path):
    ckpts = tmp_path / "checkpoints"
    for step in (2, 4, 6):
        (ckpts / f"step-{step:06d}").mkdir(parents=True)
        (ckpts / f"step-{step:06d}" / "trainer_state.json").write_text(json.dumps({"step": step}))
    (ckpts / "step-000008").mkdir()  # being written: no trainer_state.json yet
    assert latest_checkpoint(tmp_path) == ckpts / "step-000006"
    assert latest_checkpoint(tmp_path / "nothing") is None
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-000006", "step-000008"]
    run = SimpleNamespace(acc=None, out=tmp_path, sharded=False)
    assert load_checkpoint(run, None) is None
    assert load_checkpoint(SimpleNamespace(acc=None, out=tmp_path / "nothing", sharded=False), "latest") is None
    with pytest.raises(ValueError, match="step-000008.*not a checkpoint folder"):
        load_checkpoint(run, str(ckpts / "step-000008"))
    (ckpts / "step-000006" / "sharded").mkdir()  # a train.parallel=fsdp checkpoint, resumed without it
    with pytest.raises(ValueError, match="sharded checkpoint.*train.parallel=fsdp"):
        load_checkpoint(run, "latest")


@pytest.mark.parametrize("schedule", ["constant", "cosine", "wsd"])
def test_lr_schedule_counts_process_steps(schedule):
    model = nn.Linear(2, 2)
    cfg = OptimConfig(lr=0.1, warmup_steps=2, schedule=schedule, decay_steps=4)
    opt = build_optimizer(cfg, model)
    sched = build_scheduler(cfg, TrainConfig(max_steps=10), opt, num_processes=2)
    lrs = []
    for _ in range(20):  # 10 optimiser steps on 2 processes: accelerate steps the scheduler twice per step
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    assert lrs[3] == pytest.approx(0.1)  # warm-up over 2 optimiser steps = 4 scheduler steps
    assert lrs[-1] == (pytest.approx(0.1) if schedule == "constant" else pytest.approx(0.0, abs=1e-9))
    if schedule == "wsd":  # constant through optimiser step 6, then the last 4 steps (8 scheduler steps) decay
        assert lrs[11] == pytest.approx(0.1) and 0.0 < lrs[15] < 0.1 and lrs[12] > lrs[15] > lrs[18]


def test_a_wsd_decay_longer_than_the_run_decays_over_what_follows_the_warm_up(caplog):
    """The tiny preset decays over 400 steps; a 10-step run of it (a test, a smoke run) still trains at its peak
    rate after the warm-up and ends at 0, and says so."""
    model = nn.Linear(2, 2)
    cfg = OptimConfig(lr=0.1, warmup_steps=2, schedule="wsd", decay_steps=400)
    opt = build_optimizer(cfg, model)
    with caplog.at_level("WARNING", logger="t2v.training.optim"):
        sched = build_scheduler(cfg, TrainConfig(max_steps=10), opt, num_processes=1)
    lrs = []
    for _ in range(10):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    assert lrs[1] == pytest.approx(0.1) and all(a > b for a, b in zip(lrs[1:], lrs[2:])) and lrs[-1] == 0.0
    assert "the rate decays over those 8" in caplog.text
