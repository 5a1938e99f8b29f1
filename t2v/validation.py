"""Validation samples: a GIF per prompt and a contact sheet, also sent to TensorBoard."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from clipio.images import contact_sheet, save_png
from clipio.video import write_gif
from t2v.config import RunConfig

log = logging.getLogger(__name__)


def write_samples(pipe, cfg: RunConfig, folder: Path, tracker=None, step: int = 0, seed: int = 0) -> list[Path]:
    """Generate ``cfg.train.validation_prompts`` (fixed seeds) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, rows = [], []
    for i, prompt in enumerate(cfg.train.validation_prompts):
        g = torch.Generator().manual_seed(seed + i)
        frames = pipe(prompt, negative_prompt=cfg.sample.negative_prompt or None,
                      num_frames=cfg.data.num_frames, num_inference_steps=cfg.sample.steps,
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
