"""Checkpoints for exact resume.

``checkpoints/step-000500/`` holds accelerate's state (model, optimiser, scheduler, RNG of every rank and
the EMA, registered with ``acc.register_for_checkpointing``) plus ``trainer_state.json`` (the step, which
also fixes the data position: the loader restarts at batch ``step · grad_accum``) and the run's config.
Only the newest ``train.keep_checkpoints`` are kept.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from t2v.config import RunConfig

log = logging.getLogger(__name__)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run folder (one with ``trainer_state.json``), or None."""
    ckpts = sorted((Path(output_dir) / "checkpoints").glob("step-*"))
    ckpts = [c for c in ckpts if (c / "trainer_state.json").is_file()]
    return ckpts[-1] if ckpts else None


def save_checkpoint(acc, out: Path, step: int, cfg: RunConfig) -> Path:
    """Save the state at ``step`` (all ranks take part), then prune old checkpoints."""
    ckpt = out / "checkpoints" / f"step-{step:06d}"
    acc.save_state(str(ckpt))
    if acc.is_main_process:
        (ckpt / "trainer_state.json").write_text(json.dumps({"step": step}))
        cfg.save(ckpt / "config.yaml")
        prune_checkpoints(out, cfg.train.keep_checkpoints)
    acc.wait_for_everyone()
    return ckpt


def prune_checkpoints(out: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    for old in sorted((out / "checkpoints").glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(acc, out: Path, resume: str | None) -> int | None:
    """Restore the state named by ``resume`` (``"latest"`` or a checkpoint folder) and return its step;
    None when there is nothing to resume (no ``resume``, or ``"latest"`` in a run without checkpoints)."""
    if not resume:
        return None
    ckpt = latest_checkpoint(out) if resume == "latest" else Path(resume)
    if ckpt is None:
        log.warning("--resume latest: no checkpoint in %s, starting from scratch", out / "checkpoints")
        return None
    if not (ckpt / "trainer_state.json").is_file():
        raise ValueError(f"--resume {resume}: not a checkpoint folder (no trainer_state.json in {ckpt})")
    acc.load_state(str(ckpt))
    step = json.loads((ckpt / "trainer_state.json").read_text())["step"]
    if acc.is_main_process:
        log.info("resumed from %s at step %d", ckpt, step)
    return step
