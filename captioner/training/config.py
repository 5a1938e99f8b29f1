"""The typed config of ``captioner train`` (``captioner/training/presets/*.yaml``), loaded strictly.

    model:  the VLM folder to start from, full fine-tuning or LoRA (peft), what is frozen
    data:   the annotated manifest, the captioner config inference will use (prompts, key-frame and grid
            settings: the fast mode's requests are built with it), the mode mix
    train:  epochs / steps, LR, batch, accumulation, checkpoints, validation captions, logging
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clipio.config import ConfigError, apply_overrides, from_dict, load_yaml_mapping, resolve_config


@dataclass
class LoraSettings:
    r: int = 0  # 0: full fine-tuning; > 0: a peft LoRA of this rank on the language model
    alpha: float = 16.0
    dropout: float = 0.0
    # module names (peft's target_modules); "all-linear": every linear layer of the language model
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])


@dataclass
class ModelSettings:
    path: str = ""  # an AutoModelForImageTextToText folder with its processor and chat template
    dtype: str = "float32"  # float32 | bfloat16 (weights; on a GPU pair it with train.mixed_precision)
    attn_implementation: str | None = None  # sdpa | eager | flash_attention_2; None: transformers' default
    trust_remote_code: bool = False
    freeze_vision: bool = False  # keep the vision tower fixed (the projector and language model train)
    freeze_projector: bool = False  # keep the vision-language projector fixed too (LLaVA's multi_modal_projector)
    gradient_checkpointing: bool = False
    lora: LoraSettings = field(default_factory=LoraSettings)


@dataclass
class ModeMix:
    """Conversations per annotation per epoch, per mode (2.0: each twice; 0.25: a random quarter; 0: off)."""

    fast: float = 1.0
    sliding: float = 1.0
    summary: float = 1.0
    recaption: float = 1.0


@dataclass
class DataSettings:
    manifest: str = ""  # annotations: a manifest of ok records with key-frame captions, dense and short captions
    # held-out records for validation captions: a manifest, or the last `val_clips` ids of `manifest`
    val_manifest: str | None = None
    val_clips: int = 4
    captioner: str = "oracle"  # the captioner config (preset or YAML) inference will use with this model
    modes: ModeMix = field(default_factory=ModeMix)
    max_length: int = 2048  # tokens; an answer past it is cut, a prompt past it is an error
    cache_clips: int = 0  # decoded key-frames of this many clips stay in memory (a miniature fits whole)
    num_workers: int = 0  # DataLoader worker processes (decoding, image processing, tokenising)
    # share of conversations drawn as their clip's mirror image: key-frames flipped left to right, every caption's
    # left/right words swapped (as MDETR/GLIP augment); only for footage and captions where that holds
    hflip: float = 0.0
    # answer words that weigh more in the loss: tokens overlapping a match of any of these regular expressions
    # (case-insensitive) count `emphasis_weight` times, the others once (e.g. the words that name a place)
    emphasis: list[str] = field(default_factory=list)
    emphasis_weight: float = 1.0

    def emphasis_pattern(self) -> tuple[re.Pattern, float] | None:
        """``(pattern, weight)`` for :func:`~captioner.training.conversations.tokenize`, or None (no emphasis)."""
        if not self.emphasis or self.emphasis_weight == 1.0:
            return None
        return re.compile("|".join(f"(?:{p})" for p in self.emphasis), re.IGNORECASE), self.emphasis_weight


@dataclass
class TrainSettings:
    output_dir: str = "runs/captioner-train"
    epochs: float = 1.0
    max_steps: int | None = None  # optimiser steps; None: from epochs
    batch_size: int = 8  # per process
    grad_accum: int = 1
    lr: float = 1e-4
    projector_lr: float | None = None  # LR of the projector (and a training vision tower); None: train.lr
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_scheduler: str = "cosine"  # any transformers.get_scheduler name: cosine | linear | constant_with_warmup
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"  # no | bf16 | fp16 (accelerate)
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 200  # steps; 0: only at the end
    keep_checkpoints: int = 2
    val_every: int = 200  # steps: caption the validation records (fast mode) and write them; 0: only at the end
    val_max_new_tokens: int = 160


@dataclass
class CaptionerTrainConfig:
    model: ModelSettings = field(default_factory=ModelSettings)
    data: DataSettings = field(default_factory=DataSettings)
    train: TrainSettings = field(default_factory=TrainSettings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None) -> CaptionerTrainConfig:
    """Defaults ← YAML (a path or a preset of ``captioner/training/presets``) ← ``key=value`` overrides."""
    d = load_yaml_mapping(resolve_config(path, "captioner.training.presets")) if path is not None else {}
    apply_overrides(d, overrides or [])
    cfg = from_dict(CaptionerTrainConfig, d)
    m, dt, t = cfg.model, cfg.data, cfg.train
    if not m.path:
        raise ConfigError("model.path: name the VLM folder to fine-tune (model.path=...)")
    if not dt.manifest:
        raise ConfigError("data.manifest: name the annotated manifest (data.manifest=...)")
    for name, value, options in [("model.dtype", m.dtype, ("float32", "bfloat16", "float16")),
                                 ("train.mixed_precision", t.mixed_precision, ("no", "bf16", "fp16"))]:
        if value not in options:
            raise ConfigError(f"{name}: {value!r} is not one of {list(options)}")
    weights = dataclasses.asdict(dt.modes)
    if any(w < 0 for w in weights.values()) or not any(weights.values()):
        raise ConfigError(f"data.modes: weights must be >= 0 and at least one > 0, got {weights}")
    for name, v in [("train.batch_size", t.batch_size), ("train.grad_accum", t.grad_accum), ("train.lr", t.lr),
                    ("train.epochs", t.epochs), ("data.max_length", dt.max_length),
                    ("train.keep_checkpoints", t.keep_checkpoints), ("train.log_every", t.log_every)]:
        if not v > 0:
            raise ConfigError(f"{name}: must be > 0, got {v}")
    if t.projector_lr is not None and not t.projector_lr > 0:
        raise ConfigError(f"train.projector_lr: must be > 0 (model.freeze_projector=true keeps it fixed), "
                          f"got {t.projector_lr}")
    if t.max_steps is not None and t.max_steps < 1:
        raise ConfigError(f"train.max_steps: must be >= 1, got {t.max_steps}")
    if m.lora.r < 0:
        raise ConfigError(f"model.lora.r: must be >= 0 (0 = full fine-tuning), got {m.lora.r}")
    for i, p in enumerate(dt.emphasis):
        try:
            re.compile(f"(?:{p})", re.IGNORECASE)  # as emphasis_pattern() joins it (a global flag inside fails)
        except re.error as e:
            raise ConfigError(f"data.emphasis[{i}]: {p!r} is not a regular expression that can be joined with "
                              f"others ({e}; matching ignores case already, no (?i) needed)") from None
    if not dt.emphasis_weight > 0:
        raise ConfigError(f"data.emphasis_weight: must be > 0, got {dt.emphasis_weight}")
    if dt.val_clips < 0 or dt.cache_clips < 0 or dt.num_workers < 0:
        raise ConfigError("data.val_clips, data.cache_clips, data.num_workers: must be >= 0")
    return cfg
