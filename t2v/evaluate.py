"""``t2v eval``: does a trained model follow its prompts? Measured on held-out synthworld scenes.

For ``num_scenes`` scenes never used in training, the model generates a video from the scene's
caption (``caption_field``); the synthworld detector reads each video back and
:func:`synthworld.score.prompt_following` scores colour, shape, motion direction and object count
against the scene. Chance level is measured, not assumed: each video is also scored against ten
*other* scenes' truths, which is what a model that ignores its prompt would get. Writes
``eval.json`` and a contact sheet of the first samples.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from tqdm import tqdm

from clipio.images import contact_sheet, save_png
from clipio.pixels import to_signed, to_uint8
from clipio.video import write_gif
from synthworld.dataset import World, caption_for, heldout_specs, training_world
from synthworld.detect import detect_video
from synthworld.score import PROMPT_CATEGORIES, prompt_following
from t2v.compare.metrics import CHANCE_OTHERS

log = logging.getLogger(__name__)


def _rates(hits: dict[str, list[bool]]) -> dict[str, float]:
    return {c: float(np.mean(v)) if v else float("nan") for c, v in hits.items()}


def evaluate_model(model_dir: str | Path, out: str | Path, num_scenes: int = 50, caption_field: str = "dense",
                   steps: int = 20, guidance: float = 3.0, seed: int = 0, train_manifest: str | Path | None = None,
                   sheet_rows: int = 10) -> dict:
    from t2v.generate import load_pipeline, training_fps

    model_dir, out = Path(model_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = load_pipeline(model_dir)
    fps = training_fps(model_dir)
    tc = pipe.transformer.config
    num_frames = tc.sample_frames
    duration = num_frames / fps
    exclude, world = training_world(train_manifest)  # held-out: the training world, none of its scenes
    specs = heldout_specs(num_scenes, max(duration, 1.0), exclude, world)
    dets, rows, labels = [], [], []
    for k, spec in enumerate(tqdm(specs, desc="generating held-out scenes", unit="video")):
        prompt = caption_for(spec, caption_field)
        frames = pipe(prompt, num_frames=num_frames, num_inference_steps=steps, guidance_scale=guidance,
                      generator=torch.Generator().manual_seed(seed + k), progress=False).frames[0]
        dets.append(detect_video(frames, fps))
        if k < sheet_rows:
            write_gif(out / f"sample-{k:02d}.gif", frames, fps)
            rows.append(frames)
            labels.append(prompt[:200])
    hits = {c: [] for c in PROMPT_CATEGORIES}
    chance = {c: [] for c in PROMPT_CATEGORIES}
    ceiling = _ceiling(pipe, specs, fps, frames.shape[1]) if specs else {}
    n = len(specs)
    for k, (spec, det) in enumerate(zip(specs, dets)):
        for c, v in prompt_following(spec, det).items():
            hits[c] += v
        for j in range(1, min(n - 1, CHANCE_OTHERS) + 1):  # every video vs ten other scenes
            for c, v in prompt_following(specs[(k + j) % n], det).items():
                chance[c] += v
    res = {"model": str(model_dir), "scenes": n, "caption_field": caption_field, "steps": steps,
           "guidance": guidance, "world": asdict(world or World()), "score": _rates(hits), "chance": _rates(chance),
           "ceiling": ceiling,
           "items": {c: len(v) for c, v in hits.items()},
           "objects_detected_per_video": float(np.mean([len(d.tracks) for d in dets]))}
    (out / "eval.json").write_text(json.dumps(res, indent=1))
    if rows:
        save_png(out / "contact_sheet.png", contact_sheet(rows, labels, cell=64, label_width=300))
    return res


@torch.inference_mode()
def _ceiling(pipe, specs, fps: float, size: int) -> dict[str, float]:
    """The best a model can score here: the true scenes, rendered at the model's size and fps and
    round-tripped through its own VAE, read by the same detector."""
    hits = {c: [] for c in PROMPT_CATEGORIES}
    for spec in specs:
        back = true_video(pipe, spec, fps, size)
        for c, v in prompt_following(spec, detect_video(back, fps)).items():
            hits[c] += v
    return _rates(hits)


@torch.inference_mode()
def true_video(pipe, spec, fps: float, size: int) -> np.ndarray:
    """A scene rendered at ``size``/``fps`` and round-tripped through the pipeline's VAE: (F, H, W, 3) uint8."""
    from synthworld.render import render

    vae = pipe.video_vae
    frames = render(spec, size=size, fps=fps)  # (F, H, W, 3) uint8
    x = rearrange(to_signed(frames), "f h w c -> 1 c f h w")
    y = vae.decode(vae.encode(x.to(pipe.vae.dtype))).float()
    return to_uint8(rearrange(y, "1 c f h w -> f h w c"))


def format_table(res: dict) -> str:
    ceil = res.get("ceiling") or {}
    lines = ["| category | score | chance (other scenes' prompts) | ceiling (true scenes through the VAE) | items |",
             "|---|---|---|---|---|"]
    for c in PROMPT_CATEGORIES:
        cl = f"{ceil[c]:.2f}" if c in ceil else "–"
        lines.append(f"| {c} | {res['score'][c]:.2f} | {res['chance'][c]:.2f} | {cl} | {res['items'][c]} |")
    return "\n".join(lines)
