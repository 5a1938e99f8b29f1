"""LoRA fine-tuning (``model.lora``) of a tiny pretrained Wan DiT: only the adapters train, the saved LoRA is
diffusers' format (a plain ``WanTransformer3DModel`` + ``load_lora_adapter`` gives the trainer's output), the
pipeline holds the merged model, ``t2v generate --lora`` applies it, resume is exact, bad configs name the key."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_overrides
from safetensors.torch import load_file

from t2v.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "t2v/presets/tiny.yaml")
TARGETS = "[to_q, to_k, to_v, to_out.0]"
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The "pretrained" model: a tiny WanTransformer3DModel folder (4 latent channels as the tiny VAE makes, text
    768 wide as MiniLM's layers [0, -1])."""
    from diffusers import WanTransformer3DModel

    from t2v.models.backbone import wan_config

    folder = tmp_path_factory.mktemp("base") / "transformer"
    torch.manual_seed(0)
    WanTransformer3DModel(**wan_config(4, 768, 2, 2, 16, 2.0, [1, 2, 2])).save_pretrained(folder)
    return folder


def lora_overrides(manifest: Path, base: Path, out: Path, **extra) -> list[str]:
    return tiny_overrides(manifest, out, **{
        "model.pretrained": str(base), "model.text_adapter_layers": 0, "model.text_adapter_dim": 0,
        "model.abs_pos_embed": "false",  # a plain diffusers Wan has no absolute positions: compare like with like
        "model.lora.rank": 4, "model.lora.alpha": 8, "model.lora.target_modules": TARGETS,
        "optim.lr": 1e-2, "train.ema_decay": 0.9, "train.report_to": "none", **extra})


@pytest.fixture(scope="module")
def lora_run(tiny_manifest, base, tmp_path_factory):
    """4 LoRA steps with EMA, checkpoints at 2 and 4, in process (t2v.train.train is what `t2v train` runs)."""
    from t2v.train import train

    out = tmp_path_factory.mktemp("lora")
    ov = lora_overrides(tiny_manifest, base, out)
    pipeline = train(load_config(TINY, ov))
    return out / "run", ov, pipeline


def _inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 4, 4, 8, 8, generator=g), torch.tensor([150.0, 800.0]),
            torch.randn(2, 7, 768, generator=g))  # latents (B, C, F, H, W), timesteps, text (B, L, D) unpadded


def _trainer_model(run: Path, base: Path, cfg):
    """The trainer's model at its last checkpoint as sampling sees it: the LoRA'd transformer with the EMA
    averages of its trainable weights swapped in."""
    from t2v.models.backbone import T2VTransformer
    from t2v.models.lora import add_lora

    ckpt = run / "checkpoints" / "step-000004"
    model = T2VTransformer.from_dit(str(base), "wan", 0, 4, 16, False)
    add_lora(model, cfg.model.lora)
    model.load_state_dict(load_file(str(ckpt / "model.safetensors")))
    ema = torch.load(next(ckpt.glob("custom_checkpoint_*")), weights_only=False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(ema["shadow_params"]) == len(trainable)  # the EMA copies the adapters only
    with torch.no_grad():
        for p, s in zip(trainable, ema["shadow_params"], strict=True):
            p.copy_(s)
    return model.eval()


def test_only_the_adapters_train_and_the_base_stays_bit_identical(lora_run, base):
    run, _, _ = lora_run
    ckpt = run / "checkpoints" / "step-000004"
    state = load_file(str(ckpt / "model.safetensors"))
    base_state = load_file(str(base / "diffusion_pytorch_model.safetensors"))
    lora_keys = [k for k in state if ".lora_" in k]
    assert len(lora_keys) == 2 * 4 * 2 * 2  # A and B × 4 projections × 2 attentions (self, cross) × 2 blocks
    frozen = {k.removeprefix("dit.").replace(".base_layer.", "."): v for k, v in state.items() if k not in lora_keys}
    assert frozen.keys() == base_state.keys()
    for k, v in base_state.items():
        assert torch.equal(frozen[k], v), k  # bit-identical: the base never moved
    assert all(state[k].abs().max() > 0 for k in lora_keys if "lora_B" in k)  # B starts at zero: it trained
    # the optimiser holds the adapters' parameters and moments, nothing else
    opt = torch.load(ckpt / "optimizer.bin", weights_only=False)
    assert len(opt["param_groups"][0]["params"]) == len(lora_keys) == len(opt["state"])


def test_saved_lora_is_diffusers_format_and_reproduces_the_trainer(lora_run, base):
    from diffusers import WanTransformer3DModel

    from t2v.models.backbone import T2VTransformer

    run, ov, pipeline = lora_run
    folder = run / "lora"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", LORA_WEIGHTS]
    saved = load_file(str(folder / LORA_WEIGHTS))
    assert saved and all(k.startswith("transformer.blocks.") and ".lora_" in k for k in saved)
    card = (folder / "README.md").read_text()
    assert f"base_model: {base}" in card and "base_model_relation: adapter" in card and "- lora" in card
    assert f"A LoRA of `{base}` (rank 4, alpha 8, on `to_q`, `to_k`, `to_v`, `to_out.0`)" in card
    assert "LoRA (rank 4, alpha 8" in (pipeline / "README.md").read_text()

    plain = WanTransformer3DModel.from_pretrained(base).eval()  # diffusers alone: no dense-t2v code involved
    plain.load_lora_adapter(str(folder), prefix="transformer", weight_name=LORA_WEIGHTS)
    merged = T2VTransformer.from_pretrained(pipeline / "transformer").eval()  # the exported pipeline's
    assert not any(".lora_" in k or "base_layer" in k for k in merged.state_dict())  # a plain, merged model
    trainer = _trainer_model(run, base, load_config(TINY, ov))
    x, t, text = _inputs()
    with torch.no_grad():
        want = trainer(x, t, text)
        got = plain(x, t, text, return_dict=False)[0]
        assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
        assert torch.allclose(merged(x, t, text), want, atol=1e-5)
        # ...and the comparison can fail: the base alone answers differently
        plain.disable_lora()
        assert (plain(x, t, text, return_dict=False)[0] - want).abs().max() > 1e-3


def test_generate_with_lora_applies_it(lora_run, base, tmp_path):
    """A pipeline of the base model + ``--lora`` = the run's merged pipeline; without it, another video;
    ``--lora-scale 0`` = the base."""
    from diffusers import WanTransformer3DModel

    from t2v.cli import main as t2v_main
    from t2v.generate import load_pipeline
    from t2v.models.backbone import T2VTransformer

    run, _, pipeline = lora_run
    base_pipe = tmp_path / "base-pipeline"  # the run's pipeline with the base transformer in it
    shutil.copytree(pipeline, base_pipe)
    plain = T2VTransformer.from_pretrained(pipeline / "transformer")
    plain.dit.load_state_dict(WanTransformer3DModel.from_pretrained(base).state_dict())
    plain.save_pretrained(base_pipe / "transformer")
    (base_pipe / "t2v_config.yaml").unlink()  # a pipeline of the base carries no LoRA in its config

    def frames(model, **lora):
        pipe = load_pipeline(model, "cpu", **lora)
        return pipe("a red circle moves left", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                    progress=False).frames[0].astype(int)

    with_lora, merged = frames(base_pipe, lora=run / "lora"), frames(pipeline)
    without, off = frames(base_pipe), frames(base_pipe, lora=run / "lora", lora_scale=0.0)
    assert np.abs(with_lora - merged).max() <= 1  # uint8 rounding of float differences
    assert np.abs(with_lora - without).mean() > 1  # the LoRA changes the video
    assert np.array_equal(off, without)
    out = tmp_path / "a.gif"
    assert t2v_main(["generate", "--model", str(base_pipe), "--lora", str(run / "lora"), "--lora-scale", "0.5",
                     "--prompt", "a red circle", "--out", str(out), "--steps", "2"]) == 0
    assert out.is_file()
    assert t2v_main(["generate", "--model", str(base_pipe), "--lora", str(tmp_path), "--prompt", "x",
                     "--out", str(tmp_path / "x.gif")]) == 2  # not a LoRA folder: a one-line error


def test_resume_of_a_lora_run_is_exact(lora_run, tiny_manifest, base, tmp_path):
    """2 steps, stop, resume to 4 == 4 steps straight: adapters, their EMA, optimiser, RNG, data position."""
    from t2v.train import train

    run, _, _ = lora_run
    ov = lora_overrides(tiny_manifest, base, tmp_path)
    train(load_config(TINY, [*ov, "train.max_steps=2"]))
    train(load_config(TINY, ov), resume="latest")
    assert json.loads((tmp_path / "run" / "train_summary.json").read_text())["steps"] == 4
    a = load_file(str(run / "lora" / LORA_WEIGHTS))
    b = load_file(str(tmp_path / "run" / "lora" / LORA_WEIGHTS))
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max() <= 1e-6, k


@pytest.mark.parametrize("overrides, message", [
    (["model.lora.rank=0", f"model.lora.target_modules={TARGETS}"], "model.lora.rank: 0 turns LoRA off"),
    (["model.lora.rank=-2"], "model.lora.rank: must be >= 0"),
    (["model.lora.rank=8"], "model.lora.target_modules: empty"),
    (["model.lora.rank=8", f"model.lora.target_modules={TARGETS}", "model.backbone=latte", "model.pretrained=x"],
     "model.lora.rank: LoRA is supported for model.backbone=wan only, got model.backbone='latte'"),
    (["model.lora.rank=8", f"model.lora.target_modules={TARGETS}"], "model.lora.rank=8 needs model.pretrained"),
    (["model.lora.rank=8", f"model.lora.target_modules={TARGETS}", "model.pretrained=x", "model.lora.dropout=1"],
     "model.lora.dropout: must be in"),
    (["model.lora.rnak=8"], "unknown key.*model.lora.rnak"),
])
def test_bad_lora_configs_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TINY, overrides)


def test_unknown_target_modules_list_the_dits_layers(base, caplog):
    from t2v.config import LoRAConfig
    from t2v.models.backbone import T2VTransformer
    from t2v.models.lora import add_lora

    with pytest.raises(ValueError, match=r"model.lora.target_modules: none of \['q_proj'\].*to_out\.0"):
        add_lora(T2VTransformer.from_dit(str(base), "wan", 1, 4, 8), LoRAConfig(rank=4, target_modules=["q_proj"]))
    model = T2VTransformer.from_dit(str(base), "wan", 1, 4, 8)
    with caplog.at_level(logging.WARNING):  # our own text adapter: frozen under LoRA unless asked for
        add_lora(model, LoRAConfig(rank=4, target_modules=["to_q"]))
    assert "model.text_adapter_layers=1 is frozen under model.lora" in caplog.text
    assert not any(p.requires_grad for p in model.text_adapter.parameters())
    other = T2VTransformer.from_dit(str(base), "wan", 1, 4, 8)
    add_lora(other, LoRAConfig(rank=4, target_modules=["to_q"], train_text_adapter=True))
    assert all(p.requires_grad for p in other.text_adapter.parameters())


def launch_two_ranks(manifest: Path, base: Path, out: Path, parallel: str) -> Path:
    """A 2-step LoRA run on 2 CPU ranks, launched with the shipped launch config as users launch it."""
    from test_t2v_train import BIN, _free_port, run

    ov = lora_overrides(manifest, base, out, **{"train.max_steps": 2, "train.checkpoint_every": 100,
                                                "train.parallel": parallel})
    run([str(BIN / "accelerate"), "launch", "--config_file", str(ROOT / "configs/accelerate/multi_gpu.yaml"),
         "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(_free_port()),
         "train_t2v.py", "--config", TINY, *ov], env={"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"})
    return out / "run"


@pytest.fixture(scope="module")
def ddp_run(tiny_manifest, base, tmp_path_factory) -> Path:
    return launch_two_ranks(tiny_manifest, base, tmp_path_factory.mktemp("ddp"), "ddp")


def test_two_process_ddp_trains_the_same_adapters_on_both_ranks(ddp_run):
    """DDP over frozen weights: only the adapters are in the reducer (no unused-parameter error), both ranks end
    with the same weights, rank 0 writes the LoRA."""
    summary = json.loads((ddp_run / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and "MULTI_CPU" in summary["distributed_type"]
    c0, c1 = summary["param_checksums"]
    assert c0 == c1, "parameters differ across ranks"
    assert load_file(str(ddp_run / "lora" / LORA_WEIGHTS))


def test_fsdp_lora_ends_where_ddp_does(ddp_run, tiny_manifest, base, tmp_path):
    """FSDP2 shards the frozen base and the adapters alike (mixed requires_grad in one block) and trains the same
    adapters as DDP on the same data and seed."""
    out = launch_two_ranks(tiny_manifest, base, tmp_path, "fsdp")
    assert json.loads((out / "train_summary.json").read_text())["parallel"] == "fsdp"
    a, b = load_file(str(out / "lora" / LORA_WEIGHTS)), load_file(str(ddp_run / "lora" / LORA_WEIGHTS))
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max() <= 1e-5, k


def test_lora_bench_counts_and_times_both_sides(tmp_path):
    """bench/lora.py at toy size (the figures in docs/t2v.md come from it): LoRA trains a fraction of the weights."""
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    import lora as bench

    out = tmp_path / "lora.json"
    assert bench.main(["--out", str(out), "--rounds", "2", "--steps", "1", "--batch", "2", "--frames", "2",
                       "--size", "4", "--rank", "4"]) == 0  # the frozen weights are asserted unmoved inside
    res = json.loads(out.read_text())
    tiny, big = res["tiny"], res["wan_1_3b"]
    assert 0 < tiny["lora"]["trainable"] < tiny["full"] == tiny["lora"]["total"] - tiny["lora"]["trainable"]
    assert len(tiny["round_ratios"]) == 2 and tiny["ratio"] > 0 and tiny["lora_s"] > 0 and tiny["full_s"] > 0
    assert big["full"] == 1_418_996_800 and big["lora"] == 30 * 8 * 4 * (1536 + 1536)  # rank 4, 8 projections


def test_a_trained_text_adapter_travels_with_the_lora(base, tmp_path):
    """model.lora.train_text_adapter: the adapter trains, is saved as text_adapter.safetensors beside the LoRA
    (which diffusers ignores) and `load_lora` puts both back: the same output as the trained model."""
    from t2v.config import LoRAConfig
    from t2v.models.backbone import T2VTransformer
    from t2v.models.lora import add_lora, load_lora, save_lora

    torch.manual_seed(3)
    trained = T2VTransformer.from_dit(str(base), "wan", 1, 4, 8)
    add_lora(trained, LoRAConfig(rank=4, target_modules=["to_q", "to_v"], train_text_adapter=True))
    with torch.no_grad():  # stand-ins for trained weights: every trainable tensor moved
        for p in trained.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    save_lora(trained, tmp_path / "lora")
    assert sorted(p.name for p in (tmp_path / "lora").iterdir()) == [LORA_WEIGHTS, "text_adapter.safetensors"]
    fresh = T2VTransformer.from_dit(str(base), "wan", 1, 4, 8)
    x, t, text = _inputs()
    with torch.no_grad():
        before = fresh.eval()(x, t, text)
        load_lora(fresh, tmp_path / "lora")
        want, got = trained.eval()(x, t, text), fresh(x, t, text)
    assert torch.allclose(got, want, atol=1e-6) and (before - want).abs().max() > 1e-3
    with pytest.raises(ValueError, match="holds a trained text adapter"):
        load_lora(T2VTransformer.from_dit(str(base), "wan", 0, 4, 8), tmp_path / "lora")
