"""Checkpoints for exact resume.

``checkpoints/step-000500/`` holds accelerate's state (model, optimiser, scheduler, RNG of every rank and
the EMA, registered with ``acc.register_for_checkpointing``) — or, for a sharded run (``train.parallel:
fsdp``), ``sharded/`` (each rank's shards of model, optimiser and EMA, ``torch.distributed.checkpoint``),
``rng-<rank>.safetensors`` and ``schedule.json`` — plus ``trainer_state.json`` (the step, which also fixes
the data position: the loader restarts at batch ``step · grad_accum``) and the run's config.
Only the newest ``train.keep_checkpoints`` are kept.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run folder (one with ``trainer_state.json``), or None."""
    ckpts = sorted((Path(output_dir) / "checkpoints").glob("step-*"))
    ckpts = [c for c in ckpts if (c / "trainer_state.json").is_file()]
    return ckpts[-1] if ckpts else None


def save_checkpoint(run, step: int) -> Path:
    """Save the state of ``run`` (a :class:`~t2v.training.build.Run`) at ``step`` (all ranks take part), then
    prune old checkpoints."""
    acc, out, cfg = run.acc, run.out, run.cfg
    ckpt = out / "checkpoints" / f"step-{step:06d}"
    if run.sharded:
        from t2v.training.parallel import save_sharded

        ckpt.mkdir(parents=True, exist_ok=True)
        save_sharded(ckpt, run.model, run.opt, run.sched, run.ema, acc)
    else:
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


def load_checkpoint(run, resume: str | None) -> int | None:
    """Restore the state named by ``resume`` (``"latest"`` or a checkpoint folder) and return its step;
    None when there is nothing to resume (no ``resume``, or ``"latest"`` in a run without checkpoints)."""
    acc, out = run.acc, run.out
    if not resume:
        return None
    ckpt = latest_checkpoint(out) if resume == "latest" else Path(resume)
    if ckpt is None:
        log.warning("--resume latest: no checkpoint in %s, starting from scratch", out / "checkpoints")
        return None
    if not (ckpt / "trainer_state.json").is_file():
        raise ValueError(f"--resume {resume}: not a checkpoint folder (no trainer_state.json in {ckpt})")
    if run.sharded:
        from t2v.training.parallel import load_sharded

        load_sharded(ckpt, run.model, run.opt, run.sched, run.ema, acc)
    elif (ckpt / "sharded").is_dir():
        raise ValueError(f"--resume {resume}: a sharded checkpoint (train.parallel=fsdp); resume it with "
                         "train.parallel=fsdp on as many processes")
    else:
        acc.load_state(str(ckpt))
    step = json.loads((ckpt / "trainer_state.json").read_text())["step"]
    if acc.is_main_process:
        log.info("resumed from %s at step %d", ckpt, step)
    return step
