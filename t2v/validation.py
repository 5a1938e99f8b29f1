"""Validation samples: a GIF per prompt and a contact sheet, also sent to TensorBoard; during training
with the EMA weights when EMA is on."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from clipio.images import contact_sheet, save_png
from clipio.video import write_gif
from t2v.config import RunConfig
from t2v.training.build import Run, build_pipeline
from t2v.training.ema import sampling_weights
from t2v.training.metrics import ImageLog

log = logging.getLogger(__name__)


def write_samples(pipe, cfg: RunConfig, folder: Path, tracker=None, step: int = 0, seed: int = 0,
                  states: dict | None = None) -> list[Path]:
    """Generate ``cfg.train.validation_prompts`` (fixed seeds) into ``folder``; from their kept text states when
    ``states`` (prompt -> (states, mask), with the negative prompt's) has them."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, rows = [], []
    for i, prompt in enumerate(cfg.train.validation_prompts):
        g = torch.Generator().manual_seed(seed + i)
        frames = pipe(**_text(prompt, cfg, states), num_frames=cfg.data.num_frames, num_inference_steps=cfg.sample.steps,
                      guidance_scale=cfg.sample.guidance, generator=g, progress=False).frames[0]
        paths.append(write_gif(folder / f"sample-{i:02d}.gif", frames, fps=cfg.data.fps))
        rows.append(frames)
    (folder / "prompts.txt").write_text("\n".join(cfg.train.validation_prompts) + "\n")
    sheet = contact_sheet(rows, [p[:160] for p in cfg.train.validation_prompts], cell=64, label_width=260)
    save_png(folder / "contact_sheet.png", sheet)
    if tracker is not None:
        tracker.add_image("samples", np.asarray(sheet), step, dataformats="HWC")
    paths += _bucket_samples(pipe, cfg, folder, seed, states)
    log.info("validation samples: %s", folder)
    return paths


def _text(prompt: str, cfg: RunConfig, states: dict | None) -> dict:
    """The pipeline's text arguments: the kept states of a prompt when there are, else the prompt."""
    if states and prompt in states and cfg.sample.negative_prompt in states:
        (s, m), (ns, nm) = states[prompt], states[cfg.sample.negative_prompt]
        return {"prompt_embeds": s, "prompt_attention_mask": m, "negative_prompt_embeds": ns,
                "negative_prompt_attention_mask": nm}
    return {"prompt": prompt, "negative_prompt": cfg.sample.negative_prompt or None}


def _bucket_samples(pipe, cfg: RunConfig, folder: Path, seed: int, states: dict | None) -> list[Path]:
    """With ``data.buckets``: the first validation prompt at every bucket's shape (``bucket-WxHxF.gif`` and one
    ``buckets.png`` row each)."""
    from t2v.data.buckets import bucket_grid, enabled

    if not enabled(cfg):
        return []
    prompt, paths, rows, names = cfg.train.validation_prompts[0], [], [], []
    for b in bucket_grid(cfg):
        frames = pipe(**_text(prompt, cfg, states), num_frames=b.frames,
                      height=b.height, width=b.width, num_inference_steps=cfg.sample.steps,
                      guidance_scale=cfg.sample.guidance, generator=torch.Generator().manual_seed(seed),
                      progress=False).frames[0]
        paths.append(write_gif(folder / f"bucket-{b.name}.gif", frames, fps=cfg.data.fps))
        rows.append(frames)
        names.append(b.name)
    save_png(folder / "buckets.png", contact_sheet(rows, names, cell=64, label_width=120))
    return paths


def validate(run: Run, step: int) -> list[Path]:
    """Samples of the model being trained (EMA weights when EMA is on) into ``samples/step-NNNNNN``, written by
    the main process; every rank calls it (a sharded model is gathered first). Nothing without
    ``train.validation_prompts``."""
    if not run.cfg.train.validation_prompts:
        return []
    with sampling_weights(run) as model:
        if model is None:
            return []
        was_training = model.training
        model.eval()
        pipe = build_pipeline(model, run.vae, run.text_encoder, run.cfg)
        paths = write_samples(pipe, run.cfg, run.out / "samples" / f"step-{step:06d}", tracker=ImageLog(run.acc),
                              step=step, states=run.prompt_states)
        model.train(was_training)
    return paths
