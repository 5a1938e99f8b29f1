"""Build a run: the accelerator, the frozen text encoder and VAE, the trainable transformer, the data
set, the optimiser, LR schedule and EMA — everything :func:`t2v.train.train` needs, in one :class:`Run`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from t2v.config import RunConfig
from t2v.models.build import build_text_encoder, build_transformer, build_vae, mixed_precision
from t2v.training.data import build_dataset
from t2v.training.ema import build_ema
from t2v.training.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)


@dataclass
class Run:
    """The parts of a training run. ``model``, ``opt`` and ``sched`` are as prepared by accelerate
    (``acc.unwrap_model(run.model)`` is the :class:`~t2v.models.backbone.T2VTransformer`)."""

    cfg: RunConfig
    out: Path
    acc: Any  # accelerate.Accelerator
    text_encoder: Any  # t2v.models.text.TextEncoder; None in a run from the cache (see prompt_states)
    vae: Any  # t2v.models.vae.VideoVAE
    model: torch.nn.Module
    empty_text: torch.Tensor  # (L, D): the empty prompt, for caption dropout with cached text
    dataset: Dataset
    use_cache: bool
    opt: torch.optim.Optimizer
    sched: Any
    ema: Any  # diffusers EMAModel or None
    sharded: bool = False  # train.parallel=fsdp: ``model`` is FSDP2-sharded, not prepared by accelerate
    # prompt -> (states (1, L, D), mask (1, L)) on the CPU: the validation prompts and the negative prompt,
    # encoded once (a run from the cache keeps these instead of the text encoder)
    prompt_states: dict = field(default_factory=dict)

    @property
    def main(self) -> bool:
        return self.acc.is_main_process

    @property
    def unwrapped(self) -> torch.nn.Module:
        return self.acc.unwrap_model(self.model)


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
        log_with=None if cfg.train.report_to == "none" else cfg.train.report_to,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    if acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise ValueError(f"accelerate's {acc.distributed_type.value} launch type is not used by this trainer: launch "
                         "with configs/accelerate/multi_gpu.yaml (one process per GPU) and shard with "
                         "train.parallel=fsdp (torch FSDP2; train.fsdp.reshard_after_forward=false is ZeRO-2-like)")
    if acc.is_main_process:
        cfg.save(out / "config.yaml")
    set_seed(cfg.train.seed)  # same initial weights on every rank

    # 2. Data: cached latents and text states when the cache exists for this config
    dataset, use_cache = build_dataset(cfg, verbose=acc.is_main_process, world_size=acc.num_processes)

    # 3. Models: frozen text encoder and VAE, trainable transformer. The text encoder loads in bf16 for a bf16
    # run (models.build.text_dtype). Training from the cache it never encodes a batch: it encodes the empty
    # prompt and the validation prompts once, on the CPU, and is let go (export loads it again to save it).
    text_encoder = build_text_encoder(cfg)
    if not use_cache:
        text_encoder.to(acc.device)
    vae = build_vae(cfg).to(acc.device)
    model = build_transformer(cfg, vae, text_encoder.dim)
    empty_text = text_encoder([""])[0][0].float().cpu()  # (L, D)
    prompt_states = kept_prompt_states(text_encoder, [*cfg.train.validation_prompts, cfg.sample.negative_prompt])
    if use_cache:
        text_encoder = None
        if acc.is_main_process:
            log.info("text encoder: let go after encoding %d prompts once (training from the cache)", len(prompt_states))

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
    return Run(cfg, out, acc, text_encoder, vae, model, empty_text, dataset, use_cache, opt, sched, ema, sharded,
               prompt_states)


@torch.no_grad()
def kept_prompt_states(text_encoder, prompts: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """prompt -> (states (1, L, D), mask (1, L)) on the CPU, each prompt encoded alone (as the pipeline would)."""
    out = {}
    for p in dict.fromkeys(prompts):
        states, mask = text_encoder([p])
        out[p] = (states.cpu(), mask.cpu())
    return out


def build_pipeline(transformer, vae, text_encoder, cfg: RunConfig):
    """A :class:`~t2v.pipeline.TextToVideoPipeline` around a run's models (the scheduler from ``cfg.sample``);
    ``text_encoder`` None: one that samples from kept text states (``prompt_embeds``) only."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from t2v.pipeline import TextToVideoPipeline

    if text_encoder is None:
        return TextToVideoPipeline(vae.vae, None, None, transformer, FlowMatchEulerDiscreteScheduler(
            shift=cfg.sample.shift), text_window=cfg.text.window, max_text_tokens=cfg.text.max_tokens,
            text_layers=cfg.text.layers)
    return TextToVideoPipeline(vae.vae, text_encoder.model, text_encoder.tokenizer, transformer,
                               FlowMatchEulerDiscreteScheduler(shift=cfg.sample.shift),
                               text_window=text_encoder.window, max_text_tokens=text_encoder.max_tokens,
                               text_layers=text_encoder.layers)
