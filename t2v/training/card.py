"""The model card of an exported pipeline folder (``pipeline/README.md``), as diffusers' training scripts
write one: Hub metadata (library, pipeline tag, base model, tags), what the model was trained from and for
how long, how to use it, the run's config, and — once ``t2v compare`` has scored it — the evaluation table."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import yaml

log = logging.getLogger(__name__)
MARK = "<!-- dense-t2v model card -->"
EVAL_HEADING = "## Evaluation"


def model_card(cfg, summary: dict, folder: Path) -> str:
    """The card's Markdown for a run config ``cfg`` and its ``train_summary.json`` contents."""
    base = cfg.model.pretrained
    meta = {"library_name": "diffusers", "pipeline_tag": "text-to-video",
            "tags": ["text-to-video", "dense-t2v", f"{cfg.model.backbone}-dit", f"captions-{cfg.data.caption_field}"]}
    if base:
        meta["base_model"] = str(base)
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", MARK, "",
        f"# {Path(cfg.train.output_dir).name}", "",
        f"A `TextToVideoPipeline` trained with dense-t2v: a {cfg.model.backbone} DiT "
        + (f"fine-tuned from `{base}`" if base else "trained from scratch")
        + f" on the `{cfg.data.caption_field}` captions of `{cfg.data.manifest}`.", "",
        f"- steps: {summary.get('steps')} (batch {cfg.train.batch_size} per process × {summary.get('world_size')} "
        f"processes × {cfg.train.grad_accum} accumulation), final loss {summary.get('final_loss', float('nan')):.4f}",
        f"- training: {summary.get('minutes', float('nan')):.1f} min, {summary.get('parallel', 'ddp')}, mixed precision "
        f"{summary.get('mixed_precision')}, EMA {cfg.train.ema_decay or 'off'}",
        f"- clips: {cfg.data.num_frames} frames at {cfg.data.fps:g} fps, {cfg.data.size} px; text encoder "
        f"`{cfg.text.path}`; VAE `{cfg.vae.path}`",
        f"- written {time.strftime('%Y-%m-%d %H:%M')}", "",
        "## Use", "",
        "```bash", f"t2v generate --model {folder} --prompt \"A small red circle moves to the right.\" --out a.mp4",
        "```", "",
        "```python", "from t2v.pipeline import TextToVideoPipeline", "",
        f"pipe = TextToVideoPipeline.from_pretrained({str(folder)!r})",
        "frames = pipe(\"A small red circle moves to the right.\").frames[0]  # (F, H, W, 3) uint8", "```", "",
        f"Sampling defaults (`t2v_config.yaml`): {cfg.sample.steps} steps, guidance {cfg.sample.guidance:g}, "
        f"shift {cfg.sample.shift:g}.", "",
        "## Training config", "", "```yaml", cfg.to_yaml().strip(), "```", "",
    ]
    return "\n".join(lines)


def write_model_card(folder: Path, cfg, summary: dict) -> Path:
    path = Path(folder) / "README.md"
    path.write_text(model_card(cfg, summary, Path(folder)))
    return path


def add_evaluation(folder: str | Path, table: str, command: str) -> bool:
    """Put (or replace) the card's evaluation section: ``table`` (Markdown) and the command that made it. Only
    into a dense-t2v card; returns whether it was written (a read-only folder is a warning, not an error)."""
    path = Path(folder) / "README.md"
    if not path.is_file() or MARK not in path.read_text():
        return False
    text = path.read_text()
    head = text.split(f"\n{EVAL_HEADING}\n")[0].rstrip() + "\n"
    section = f"\n{EVAL_HEADING}\n\n`{command}` ({time.strftime('%Y-%m-%d %H:%M')}):\n\n{table}\n"
    try:
        path.write_text(head + section)
    except OSError as e:
        log.warning("could not add the evaluation to %s: %s", path, e)
        return False
    return True
