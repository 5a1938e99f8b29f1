"""Typed run configuration: one dataclass per component, nested into :class:`RunConfig`.

YAML loads strictly — an unknown key or a value of the wrong type is an error that names the key
(``model.num_layers: expected int, got 'four'``). ``key=value`` overrides use the same dotted
names (``model.num_layers=4 train.max_steps=100``); values are parsed as YAML scalars.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clipio.config import ConfigError, apply_overrides, from_dict, load_yaml_mapping, resolve_config

__all__ = ["ConfigError", "RunConfig", "apply_overrides", "from_dict", "load_config", "validate"]


@dataclass
class BucketConfig:
    """Aspect-ratio × size × frame-count buckets (t2v/data/buckets.py); all empty: ``data.size`` squares."""

    aspect_ratios: list[str] = field(default_factory=list)  # width:height, e.g. ["16:9", "9:16", "1:1"]
    sizes: list[int] = field(default_factory=list)  # side of the square of equal area; empty: [data.size]
    num_frames: list[int] = field(default_factory=list)  # empty: [data.num_frames]


@dataclass
class DataConfig:
    manifest: str = "runs/demo/data/manifest.jsonl"
    caption_field: str = "dense"  # short | dense | any key of a record's `captions`
    num_frames: int = 8  # frames sampled per clip
    fps: float = 2.0  # rate the frames are sampled at (clip time covered: num_frames / fps)
    size: int = 64  # square frames: resize the short side, then centre-crop
    cache_dir: str | None = None  # default: <manifest folder>/cache
    use_cache: bool = True  # train from the cache when it exists for this config
    num_workers: int = 0
    # a clip longer than num_frames / fps trains on its `windows` (captioned at caption time); without them:
    # require (an error naming the record) | clip (its first window, with the whole clip's caption)
    window_captions: str = "require"
    buckets: BucketConfig = field(default_factory=BucketConfig)


@dataclass
class VAEConfig:
    kind: str = "kl"  # kl (AutoencoderKL per frame) | wan (AutoencoderKLWan, 3D)
    path: str | None = None  # a diffusers folder or a packaged VAE's name (synthworld-48px); None: untrained (tests)
    latent_channels: int = 4  # used when building (t2v train-vae)
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    scaling_factor: float | None = None  # None: the VAE's own config value


@dataclass
class TextConfig:
    path: str = "minilm"  # "minilm": the packaged all-MiniLM-L6-v2; else a transformers folder
    tokenizer: str | None = None  # tokenizer folder when it is not inside `path` (Wan: tokenizer/)
    window: int | None = None  # tokens per encoder call; None: the encoder's own limit
    max_tokens: int | None = None  # hard cap: longer prompts warn (with counts) and are cut there
    encoder_class: str = "auto"  # auto | t5 (T5EncoderModel / UMT5EncoderModel for Wan checkpoints)
    layers: list[int] = field(default_factory=lambda: [-1])  # hidden states used, concatenated (0 = embeddings)


@dataclass
class LoRAConfig:
    """``model.lora``: train peft LoRA adapters on a pretrained Wan DiT (``model.pretrained``) instead of all its
    weights (t2v/models/lora.py). Off by default (rank 0, no target modules)."""

    rank: int = 0  # 0: off (every weight trains); > 0: only the adapters train, the DiT and our modules are frozen
    alpha: float | None = None  # the update is scaled by alpha / rank; None: alpha = rank
    target_modules: list[str] = field(default_factory=list)  # DiT module names, matched as suffixes (peft)
    dropout: float = 0.0  # dropout on the adapters' input
    train_text_adapter: bool = False  # also train model.text_adapter_layers (saved next to the LoRA); else frozen


@dataclass
class ModelConfig:
    backbone: str = "wan"  # wan | latte
    pretrained: str | None = None  # a diffusers transformer folder to fine-tune
    num_layers: int = 2
    num_heads: int = 2
    head_dim: int = 32
    ffn_mult: float = 4.0
    patch_size: list[int] = field(default_factory=lambda: [1, 2, 2])  # (t, h, w); latte uses h only
    text_adapter_layers: int = 0  # trainable transformer layers over the frozen text features
    text_adapter_dim: int = 0  # project the text features to this width first (0: the encoder's width)
    abs_pos_embed: bool = False  # wan: add fixed 3D sin-cos positions to the patch embeddings (RoPE is relative only)
    attention: str = "sdpa"  # sdpa | xformers (CUDA only; falls back to sdpa with a logged reason)
    gradient_checkpointing: bool = False
    lora: LoRAConfig = field(default_factory=LoRAConfig)


@dataclass
class ObjectiveConfig:
    logit_mean: float = 0.0  # logit-normal timestep sampling (SD3)
    logit_std: float = 1.0
    shift: float = 1.0  # σ' = shift·σ / (1 + (shift−1)·σ): >1 spends more steps at high noise
    caption_dropout: float = 0.1  # probability of training on the empty prompt (for CFG)
    # noise-level curriculum (docs/does-it-learn.md, "Motion direction, measured with paired prompts"):
    # the first `pure_noise_steps` steps train at σ = 1 only and without caption dropout, where nothing but
    # the prompt can place objects; the next `noise_ramp_steps` draw σ ~ U(1 − w, 1) with w rising linearly from 0 to 1; then the logit-normal above
    pure_noise_steps: int = 0
    noise_ramp_steps: int = 0


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    warmup_steps: int = 50
    schedule: str = "constant"  # constant | cosine (after warm-up) | wsd (constant, then decay_steps down to 0)
    decay_steps: int = 0  # wsd: the last this many steps decay (cosine) to 0
    max_grad_norm: float = 1.0


@dataclass
class FSDPConfig:
    """``train.parallel: fsdp`` settings (t2v/training/parallel.py)."""

    replicate: int = 1  # HSDP: replica groups (e.g. nodes), sharding within each; 1 = shard over all ranks
    reshard_after_forward: bool = True  # false: keep parameters gathered until backward (ZeRO-2-like)


@dataclass
class TrainConfig:
    output_dir: str = "runs/t2v"
    max_steps: int = 1000
    batch_size: int = 8  # per process
    grad_accum: int = 1
    mixed_precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | no | bf16 | fp16
    seed: int = 0
    ema_decay: float = 0.0  # 0 disables EMA
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    validate_every: int = 0  # 0: only at the end
    validation_prompts: list[str] = field(default_factory=list)
    max_minutes: float = 0.0  # stop (and checkpoint) after this wall time; 0 = no limit
    peak_tflops: float = 0.0  # device peak for MFU; 0: look up known GPUs, else no MFU
    report_to: str = "tensorboard"  # tensorboard | wandb (pip install -e .[wandb]; WANDB_MODE=offline works) | none
    parallel: str = "ddp"  # ddp: a full copy per rank (accelerate) | fsdp: torch FSDP2, sharded per block
    fsdp: FSDPConfig = field(default_factory=FSDPConfig)


@dataclass
class SampleConfig:
    steps: int = 20
    guidance: float = 3.0
    shift: float = 1.0
    negative_prompt: str = ""


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    text: TextConfig = field(default_factory=TextConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml())
        return path


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults ← YAML file (a path, or a preset name: ``tiny``) ← overrides, validated strictly."""
    d: dict[str, Any] = load_yaml_mapping(resolve_config(path, "t2v.presets")) if path is not None else {}
    apply_overrides(d, overrides or [])
    cfg = from_dict(RunConfig, d)
    validate(cfg)
    return cfg


def validate(cfg: RunConfig) -> None:
    """Value checks that types alone cannot express."""
    def choice(name: str, value: str, options: tuple[str, ...]) -> None:
        if value not in options:
            raise ConfigError(f"{name}: {value!r} is not one of {list(options)}")

    choice("model.backbone", cfg.model.backbone, ("wan", "latte"))
    choice("model.attention", cfg.model.attention, ("sdpa", "xformers"))
    choice("vae.kind", cfg.vae.kind, ("kl", "wan"))
    choice("text.encoder_class", cfg.text.encoder_class, ("auto", "t5"))
    choice("optim.schedule", cfg.optim.schedule, ("constant", "cosine", "wsd"))
    if cfg.optim.schedule == "wsd" and cfg.optim.decay_steps < 1:
        raise ConfigError(f"optim.decay_steps: schedule wsd needs decay_steps >= 1, got {cfg.optim.decay_steps}")
    choice("train.mixed_precision", cfg.train.mixed_precision, ("auto", "no", "bf16", "fp16"))
    choice("train.parallel", cfg.train.parallel, ("ddp", "fsdp"))
    choice("train.report_to", cfg.train.report_to, ("tensorboard", "wandb", "none"))
    if cfg.train.fsdp.replicate < 1:
        raise ConfigError(f"train.fsdp.replicate: must be >= 1, got {cfg.train.fsdp.replicate}")
    if len(cfg.model.patch_size) != 3:
        raise ConfigError(f"model.patch_size: expected [t, h, w], got {cfg.model.patch_size}")
    for name, v in [("data.num_frames", cfg.data.num_frames), ("data.size", cfg.data.size),
                    ("train.max_steps", cfg.train.max_steps), ("train.batch_size", cfg.train.batch_size),
                    ("model.num_layers", cfg.model.num_layers), ("model.num_heads", cfg.model.num_heads)]:
        if v < 1:
            raise ConfigError(f"{name}: must be >= 1, got {v}")
    for name, v in [("objective.pure_noise_steps", cfg.objective.pure_noise_steps),
                    ("objective.noise_ramp_steps", cfg.objective.noise_ramp_steps)]:
        if v < 0:
            raise ConfigError(f"{name}: must be >= 0, got {v}")
    if not 0 <= cfg.objective.caption_dropout < 1:
        raise ConfigError(f"objective.caption_dropout: must be in [0, 1), got {cfg.objective.caption_dropout}")
    if not 0 <= cfg.train.ema_decay < 1:
        raise ConfigError(f"train.ema_decay: must be in [0, 1), got {cfg.train.ema_decay}")
    choice("data.window_captions", cfg.data.window_captions, ("require", "clip"))
    b = cfg.data.buckets
    if b.aspect_ratios or len(b.sizes) > 1 or len(b.num_frames) > 1:
        from t2v.data.buckets import bucket_grid

        if cfg.model.backbone != "wan":
            raise ConfigError("data.buckets: Latte has a fixed frame size and count; buckets need model.backbone=wan")
        try:
            bucket_grid(cfg)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    validate_lora(cfg)


def validate_lora(cfg: RunConfig) -> None:
    """``model.lora``: off (rank 0, no targets) or a LoRA of a pretrained Wan DiT."""
    lora, m = cfg.model.lora, cfg.model
    if lora.rank < 0:
        raise ConfigError(f"model.lora.rank: must be >= 0 (0 turns LoRA off), got {lora.rank}")
    if lora.rank == 0:
        if lora.target_modules:
            raise ConfigError(f"model.lora.rank: 0 turns LoRA off, but model.lora.target_modules is "
                              f"{lora.target_modules}: set model.lora.rank > 0 (e.g. 32) to train a LoRA, or "
                              "model.lora.target_modules=[] to train every weight")
        if lora.train_text_adapter:
            raise ConfigError("model.lora.train_text_adapter: true needs a LoRA (model.lora.rank > 0); without one "
                              "the text adapter trains anyway")
        return
    if not lora.target_modules:
        raise ConfigError("model.lora.target_modules: empty, but model.lora.rank > 0: name the Wan DiT modules to "
                          "adapt, e.g. [to_q, to_k, to_v, to_out.0] (the attention projections)")
    if m.backbone != "wan":
        raise ConfigError(f"model.lora.rank: LoRA is supported for model.backbone=wan only, got model.backbone="
                          f"{m.backbone!r}: set model.lora.rank=0 and model.lora.target_modules=[]")
    if not m.pretrained:
        raise ConfigError(f"model.lora.rank={lora.rank} needs model.pretrained (a Wan transformer folder): a LoRA "
                          "adapts trained weights, and over a randomly initialised DiT it only trains a small part "
                          "of an untrained model; set model.lora.rank=0 and model.lora.target_modules=[] to train "
                          "from scratch")
    if lora.alpha is not None and lora.alpha <= 0:
        raise ConfigError(f"model.lora.alpha: must be > 0 (or null: = rank), got {lora.alpha}")
    if not 0 <= lora.dropout < 1:
        raise ConfigError(f"model.lora.dropout: must be in [0, 1), got {lora.dropout}")
    if lora.train_text_adapter and m.text_adapter_layers < 1:
        raise ConfigError("model.lora.train_text_adapter: true, but there is no text adapter "
                          "(model.text_adapter_layers=0)")
