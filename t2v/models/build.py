"""Build the models of a run from its config: text encoder, VAE, transformer."""

from __future__ import annotations

import logging

import torch

from t2v.config import RunConfig
from t2v.models.backbone import T2VTransformer
from t2v.models.text import TextEncoder
from t2v.models.vae import VideoVAE, build_tiny_kl

log = logging.getLogger(__name__)


def mixed_precision(cfg: RunConfig) -> str:
    """``train.mixed_precision`` with ``auto`` resolved: bf16 where CUDA supports it, else none."""
    mp = cfg.train.mixed_precision
    if mp == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return mp


def text_dtype(cfg: RunConfig) -> torch.dtype:
    """The frozen text encoder's dtype: bf16 in a bf16 run (UMT5-XXL: 11 GB instead of 22), else fp32 — the same
    for ``t2v cache`` and training, so cached and online text states agree."""
    return torch.bfloat16 if mixed_precision(cfg) == "bf16" else torch.float32


def build_text_encoder(cfg: RunConfig, dtype=None) -> TextEncoder:
    """The run's frozen text encoder in ``dtype`` (default: :func:`text_dtype`)."""
    dtype = text_dtype(cfg) if dtype is None else dtype
    return TextEncoder.from_pretrained(cfg.text.path, cfg.text.window, cfg.text.max_tokens, cfg.text.encoder_class,
                                       dtype=dtype, tokenizer=cfg.text.tokenizer, layers=cfg.text.layers)


def build_vae(cfg: RunConfig, dtype=torch.float32) -> VideoVAE:
    if cfg.vae.path is None:
        log.warning("vae.path is not set: using an UNTRAINED tiny AutoencoderKL (fine for tests, useless for "
                    "real runs; make one with `t2v train-vae`)")
        with torch.random.fork_rng(devices=[]):  # the same untrained VAE every time, the caller's RNG untouched
            torch.manual_seed(0)
            return VideoVAE(build_tiny_kl(cfg.vae.latent_channels, cfg.vae.block_out_channels, cfg.data.size),
                            cfg.vae.scaling_factor)
    return VideoVAE.from_pretrained(cfg.vae.path, cfg.vae.scaling_factor, dtype=dtype)


def build_transformer(cfg: RunConfig, vae: VideoVAE, text_dim: int) -> T2VTransformer:
    m = cfg.model
    if m.pretrained and m.text_adapter_dim:
        raise ValueError(f"model.text_adapter_dim={m.text_adapter_dim} cannot be used with model.pretrained: the "
                         "pretrained DiT's text projection expects the text encoder's width; set it to 0")
    sample_size = cfg.data.size // vae.spatial_factor
    frames = vae.latent_frames(cfg.data.num_frames)
    if m.pretrained:
        model = T2VTransformer.from_dit(m.pretrained, m.backbone, m.text_adapter_layers, frames, sample_size,
                                        m.abs_pos_embed)
        if model.in_channels != vae.latent_channels:
            raise ValueError(f"model.pretrained has {model.in_channels} input channels but the VAE makes "
                             f"{vae.latent_channels}-channel latents")
    else:
        model = T2VTransformer.build(m.backbone, vae.latent_channels, text_dim, m.num_layers, m.num_heads,
                                     m.head_dim, m.ffn_mult, m.patch_size, frames, sample_size,
                                     m.text_adapter_layers, m.abs_pos_embed, m.text_adapter_dim)
    p = m.patch_size
    if sample_size % p[1] or (m.backbone == "wan" and frames % p[0]):
        raise ValueError(f"latent size {frames}×{sample_size}² is not divisible by model.patch_size {p}")
    used = model.set_attention(m.attention)
    log.info("transformer: %s, %.2fM parameters, attention %s", m.backbone,
             sum(q.numel() for q in model.parameters()) / 1e6, used)
    if m.lora.rank > 0:  # only the adapters train from here on (t2v/models/lora.py)
        from t2v.models.lora import add_lora

        add_lora(model, m.lora)
    if m.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    return model
