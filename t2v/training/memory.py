"""``t2v plan``: memory per GPU for a run config before launching it — DDP vs FSDP2 vs HSDP, with and without
gradient checkpointing — from the model config alone (the transformer is built on the meta device: no weights).

Per rank, in bytes:

- model states: fp32 weights, gradients and AdamW's two moments, 16 bytes per trainable parameter — all on
  every rank under DDP, 1/shard of them under FSDP2 (shard = all ranks) or HSDP (shard = ranks per replica),
  plus two gathered blocks (the one running and the one prefetched, in the compute dtype, and its fp32
  gradients before the reduce-scatter);
- frozen transformer weights (``model.lora``: the whole pretrained DiT), 4 bytes each (fp32), replicated under
  DDP and sharded like the rest under FSDP2, with no gradients or optimiser moments;
- frozen models on the GPU: the VAE (and the text encoder when training without the cache);
- activations kept for the backward pass: per sample, ``tokens × width × (layers × c_layer + c_other)`` values
  in the compute dtype. The constants were measured, not derived (``bench/activation_memory.py``): the peak
  of live tensor bytes (torch.profiler's memory events, what CUDA's ``max_memory_allocated`` reports) of a
  steady-state fp32 AdamW step of the tiny Wan model over batch 4/16, 2–8 layers and FFN ×2/×4, fitted within
  4% — ``c_layer = 22.9 + 1.9 × ffn_mult`` values per token·width and ``c_other = 13.6``; with diffusers'
  gradient checkpointing ``0.6`` per layer (its input) and ``46.1`` (one layer recomputed at a time, and the
  rest). bf16 activations are counted at 2 bytes (Wan's norms run in fp32, so that part is an underestimate).

The CUDA allocator's cache and fragmentation come on top: the plan flags a config as fitting only below 90%
of the GPU's memory.
"""

from __future__ import annotations

from dataclasses import dataclass

C_LAYER, C_FFN, C_OTHER = 22.9, 1.9, 13.6
C_LAYER_CHECKPOINTED, C_OTHER_CHECKPOINTED = 0.6, 46.1
FIT = 0.9  # of the GPU's memory
GB = 1e9


@dataclass
class ModelShape:
    trainable: int  # parameters
    largest_block: int  # parameters of the biggest transformer block
    layers: int
    tokens: int  # per sample
    width: int
    ffn_mult: float
    frozen_bytes: int  # VAE (and text encoder) kept on the GPU
    frozen_params: int = 0  # transformer parameters that do not train (model.lora: the base DiT)


def model_shape(cfg) -> ModelShape:
    """The run's transformer built on the meta device, its token count per sample, and the frozen models' size."""
    from accelerate import init_empty_weights

    from t2v.models.build import build_transformer, mixed_precision
    from t2v.training.parallel import transformer_blocks

    vae = _vae_shape(cfg)
    with init_empty_weights():
        if cfg.model.pretrained:  # its config only: the weights need not be there
            model = _pretrained_on_meta(cfg, vae)
        else:
            model = build_transformer(cfg, vae, _text_dim(cfg))
    c = model.dit.config
    width = int(c.num_attention_heads * c.attention_head_dim)
    ffn = float(getattr(c, "ffn_dim", 0) or 4 * width) / width
    blocks = transformer_blocks(model)
    tokens = model.tokens((model.in_channels, vae.latent_frames(cfg.data.num_frames),
                           cfg.data.size // vae.spatial_factor, cfg.data.size // vae.spatial_factor))
    dtype_bytes = 2 if mixed_precision(cfg) in ("bf16", "fp16") else 4
    frozen = vae.params * 4 + (0 if cfg.data.use_cache else _text_params(cfg) * dtype_bytes)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return ModelShape(trainable, max((sum(p.numel() for p in b.parameters()) for b in blocks), default=0),
                      int(c.num_layers), tokens, width, ffn, frozen,
                      sum(p.numel() for p in model.parameters()) - trainable)


def plan(cfg, gpus: int, gpu_mem_gb: float = 80.0, nodes: int = 1, shape: ModelShape | None = None) -> list[dict]:
    """One row per (strategy, gradient checkpointing): GB per rank by part, the total, and whether it fits."""
    from t2v.models.build import mixed_precision

    if gpus < 1 or nodes < 1 or gpus % nodes:
        raise ValueError(f"--gpus {gpus} must be a positive multiple of --nodes {nodes}")
    shape = shape or model_shape(cfg)
    act_bytes = 2 if mixed_precision(cfg) in ("bf16", "fp16") else 4
    strategies = [("ddp", 1), ("fsdp", gpus)] + ([("hsdp", gpus // nodes)] if nodes > 1 else [])
    rows = []
    for name, shard in strategies:
        states = (16 * shape.trainable + 4 * shape.frozen_params) / shard
        gathered = 0 if name == "ddp" else shape.largest_block * (2 * act_bytes + 4)
        for ckpt in (False, True):
            if ckpt:
                values = shape.layers * C_LAYER_CHECKPOINTED + C_OTHER_CHECKPOINTED
            else:
                values = shape.layers * (C_LAYER + C_FFN * shape.ffn_mult) + C_OTHER
            acts = cfg.train.batch_size * shape.tokens * shape.width * values * act_bytes
            total = states + gathered + shape.frozen_bytes + acts
            rows.append({"strategy": name, "shard": shard, "gradient_checkpointing": ckpt,
                         "states_gb": states / GB, "gathered_gb": gathered / GB, "frozen_gb": shape.frozen_bytes / GB,
                         "activations_gb": acts / GB, "total_gb": total / GB, "fits": total <= FIT * gpu_mem_gb * GB})
    return rows


def format_plan(cfg, shape: ModelShape, rows: list[dict], gpus: int, gpu_mem_gb: float) -> str:
    lines = [f"{shape.trainable / 1e6:.1f}M trainable parameters, {shape.layers} layers, {shape.tokens} tokens per "
             f"sample, batch {cfg.train.batch_size} per GPU, {gpus} GPUs of {gpu_mem_gb:g} GB "
             f"(fits: below {FIT:.0%})"]
    if shape.frozen_params:
        lines.append(f"LoRA: {shape.frozen_params / 1e6:.1f}M frozen transformer parameters, counted in `states` "
                     "(fp32 weights only)")
    lines += ["", f"{'strategy':<10}{'ckpt':<6}{'states':>9}{'gathered':>10}{'frozen':>9}{'activations':>13}{'total':>9}  fits"]
    for r in rows:
        lines.append(f"{r['strategy']:<10}{'yes' if r['gradient_checkpointing'] else 'no':<6}{r['states_gb']:>8.2f}G"
                     f"{r['gathered_gb']:>9.2f}G{r['frozen_gb']:>8.2f}G{r['activations_gb']:>12.2f}G"
                     f"{r['total_gb']:>8.2f}G  {'yes' if r['fits'] else 'NO'}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the frozen parts, from configs
@dataclass
class _VAEShape:
    latent_channels: int
    spatial_factor: int
    temporal_factor: int
    params: int

    def latent_frames(self, num_frames: int) -> int:
        return (num_frames - 1) // self.temporal_factor + 1 if self.temporal_factor > 1 else num_frames


def _vae_shape(cfg) -> _VAEShape:
    """What build_transformer needs of the VAE, without its weights (a saved folder's config, else the preset)."""
    import json
    from pathlib import Path

    from t2v.models.vae import resolve_vae_path

    path = Path(resolve_vae_path(cfg.vae.path)) / "config.json" if cfg.vae.path else None
    c = json.loads(path.read_text()) if path is not None and path.is_file() else {}
    if cfg.vae.kind == "wan":  # Wan2.1's VAE: 16 channels, 8x space, 4x time, 127M parameters
        return _VAEShape(int(c.get("z_dim", 16)), 2 ** len(c.get("temperal_downsample", [1, 1, 1])), 4, 127_000_000)
    blocks = c.get("block_out_channels", cfg.vae.block_out_channels)
    params = sum(9 * 2 * ch * ch for ch in blocks) * 2  # two 3x3 convs per block, encoder and decoder: an estimate
    return _VAEShape(int(c.get("latent_channels", cfg.vae.latent_channels)), 2 ** (len(blocks) - 1), 1, params)


def _text_config(cfg):
    """The text encoder's transformers config, or None when its folder is not there (not downloaded yet)."""
    from transformers import AutoConfig

    from t2v.models.text import resolve_text_path

    try:
        return AutoConfig.from_pretrained(resolve_text_path(cfg.text.path))
    except (OSError, ValueError):
        return None


def _text_dim(cfg) -> int:
    c = _text_config(cfg)
    if c is None:
        width = 4096 if cfg.text.encoder_class == "t5" else 768  # UMT5-XXL / a BERT-size encoder
    else:
        width = int(getattr(c, "hidden_size", None) or c.d_model)
    return width * len(cfg.text.layers)


def _text_params(cfg) -> int:
    c = _text_config(cfg)
    if c is None:
        return 5_700_000_000 if cfg.text.encoder_class == "t5" else 110_000_000  # UMT5-XXL encoder / BERT-base
    width = int(getattr(c, "hidden_size", None) or c.d_model)
    layers = int(getattr(c, "num_hidden_layers", None) or c.num_layers)
    ffn = int(getattr(c, "intermediate_size", None) or getattr(c, "d_ff", None) or 4 * width)
    return int(layers * (4 * width * width + 2 * width * ffn) + getattr(c, "vocab_size", 30_000) * width)


def _pretrained_on_meta(cfg, vae):
    from pathlib import Path

    from diffusers import LatteTransformer3DModel, WanTransformer3DModel

    from t2v.models.backbone import T2VTransformer

    path = Path(cfg.model.pretrained)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model.pretrained={path}: the plan needs its config.json (download the checkpoint, "
                                "or just its transformer/config.json)")
    dit_cls = WanTransformer3DModel if cfg.model.backbone == "wan" else LatteTransformer3DModel
    dit = dict(dit_cls.load_config(str(path)))
    dit = {k: v for k, v in dit.items() if not k.startswith("_")}
    text_dim = dit.get("text_dim") or dit.get("caption_channels")
    model = T2VTransformer(cfg.model.backbone, dit, text_dim, cfg.model.text_adapter_layers,
                           vae.latent_frames(cfg.data.num_frames), cfg.data.size // vae.spatial_factor,
                           cfg.model.abs_pos_embed)
    if cfg.model.lora.rank > 0:  # the adapters (on the meta device too), the rest frozen
        from t2v.models.lora import add_lora

        add_lora(model, cfg.model.lora)
    return model
