"""``t2v experiment`` (``make experiment``): the paper's short-vs-dense experiment in miniature, offline.

    synthworld clips → ``captioner run`` (oracle backend, DiffSW: captions from the pixels)
    → one VAE → two trainings, identical but for ``data.caption_field`` (short | dense)
    → ``t2v compare`` on held-out dense prompts → report.html / report.md / report.json

With ``captioner`` (a trained captioner: ``captioner train``'s ``OUTPUT/model``, or any captioner config) a
third arm closes the paper's loop: the same clips captioned by that captioner (``data/captions-learned.jsonl``)
train a third model ("learned", its dense captions), so the report shows short vs oracle dense vs learned
dense — what distilling the annotator into a fast captioner costs the T2V model.

Each step is skipped when its output exists, so an interrupted experiment resumes (a killed
training resumes from its last checkpoint).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from synthworld.dataset import DEMO_WORLD, World

log = logging.getLogger(__name__)
ORACLE_CONFIG = "oracle"  # the captioner preset shipped as package data


def run_experiment(out: str | Path = "runs/experiment", config: str | Path = "tiny",
                   num_clips: int = 1000, minutes: float = 15.0, num_prompts: int = 100, vae_steps: int = 0,
                   vae_crop: int = 0,
                   overrides: list[str] | None = None, world: World = DEMO_WORLD,
                   captioner: str | Path | None = None) -> Path:
    from captioner.config import load_captioner_config
    from captioner.run import run_captioner, tasks_from_manifest
    from synthworld.dataset import write_synth_dataset
    from t2v.compare.prompts import write_heldout_prompts
    from t2v.compare.run import compare_models
    from t2v.config import load_config
    from t2v.data.cache import build_cache
    from t2v.models.build import build_text_encoder, build_vae
    from t2v.train import latest_checkpoint, train
    from t2v.vae_train import run_vae

    out = Path(out)
    times: dict[str, float] = {}
    t0 = time.time()
    captions = out / "data" / "captions.jsonl"

    learned = out / "data" / "captions-learned.jsonl"

    def cfg_for(field: str):
        manifest, caption_field = (learned, "dense") if field == "learned" else (captions, field)
        own_vae = [f"vae.path={out / 'vae'}"] if vae_steps > 0 else []  # else the config's (packaged) VAE
        return load_config(config, [f"data.manifest={manifest}", f"data.caption_field={caption_field}", *own_vae,
                                    f"train.output_dir={out / field}",
                                    # equal time, not equal steps: the preset's step count is lifted, and with it
                                    # the LR decay of its last steps (a time budget has no known last steps)
                                    f"train.max_minutes={minutes}", f"train.max_steps={10**6}",
                                    "optim.schedule=constant", *(overrides or [])])

    def stamp(name: str, since: float) -> None:
        times[name] = round(time.time() - since, 1)
        log.info("experiment: %s done in %.0f s", name, times[name])

    base = cfg_for("dense")
    seconds = base.data.num_frames / base.data.fps
    # 1. clips, then captions written by the captioner from the pixels (oracle VLM, DiffSW)
    s = time.time()
    synth = write_synth_dataset(out / "data", num_clips, seed=0, size=base.data.size, fps=8.0, seconds=seconds,
                                world=world, workers=0)
    ccfg = load_captioner_config(ORACLE_CONFIG)
    cap = run_captioner(ccfg, tasks_from_manifest(synth.manifest, captions), captions)
    if cap.error:
        log.warning("captioner: %d clips failed (see the error records in %s)", cap.error, captions)
    arms = ["short", "dense"]
    if captioner is not None:  # the same clips, captioned by the learned captioner
        lcap = run_captioner(load_captioner_config(captioner), tasks_from_manifest(synth.manifest, learned), learned)
        if lcap.error:
            log.warning("learned captioner: %d clips failed; the learned arm trains without them (error records "
                        "in %s)", lcap.error, learned)
        arms.append("learned")
    stamp("data+captions", s)
    # 2. one VAE for every model: the config's, or one trained here with --vae-steps
    s = time.time()
    run_vae(base, synth.manifest, vae_steps, vae_crop)
    stamp("vae", s)
    # 3. two trainings, identical but for the caption field
    pipelines = {}
    for field in arms:
        s = time.time()
        cfg = cfg_for(field)
        build_cache(cfg, build_vae(cfg), build_text_encoder(cfg))
        pipelines[field] = Path(cfg.train.output_dir) / "pipeline"
        if not (pipelines[field] / "model_index.json").is_file():
            train(cfg, resume="latest" if latest_checkpoint(cfg.train.output_dir) else None)
        stamp(f"train-{field}", s)
    # 4. the comparison on held-out dense prompts
    s = time.time()
    prompts = out / "prompts-heldout-dense.jsonl"
    if not prompts.is_file():
        write_heldout_prompts(prompts, num_prompts, seconds, "dense", train_manifest=captions)
    report_dir = out / "report"
    command = f"t2v experiment --out {out} --minutes {minutes} --num-clips {num_clips} --num-prompts {num_prompts}"
    compare_models([pipelines[a] for a in arms], prompts, report_dir, names=arms,
                   steps=base.sample.steps, guidance=base.sample.guidance,
                   command=command + (f" --captioner {captioner}" if captioner is not None else ""))
    stamp("compare", s)
    (out / "times.json").write_text(json.dumps({**times, "total": round(time.time() - t0, 1)}, indent=1))
    log.info("experiment: report in %s (total %.0f s)", report_dir / "report.html", time.time() - t0)
    return report_dir
