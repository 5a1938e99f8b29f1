"""The model card of an exported pipeline folder (``pipeline/README.md``), as diffusers' training scripts
write one: Hub metadata (library, pipeline tag, base model, tags), what the model was trained from and for
how long, how to use it, the run's config, and — once ``t2v compare`` has scored it — the evaluation table.
A LoRA run's ``lora/README.md`` (:func:`lora_card`) is the card of the adapter alone: a LoRA of the base model,
with ``base_model_relation: adapter`` and how to apply it with diffusers or ``t2v generate --lora``."""

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
    lora = cfg.model.lora
    if lora.rank > 0:
        meta["tags"].append("lora")
    how = (f"fine-tuned from `{base}` with a LoRA ({_lora_words(lora)}) merged into its weights — the adapter "
           f"alone is in `{folder.parent / 'lora'}`" if lora.rank > 0
           else f"fine-tuned from `{base}`" if base else "trained from scratch")
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", MARK, "",
        f"# {Path(cfg.train.output_dir).name}", "",
        f"A `TextToVideoPipeline` trained with dense-t2v: a {cfg.model.backbone} DiT {how}"
        f" on the `{cfg.data.caption_field}` captions of `{cfg.data.manifest}`.", "",
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


def _lora_words(lora) -> str:
    alpha = lora.alpha if lora.alpha is not None else lora.rank
    return f"rank {lora.rank}, alpha {alpha:g}, on {', '.join(f'`{t}`' for t in lora.target_modules)}"


def lora_card(cfg, summary: dict, folder: Path, pipeline: Path) -> str:
    """The card of a LoRA folder: what it adapts (the base model), how it was trained and how to apply it."""
    base = cfg.model.pretrained
    meta = {"library_name": "diffusers", "pipeline_tag": "text-to-video", "base_model": str(base),
            "base_model_relation": "adapter",
            "tags": ["lora", "text-to-video", "dense-t2v", "wan-dit", f"captions-{cfg.data.caption_field}"]}
    # model.pretrained is the transformer/ folder of a Wan pipeline (Wan2.1-T2V-1.3B-Diffusers/transformer)
    wan_pipeline = str(Path(base).parent) if Path(base).name == "transformer" else "BASE_WAN_PIPELINE"
    extra = ["", "It also holds the trained text adapter (`text_adapter.safetensors`, model.lora.train_text_adapter), "
             "which only `t2v generate --lora` applies; diffusers' loader reads the LoRA alone."] \
        if (folder / "text_adapter.safetensors").is_file() else []
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", MARK, "",
        f"# {Path(cfg.train.output_dir).name} (LoRA)", "",
        f"A LoRA of `{base}` ({_lora_words(cfg.model.lora)}), trained with dense-t2v on the "
        f"`{cfg.data.caption_field}` captions of `{cfg.data.manifest}`: {summary.get('steps')} steps, final loss "
        f"{summary.get('final_loss', float('nan')):.4f}, EMA {cfg.train.ema_decay or 'off'}. Only the adapter "
        f"weights are here (`pytorch_lora_weights.safetensors`, diffusers' Wan LoRA format); the same run's "
        f"`{pipeline}` holds the whole model with the LoRA merged in.", *extra, "",
        "## Use", "",
        "With diffusers, on the base model's Wan pipeline:", "",
        "```python", "from diffusers import WanPipeline", "",
        f"pipe = WanPipeline.from_pretrained({wan_pipeline!r})  # the base model's pipeline",
        f"pipe.load_lora_weights({str(folder)!r}, adapter_name=\"dense\")",
        "pipe.set_adapters([\"dense\"], [1.0])", "```", "",
        "With dense-t2v, on a `TextToVideoPipeline` whose transformer is the base model:", "",
        "```bash", f"t2v generate --model BASE_PIPELINE --lora {folder} [--lora-scale 0.8] --prompt \"…\" --out a.mp4",
        "```", "",
        "## Training config", "", "```yaml", cfg.to_yaml().strip(), "```", "",
    ]
    return "\n".join(lines)


def write_lora_card(folder: Path, cfg, summary: dict, pipeline: Path) -> Path:
    path = Path(folder) / "README.md"
    path.write_text(lora_card(cfg, summary, Path(folder), Path(pipeline)))
    return path


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
