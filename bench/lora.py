"""LoRA against full fine-tuning: trainable parameters and the trainer's step time, measured in one run.

Both sides are the trainer's own micro-step (``t2v.training.loop._micro_step``: cached batch → caption dropout →
flow-matching loss → ``accelerate`` backward, clipping, AdamW over the trainable parameters, LR schedule) on the
same batch and the same initial weights: the tiny preset's Wan DiT (4 layers, 4 heads × 32, FFN ×4, latents
4 × 8 × 12 × 12, batch 16) without a text adapter, as a pretrained DiT is fine-tuned (text 768 wide: MiniLM's
layers [0, -1]). A: ``model.lora`` as in t2v/presets/wan-1.3b-finetune.yaml (rank 32, alpha 32 on
to_q/to_k/to_v/to_out.0; ``--rank``/``--targets`` change it); B: every weight trains.

Timed alternately (ABAB…) so that a slow spell of the machine hits both; the ratio is the median of the rounds'
ratios (each A over the B timed right after it), beside the ratio of the medians. The parameter
counts of Wan2.1-T2V-1.3B (its published config, built on the meta device) are reported beside them.

    python bench/lora.py --out runs/bench/lora.json [--rounds 7 --steps 5 --rank 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from train_step import alternate, trainer_step

ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]
# Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json
WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
                text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)


def counts(model: torch.nn.Module) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": sum(p.numel() for p in model.parameters())}


def build(batch: int, frames: int, size: int, text_len: int, rank: int, targets: list[str]):
    """(config, LoRA model, fully trainable model with the same base weights, x0, text)."""
    from t2v.config import LoRAConfig, load_config
    from t2v.models.backbone import T2VTransformer
    from t2v.models.lora import add_lora

    cfg = load_config("tiny", ["model.text_adapter_layers=0", "model.text_adapter_dim=0", f"train.batch_size={batch}"])
    m, width = cfg.model, 768
    torch.manual_seed(0)
    full = T2VTransformer.build("wan", 4, width, m.num_layers, m.num_heads, m.head_dim, m.ffn_mult, m.patch_size,
                                frames, size, abs_pos_embed=m.abs_pos_embed)
    lora = T2VTransformer.build("wan", 4, width, m.num_layers, m.num_heads, m.head_dim, m.ffn_mult, m.patch_size,
                                frames, size, abs_pos_embed=m.abs_pos_embed)
    lora.load_state_dict(full.state_dict())
    add_lora(lora, LoRAConfig(rank=rank, alpha=rank, target_modules=targets))
    with torch.no_grad():  # B = 0 at the start; a trained LoRA's B is not (the same FLOPs either way)
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 1e-3)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(batch, 4, frames, size, size, generator=g)
    text = torch.randn(batch, text_len, width, generator=g)
    return cfg, lora, full, x0, text


def wan_1_3b_counts(rank: int, targets: list[str]) -> dict[str, int]:
    from accelerate import init_empty_weights

    from t2v.config import LoRAConfig
    from t2v.models.backbone import T2VTransformer
    from t2v.models.lora import add_lora

    with init_empty_weights():
        model = T2VTransformer("wan", WAN_1_3B, 4096, 0, 9, 60)
        add_lora(model, LoRAConfig(rank=rank, alpha=rank, target_modules=targets))
    return counts(model)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/bench/lora.json"))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=5, help="optimiser steps per timed round")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--frames", type=int, default=8, help="latent frames (the tiny preset's)")
    p.add_argument("--size", type=int, default=12, help="latent size (the tiny preset's)")
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--targets", default=",".join(ATTENTION), help="comma-separated model.lora.target_modules")
    a = p.parse_args(argv)
    targets = a.targets.split(",")

    cfg, lora, full, x0, text = build(a.batch, a.frames, a.size, 48, a.rank, targets)
    n_lora, n_full = counts(lora), counts(full)
    # the LoRA side must train its adapters and nothing else, or the comparison means nothing
    frozen = {n: q.detach().clone() for n, q in lora.named_parameters() if not q.requires_grad}
    step_lora, step_full = trainer_step(cfg, lora, x0, text), trainer_step(cfg, full, x0, text)
    timing = alternate(step_lora, step_full, a.rounds, a.steps)
    assert all(torch.equal(q, frozen[n]) for n, q in lora.named_parameters() if n in frozen), "frozen weights moved"
    rounds = [a_ / b_ for a_, b_ in zip(timing["ours_all_s"], timing["bare_all_s"], strict=True)]
    timing = {"lora_s": timing["ours_s"], "full_s": timing["bare_s"], "ratio": statistics.median(rounds),
              "ratio_of_medians": timing["ratio"], "round_ratios": rounds,
              "lora_all_s": timing["ours_all_s"], "full_all_s": timing["bare_all_s"]}
    big = wan_1_3b_counts(a.rank, targets)
    result = {
        "machine": {"threads": torch.get_num_threads(), "torch": torch.__version__},
        "lora": {"rank": a.rank, "alpha": a.rank, "target_modules": targets},
        "tiny": {"lora": n_lora, "full": n_full["trainable"], "fraction": n_lora["trainable"] / n_full["trainable"],
                 "batch": a.batch, "latent": [4, a.frames, a.size, a.size], **timing},
        "wan_1_3b": {"lora": big["trainable"], "full": big["total"] - big["trainable"],
                     "fraction": big["trainable"] / (big["total"] - big["trainable"])},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    t, w = result["tiny"], result["wan_1_3b"]
    print(f"tiny preset DiT: LoRA rank {a.rank} trains {t['lora']['trainable'] / 1e3:.0f}K of {t['full'] / 1e6:.2f}M "
          f"parameters ({t['fraction']:.1%}); step {t['lora_s']:.3f} s vs full fine-tuning {t['full_s']:.3f} s "
          f"(median of round ratios {t['ratio']:.3f}); Wan2.1-T2V-1.3B: {w['lora'] / 1e6:.1f}M of {w['full'] / 1e6:.0f}M ({w['fraction']:.2%})")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
