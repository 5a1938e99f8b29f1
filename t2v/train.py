"""Train a text-to-video model: build → resume → loop → export (components in :mod:`t2v.training`).

accelerate launches it on one device or many; ``train.parallel`` replicates (DDP) or shards (torch FSDP2,
:mod:`t2v.training.parallel`) the model; flow matching under
the noise-level curriculum, EMA, exact resume, TensorBoard, validation GIFs, final pipeline export.

Run folder (``train.output_dir``)::

    config.yaml                  the resolved config
    logs/                        TensorBoard (loss, lr, grad_norm, samples_per_s[_per_device],
                                 tokens_per_s_per_device, mfu)
    checkpoints/step-000500/     accelerate state (model, optimizer, scheduler, RNG, EMA) + trainer_state.json;
                                 sharded runs: sharded/ (DCP), rng-<rank>.safetensors, schedule.json
    samples/step-000500/         validation GIFs and a contact sheet
    pipeline/                    the final TextToVideoPipeline (EMA weights when EMA is on; a LoRA run's has the
                                 LoRA merged into its transformer)
    lora/                        model.lora only: pytorch_lora_weights.safetensors (diffusers' Wan LoRA format,
                                 WanPipeline.load_lora_weights reads it) and its model card
    train_summary.json           steps, final loss, minutes, the last throughput figures, …
"""

from __future__ import annotations

from pathlib import Path

from t2v.config import RunConfig
from t2v.training.build import build, build_pipeline
from t2v.training.checkpoint import latest_checkpoint, load_checkpoint
from t2v.training.export import export
from t2v.training.loop import run_loop

__all__ = ["build_pipeline", "latest_checkpoint", "train"]


def train(cfg: RunConfig, resume: str | None = None) -> Path:
    """Train per ``cfg``; ``resume`` is ``"latest"`` or a checkpoint folder. Returns the pipeline folder."""
    from accelerate.utils import set_seed

    run = build(cfg)  # 1. accelerator, models, data, optimiser, EMA (same initial weights on every rank)
    step = load_checkpoint(run, resume)  # 2. model, EMA, optimiser, scheduler, RNG; step
    if step is None:
        step = 0
        set_seed(cfg.train.seed, device_specific=True)  # a fresh run: different noise on each rank
    result = run_loop(run, step)  # 3. to train.max_steps or the time cap (not inside the curriculum)
    return export(run, result)  # 4. pipeline/, train_summary.json, samples/final
