"""Build a run: the accelerator, the frozen text encoder and VAE, the trainable transformer, the data
set, the optimiser, LR schedule and EMA — everything :func:`t2v.train.train` needs, in one :class:`Run`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from t2v.config import RunConfig
from t2v.models.build import build_text_encoder, build_transformer, build_vae
from t2v.training.data import build_dataset
from t2v.training.ema import build_ema
from t2v.training.optim import build_optimizer, build_scheduler


@dataclass
class Run:
    """The parts of a training run. ``model``, ``opt`` and ``sched`` are as prepared by accelerate
    (``acc.unwrap_model(run.model)`` is the :class:`~t2v.models.backbone.T2VTransformer`)."""

    cfg: RunConfig
    out: Path
    acc: Any  # accelerate.Accelerator
    text_encoder: Any  # t2v.models.text.TextEncoder
    vae: Any  # t2v.models.vae.VideoVAE
    model: torch.nn.Module
    empty_text: torch.Tensor  # (L, D): the empty prompt, for caption dropout with cached text
    dataset: Dataset
    use_cache: bool
    opt: torch.optim.Optimizer
    sched: Any
    ema: Any  # diffusers EMAModel or None
    sharded: bool = False  # train.parallel=fsdp: ``model`` is FSDP2-sharded, not prepared by accelerate

    @property
    def main(self) -> bool:
        return self.acc.is_main_process

    @property
    def unwrapped(self) -> torch.nn.Module:
        return self.acc.unwrap_model(self.model)


def mixed_precision(cfg: RunConfig) -> str:
    """``train.mixed_precision`` with ``auto`` resolved: bf16 where CUDA supports it, else none."""
    mp = cfg.train.mixed_precision
    if mp == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return mp


def build(cfg: RunConfig) -> Run:
    """Everything of a run, with the same initial weights on every rank (seeded by ``train.seed``)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, ProjectConfiguration, set_seed

    out = Path(cfg.train.output_dir)
    # 1. Accelerator (processes and process group from the launch; DDP or FSDP2 and precision from the run config)
    sharded = cfg.train.parallel == "fsdp"
    if sharded and mixed_precision(cfg) == "fp16":
        raise ValueError("train.parallel=fsdp takes train.mixed_precision bf16 or no (fp16 needs a sharded "
                         "gradient scaler); set train.mixed_precision=bf16")
    acc = Accelerator(
        gradient_accumulation_steps=cfg.train.grad_accum,
        mixed_precision=mixed_precision(cfg),
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    if acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise ValueError(f"accelerate's {acc.distributed_type.value} launch type is not used by this trainer: launch "
                         "with configs/accelerate/multi_gpu.yaml (one process per GPU) and shard with "
                         "train.parallel=fsdp (torch FSDP2; train.fsdp.reshard_after_forward=false is ZeRO-2-like)")
    if acc.is_main_process:
        cfg.save(out / "config.yaml")
    set_seed(cfg.train.seed)  # same initial weights on every rank

    # 2. Models: frozen text encoder and VAE, trainable transformer
    text_encoder = build_text_encoder(cfg).to(acc.device)
    vae = build_vae(cfg).to(acc.device)
    model = build_transformer(cfg, vae, text_encoder.dim)
    empty_text = text_encoder([""])[0][0].cpu()  # (L, D)

    # 3. Data
    dataset, use_cache = build_dataset(cfg, verbose=acc.is_main_process)

    # 4. Sharding (FSDP2) or accelerate's wrapping (DDP); optimiser, LR schedule, EMA over what trains
    if sharded:
        from t2v.training.parallel import shard_model

        model = shard_model(model, acc, cfg.train.fsdp.replicate, cfg.train.fsdp.reshard_after_forward,
                            mixed_precision(cfg))
    opt = build_optimizer(cfg.optim, model)
    sched = build_scheduler(cfg.optim, cfg.train, opt, acc.num_processes)
    ema = build_ema(cfg.train.ema_decay, model, acc, register=not sharded)  # sharded: saved with the DCP state
    if sharded:
        opt, sched = acc.prepare(opt, sched)
    else:
        model, opt, sched = acc.prepare(model, opt, sched)
    return Run(cfg, out, acc, text_encoder, vae, model, empty_text, dataset, use_cache, opt, sched, ema, sharded)


def build_pipeline(transformer, vae, text_encoder, cfg: RunConfig):
    """A :class:`~t2v.pipeline.TextToVideoPipeline` around a run's models (the scheduler from ``cfg.sample``)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from t2v.pipeline import TextToVideoPipeline

    return TextToVideoPipeline(vae.vae, text_encoder.model, text_encoder.tokenizer, transformer,
                               FlowMatchEulerDiscreteScheduler(shift=cfg.sample.shift),
                               text_window=text_encoder.window, max_text_tokens=text_encoder.max_tokens,
                               text_layers=text_encoder.layers)
