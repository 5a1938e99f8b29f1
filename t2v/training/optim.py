"""Optimiser and learning-rate schedule from the run config."""

from __future__ import annotations

import logging

import torch
from torch import nn

from t2v.config import OptimConfig, TrainConfig

log = logging.getLogger(__name__)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that train, in module order: all of them, or with ``model.lora`` only the adapters'. The
    optimiser and the EMA see these and nothing else (frozen weights get no AdamW moments and no EMA copy)."""
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(cfg: OptimConfig, model: nn.Module) -> torch.optim.AdamW:
    """AdamW over the trainable parameters."""
    return torch.optim.AdamW(trainable_parameters(model), lr=cfg.lr, betas=tuple(cfg.betas),
                             weight_decay=cfg.weight_decay)


def build_scheduler(cfg: OptimConfig, train: TrainConfig, opt: torch.optim.Optimizer, num_processes: int):
    """Linear warm-up, then constant, cosine, or warm-up–stable–decay (``wsd``: constant until the last
    ``decay_steps``, which fall to 0 along a cosine; transformers' ``get_wsd_schedule``). accelerate steps a
    prepared scheduler once per process for every optimiser step, so warm-up and length are counted in
    process-steps."""
    from diffusers.optimization import get_scheduler

    if cfg.schedule == "wsd":
        from transformers.optimization import get_wsd_schedule

        decay = max(1, min(cfg.decay_steps, train.max_steps - cfg.warmup_steps))
        if decay < cfg.decay_steps:  # a short run (a test, a smoke run) decays over what follows its warm-up
            log.warning("optim: train.max_steps (%d) leaves %d steps after the warm-up (%d), fewer than "
                        "optim.decay_steps (%d): the rate decays over those %d", train.max_steps,
                        train.max_steps - cfg.warmup_steps, cfg.warmup_steps, cfg.decay_steps, decay)
        return get_wsd_schedule(opt, num_warmup_steps=cfg.warmup_steps * num_processes,
                                num_decay_steps=decay * num_processes,
                                num_training_steps=train.max_steps * num_processes)
    return get_scheduler("constant_with_warmup" if cfg.schedule == "constant" else "cosine", opt,
                         num_warmup_steps=cfg.warmup_steps * num_processes,
                         num_training_steps=train.max_steps * num_processes)
