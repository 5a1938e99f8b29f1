"""`t2v plan`: memory per GPU from the config alone, checked against the peak one training step of the tiny
preset takes on this CPU (fp32: what the plan counts, without a CUDA allocator)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from t2v.config import load_config
from t2v.training.memory import model_shape, plan

MEASURE = r"""
import json, resource, sys, torch
from t2v.config import load_config
from t2v.models.build import build_transformer, build_vae
from t2v.objective import flow_matching_loss
torch.set_num_threads(1)
cfg = load_config("tiny", sys.argv[1:])
vae = build_vae(cfg)  # untrained (vae.path=null): the same shapes
from accelerate import init_empty_weights
with init_empty_weights():  # every module the build imports, imported (and compiled, in a fresh venv) first
    build_transformer(cfg, vae, 768)
rss0 = int(open("/proc/self/statm").read().split()[1]) * 4096
model = build_transformer(cfg, vae, 768)
opt = torch.optim.AdamW(model.parameters(), 1e-3)
B, f, hw = cfg.train.batch_size, vae.latent_frames(cfg.data.num_frames), cfg.data.size // vae.spatial_factor
x0, text = torch.randn(B, 4, f, hw, hw), torch.randn(B, 96, 768)
flow_matching_loss(model, x0, text, torch.ones(B, 96, dtype=torch.bool), cfg.objective).backward()
opt.step()
print(json.dumps({"delta_gb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0) / 1e9}))
"""


@pytest.mark.parametrize("overrides", [["train.batch_size=16"], ["train.batch_size=8", "model.head_dim=64"]])
def test_plan_is_within_a_quarter_of_the_measured_cpu_peak(overrides, tmp_path):
    ov = ["vae.path=null", "train.mixed_precision='no'", *overrides]
    # an empty bytecode cache: every run measures as in a fresh venv (imports compile their modules)
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(tmp_path / "pycache")}
    r = subprocess.run([sys.executable, "-c", MEASURE, *ov], capture_output=True, text=True, timeout=300, env=env)
    measured = json.loads(r.stdout.strip().splitlines()[-1])["delta_gb"]
    cfg = load_config("tiny", ov)
    row = next(x for x in plan(cfg, gpus=1, gpu_mem_gb=24) if x["strategy"] == "ddp" and not x["gradient_checkpointing"])
    estimate = row["states_gb"] + row["activations_gb"]  # what the measured process holds (no VAE is trained)
    assert abs(estimate - measured) / measured <= 0.25, (estimate, measured)


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
