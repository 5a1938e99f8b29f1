"""`t2v plan`: memory per GPU from the config alone, checked against the peak of one training step of the
tiny preset on the CPU (fp32, live tensor bytes: what the plan counts, without a CUDA allocator)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from t2v.config import load_config
from t2v.training.memory import model_shape, plan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import activation_memory  # noqa: E402


@pytest.mark.parametrize("overrides", [
    ["train.batch_size=16"],  # the tiny preset, in the calibration grid
    ["train.batch_size=8", "model.head_dim=64", "model.num_layers=3"],  # wider, another depth: left out of it
    ["train.batch_size=8", "model.num_layers=6", "model.gradient_checkpointing=true"],
])
def test_plan_is_within_a_quarter_of_the_measured_peak(overrides):
    """Against the peak of live tensor bytes (torch.profiler): the same on every machine, unlike the RSS."""
    measured = activation_memory.measure(overrides)["peak_bytes"] / 1e9
    cfg = load_config("tiny", ["vae.path=null", "train.mixed_precision='no'", *overrides])
    ckpt = cfg.model.gradient_checkpointing
    row = next(x for x in plan(cfg, gpus=1, gpu_mem_gb=24) if x["strategy"] == "ddp" and x["gradient_checkpointing"] == ckpt)
    estimate = row["states_gb"] + row["activations_gb"]  # what the measured process holds (no VAE is trained)
    assert abs(estimate - measured) / measured <= 0.25, (estimate, measured)


def test_the_calibration_bench_fits_its_points(tmp_path):
    out = tmp_path / "am.json"
    assert activation_memory.main(["--quick", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["worst_relative_error"] < 0.1 and len(res["points"]) == 10
    c = res["constants"]
    assert c["c_layer"] > c["c_layer_checkpointed"] > 0  # checkpointing keeps less per layer


def test_sharding_divides_the_states_and_checkpointing_the_activations():
    cfg = load_config("dit-b-256", ["vae.path=null"])
    shape = model_shape(cfg)
    assert 100e6 < shape.trainable < 150e6 and shape.tokens == 9 * 32 * 32 // 4  # 33 frames -> 9, 256/8 = 32
    rows = {(r["strategy"], r["gradient_checkpointing"]): r for r in plan(cfg, gpus=8, nodes=2, shape=shape)}
    assert rows[("fsdp", False)]["states_gb"] == pytest.approx(rows[("ddp", False)]["states_gb"] / 8)
    assert rows[("hsdp", False)]["states_gb"] == pytest.approx(rows[("ddp", False)]["states_gb"] / 4)  # 4 per node
    assert rows[("ddp", True)]["activations_gb"] < rows[("ddp", False)]["activations_gb"]
    assert all(r["fits"] for r in rows.values())  # 122M parameters at batch 8 on 80 GB
    tight = plan(cfg, gpus=8, gpu_mem_gb=8, shape=shape)
    assert not all(r["fits"] for r in tight)
    with pytest.raises(ValueError, match="multiple of --nodes"):
        plan(cfg, gpus=6, nodes=4, shape=shape)


def test_a_pretrained_model_is_planned_from_its_config_alone(tmp_path, capsys):
    from diffusers import WanTransformer3DModel

    from t2v.cli import main as t2v_main
    from t2v.models.backbone import wan_config

    WanTransformer3DModel.save_config(WanTransformer3DModel(**wan_config(16, 64, 2, 2, 16, 2.0, [1, 2, 2])),
                                      tmp_path / "dit")  # config.json only, no weights
    assert t2v_main(["plan", "--config", "wan-1.3b-finetune", "--gpus", "8", f"model.pretrained={tmp_path / 'dit'}",
                     "vae.path=null"]) == 0
    out = capsys.readouterr().out
    assert "fsdp" in out and "trainable parameters, 2 layers" in out
    assert t2v_main(["plan", "--config", "wan-1.3b-finetune", f"model.pretrained={tmp_path / 'none'}"]) == 2
    assert "needs its config.json" in capsys.readouterr().err
