"""The end of a run: the final pipeline (EMA weights when EMA is on), ``train_summary.json`` and a last set
of samples."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from t2v.training.build import Run, build_pipeline
from t2v.training.ema import ema_weights
from t2v.training.loop import LoopResult
from t2v.training.metrics import tensorboard
from t2v.validation import write_samples

log = logging.getLogger(__name__)


def export(run: Run, result: LoopResult) -> Path:
    """Write ``pipeline/``, ``train_summary.json`` and ``samples/final`` (main process); returns the pipeline folder."""
    cfg, acc = run.cfg, run.acc
    acc.wait_for_everyone()
    final = run.out / "pipeline"
    # parameter checksums of every rank: identical unless distributed training lost sync
    checksum = torch.stack([p.detach().double().sum() for p in run.unwrapped.parameters()]).sum()
    checksums = acc.gather(checksum.reshape(1).to(acc.device)).tolist()
    if run.main:
        curriculum_end = cfg.objective.pure_noise_steps + cfg.objective.noise_ramp_steps
        summary = {"steps": result.step, "curriculum_complete": result.step >= curriculum_end,
                   "world_size": acc.num_processes, "final_loss": result.loss,
                   "minutes": (time.time() - result.start) / 60, "param_checksums": checksums,
                   "distributed_type": str(acc.distributed_type), "mixed_precision": acc.mixed_precision,
                   "throughput": result.throughput}
        (run.out / "train_summary.json").write_text(json.dumps(summary, indent=1))
        with ema_weights(run.ema, run.unwrapped) as model:
            pipe = build_pipeline(model, run.vae, run.text_encoder, cfg)
            pipe.save_pretrained(final)
            cfg.save(final / "t2v_config.yaml")
            if cfg.train.validation_prompts:
                write_samples(pipe, cfg, run.out / "samples" / "final", tracker=tensorboard(acc), step=result.step)
        log.info("saved pipeline to %s after %d steps (%.1f min)", final, result.step,
                 (time.time() - result.start) / 60)
    acc.end_training()
    return final
