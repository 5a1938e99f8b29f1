"""The end of a run: the final pipeline (EMA weights when EMA is on), ``train_summary.json`` and a last set
of samples. A LoRA run (``model.lora``) also writes ``lora/``: the adapter alone, in diffusers' Wan LoRA format,
with its own model card; its ``pipeline/`` holds the transformer with the LoRA merged in (a full model that
loads without peft, so ``t2v generate --model`` and ``t2v compare`` use it as any other)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from t2v.models.build import build_text_encoder
from t2v.training.build import Run, build_pipeline
from t2v.training.card import write_lora_card, write_model_card
from t2v.training.ema import sampling_weights
from t2v.training.loop import LoopResult
from t2v.training.metrics import ImageLog
from t2v.validation import write_samples

log = logging.getLogger(__name__)


def export(run: Run, result: LoopResult) -> Path:
    """Write ``pipeline/``, ``train_summary.json`` and ``samples/final`` (main process; every rank calls it, a
    sharded model is gathered first); returns the pipeline folder."""
    acc = run.acc
    acc.wait_for_everyone()
    final = run.out / "pipeline"
    checksums = parameter_checksums(run)
    with sampling_weights(run) as model:
        if model is not None:  # the main process
            _write(run, model, result, checksums, final)
    acc.wait_for_everyone()
    acc.end_training()
    return final


def _write(run: Run, model, result: LoopResult, checksums: list[float], final: Path) -> None:
    cfg, acc = run.cfg, run.acc
    curriculum_end = cfg.objective.pure_noise_steps + cfg.objective.noise_ramp_steps
    summary = {"steps": result.step, "curriculum_complete": result.step >= curriculum_end,
               "world_size": acc.num_processes, "final_loss": result.loss,
               "minutes": (time.time() - result.start) / 60, "param_checksums": checksums,
               "distributed_type": str(acc.distributed_type), "parallel": cfg.train.parallel,
               "mixed_precision": acc.mixed_precision, "throughput": result.throughput}
    (run.out / "train_summary.json").write_text(json.dumps(summary, indent=1))
    # a run from the cache let its text encoder go: load it again (on the CPU) to save it with the pipeline
    text_encoder = run.text_encoder if run.text_encoder is not None else build_text_encoder(cfg)
    if cfg.model.lora.rank > 0:  # the adapter alone, then a plain model with it merged for the pipeline
        from t2v.models.lora import merged_copy, save_lora

        write_lora_card(save_lora(model, run.out / "lora"), cfg, summary, final)
        model = merged_copy(model)
    pipe = build_pipeline(model, run.vae, text_encoder, cfg)
    pipe.save_pretrained(final)
    cfg.save(final / "t2v_config.yaml")
    write_model_card(final, cfg, summary)
    if cfg.train.validation_prompts:
        write_samples(pipe, cfg, run.out / "samples" / "final", tracker=ImageLog(acc), step=result.step)
    log.info("saved pipeline to %s%s after %d steps (%.1f min)", final,
             f" and the LoRA to {run.out / 'lora'}" if cfg.model.lora.rank > 0 else "", result.step,
             (time.time() - result.start) / 60)


def parameter_checksums(run: Run) -> list[float]:
    """The sum of the trained parameters as each rank holds them: identical across ranks unless data-parallel
    training lost sync. A sharded model holds one copy in pieces: one checksum of the gathered whole."""
    if run.sharded:
        from t2v.training.parallel import full_state_dict

        state = full_state_dict(run.model)  # every rank takes part; the main process gets it
        names = {n for n, _ in run.model.named_parameters()}
        return [float(sum(v.double().sum() for k, v in state.items() if k in names))] if run.main else []
    checksum = torch.stack([p.detach().double().sum() for p in run.unwrapped.parameters()]).sum()
    return run.acc.gather(checksum.reshape(1).to(run.acc.device)).tolist()
