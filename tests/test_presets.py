"""Every preset in t2v/presets loads strictly and builds; the GPU presets are built at tiny scale on CPU
with stand-ins of the same classes they use (AutoencoderKLWan, a T5 encoder, a Wan checkpoint folder),
trained one step and sampled; the from-scratch GPU DiT is counted at full size on the meta device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate import init_empty_weights

from t2v.config import load_config
from t2v.models.build import build_text_encoder, build_transformer, build_vae
from t2v.objective import flow_matching_loss
from t2v.train import build_pipeline

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / "t2v" / "presets").glob("*.yaml"))


@pytest.fixture(scope="module")
def wan_stand_ins(tmp_path_factory) -> dict[str, str]:
    """Tiny local folders shaped like the Wan2.1 diffusers repo: vae/, text_encoder/, tokenizer/, transformer/."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    root = tmp_path_factory.mktemp("wan")
    torch.manual_seed(0)
    AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                     temperal_downsample=[False, True, True], latents_mean=[0.0] * 16,
                     latents_std=[1.0] * 16).save_pretrained(root / "vae")
    words = ["▁a", "▁red", "▁circle", "▁moves", "▁left", "▁panda", "▁at", "▁2", "▁seconds", "."]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(w, -1.0 - i) for i, w in enumerate(words)]
    tok = T5Tokenizer(vocab=vocab, extra_ids=0)
    tok.save_pretrained(root / "tokenizer")
    T5EncoderModel(T5Config(vocab_size=len(vocab), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                            relative_attention_num_buckets=8)).save_pretrained(root / "text_encoder")
    WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=16,
                          out_channels=16, text_dim=32, freq_dim=32, ffn_dim=64,
                          num_layers=1).save_pretrained(root / "transformer")
    return {k: str(root / k) for k in ("vae", "text_encoder", "tokenizer", "transformer")}


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_builds_trains_and_samples_at_tiny_scale(preset, wan_stand_ins, tiny_manifest, tmp_path):
    cfg = load_config(preset)  # strict: any typo in a shipped preset fails here
    ov = [f"train.output_dir={tmp_path}", "data.num_frames=5", "data.size=32", "sample.steps=2"]
    if cfg.vae.kind == "wan":
        ov += [f"vae.path={wan_stand_ins['vae']}", f"text.path={wan_stand_ins['text_encoder']}",
               f"text.tokenizer={wan_stand_ins['tokenizer']}", "text.window=8"]
    else:
        ov += ["vae.path=null", "vae.block_out_channels=[8, 16]", "data.num_frames=4"]
    if cfg.model.pretrained:
        ov += [f"model.pretrained={wan_stand_ins['transformer']}"]
    else:
        ov += ["model.num_layers=1", "model.num_heads=2", "model.head_dim=16"]
    cfg = load_config(preset, ov)
    text_encoder, vae = build_text_encoder(cfg), build_vae(cfg)
    model = build_transformer(cfg, vae, text_encoder.dim)
    assert model.config.backbone == cfg.model.backbone
    video = torch.rand(1, 3, cfg.data.num_frames, 32, 32) * 2 - 1
    x0 = vae.encode(video)
    text, mask = text_encoder(["a red circle moves left at 2 seconds ."])
    loss = flow_matching_loss(model, x0, text, mask, cfg.objective)
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    pipe = build_pipeline(model, vae, text_encoder, cfg)
    frames = pipe("a red panda", num_frames=cfg.data.num_frames, height=32, width=32, num_inference_steps=1,
                  progress=False).frames
    assert frames.shape == (1, cfg.data.num_frames, 32, 32, 3)


def test_gpu_dit_preset_is_100_to_200m_parameters():
    from t2v.models.backbone import T2VTransformer

    cfg = load_config(ROOT / "t2v/presets/dit-b-256.yaml")
    m = cfg.model
    with init_empty_weights():
        model = T2VTransformer.build(m.backbone, 16, 4096, m.num_layers, m.num_heads, m.head_dim, m.ffn_mult,
                                     m.patch_size, 9, cfg.data.size // 8)
    n = sum(p.numel() for p in model.parameters())
    assert 100e6 <= n <= 200e6, f"{n / 1e6:.1f}M parameters"
