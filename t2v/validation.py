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
        text = {"prompt": prompt, "negative_prompt": cfg.sample.negative_prompt or None}
        if states and prompt in states and cfg.sample.negative_prompt in states:
            (s, m), (ns, nm) = states[prompt], states[cfg.sample.negative_prompt]
            text = {"prompt_embeds": s, "prompt_attention_mask": m, "negative_prompt_embeds": ns,
                    "negative_prompt_attention_mask": nm}
        frames = pipe(**text, num_frames=cfg.data.num_frames, num_inference_steps=cfg.sample.steps,
                      guidance_scale=cfg.sample.guidance, generator=g, progress=False).frames[0]
        paths.append(write_gif(folder / f"sample-{i:02d}.gif", frames, fps=cfg.data.fps))
        rows.append(frames)
    (folder / "prompts.txt").write_text("\n".join(cfg.train.validation_prompts) + "\n")
    sheet = contact_sheet(rows, [p[:160] for p in cfg.train.validation_prompts], cell=64, label_width=260)
    save_png(folder / "contact_sheet.png", sheet)
    if tracker is not None:
        tracker.add_image("samples", np.asarray(sheet), step, dataformats="HWC")
    log.info("validation samples: %s", folder)
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
