"""``t2v demo``: the whole loop offline on CPU, resumable step by step.

    synthworld clips + oracle captions → latent/text cache (the packaged tiny VAE) → train (t2v/presets/tiny.yaml)
    → videos from long dense prompts → prompt following on held-out scenes (``report/report.html``,
    the same report as ``t2v compare``) → summary.md

Each step is skipped when its output already exists, so a second ``make demo`` only redoes what is
missing (delete ``runs/demo`` to start over).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from synthworld.dataset import DEMO_WORLD, World

log = logging.getLogger(__name__)

# Stage times (s) of `make demo` at 1000 clips, 1000 VAE steps (``--vae-steps``) and 50 report prompts on the
# machine the README's figures come from (2026-12-07), and its probe step (:func:`probe_step_seconds`). The up-front
# estimate scales them by the counts asked for and by the probe timed here and now; training is estimated from the
# probe directly (steps × s/step).
REFERENCE_STEP_S = 0.41
REFERENCE_SECONDS = {"synth": 23, "vae": 194, "cache": 35, "generate": 2, "eval": 22}


def run_demo(out: str | Path = "runs/demo", config: str | Path = "tiny", num_clips: int = 1000,
             eval_scenes: int = 100, vae_steps: int = 0, vae_crop: int = 0, overrides: list[str] | None = None,
             world: World = DEMO_WORLD) -> Path:
    """The demo in ``out``. ``vae_steps`` > 0 trains its VAE on the clips (``out/vae``) instead of using the
    config's ``vae.path`` (the tiny preset's is the packaged one, trained so for 1000 steps)."""
    from synthworld.dataset import caption_for, heldout_specs, write_synth_dataset
    from t2v.compare.prompts import write_heldout_prompts
    from t2v.compare.run import compare_models, report_table
    from t2v.config import load_config
    from t2v.data.cache import build_cache
    from t2v.generate import generate
    from t2v.models.build import build_text_encoder, build_vae
    from t2v.train import latest_checkpoint, train
    from t2v.vae_train import run_vae

    out = Path(out)
    times: dict[str, float] = {}
    t0 = time.time()
    own_vae = [f"vae.path={out / 'vae'}"] if vae_steps > 0 else []
    cfg = load_config(config, [f"data.manifest={out / 'data' / 'manifest.jsonl'}", *own_vae,
                               f"train.output_dir={out / 't2v'}", *(overrides or [])])

    step_s = probe_step_seconds(cfg)
    log.info("demo: %s", plan(num_clips, vae_steps, eval_scenes, cfg.train.max_steps, step_s))

    def stamp(name: str, since: float) -> None:
        times[name] = round(time.time() - since, 1)
        log.info("demo: %s done in %.0f s", name, times[name])

    # 1. data
    s = time.time()
    write_synth_dataset(out / "data", num_clips, seed=0, size=cfg.data.size, fps=8.0,
                        seconds=cfg.data.num_frames / cfg.data.fps, world=world, workers=0)
    unseen_file = out / "prompts-heldout-unseen-combos.jsonl"
    if world.holdout and not unseen_file.is_file():  # before training: scenes holding the left-out combinations
        write_heldout_prompts(unseen_file, eval_scenes, cfg.data.num_frames / cfg.data.fps, "dense",
                              train_manifest=cfg.data.manifest, combos="unseen")
    stamp("synth", s)
    # 2. VAE: the config's (packaged) one, or one trained here with --vae-steps
    s = time.time()
    vae_res = run_vae(cfg, cfg.data.manifest, vae_steps, vae_crop)
    stamp("vae", s)
    # 3. cache
    s = time.time()
    build_cache(cfg, build_vae(cfg), build_text_encoder(cfg))
    stamp("cache", s)
    # 4. train (resumes a killed demo)
    s = time.time()
    pipeline = out / "t2v" / "pipeline"
    if not (pipeline / "model_index.json").is_file():
        train(cfg, resume="latest" if latest_checkpoint(cfg.train.output_dir) else None)
    stamp("train", s)
    # 5. videos from long dense prompts of unseen scenes
    s = time.time()
    prompts = [caption_for(spec, "dense") for spec in heldout_specs(4, cfg.data.num_frames / cfg.data.fps,
                                                                     dataset_seed=424242, world=world)]
    videos = generate(pipeline, prompts, out / "videos", steps=cfg.sample.steps, guidance=cfg.sample.guidance)
    sheet = video_sheet(videos, prompts, out / "videos" / "contact_sheet.png")
    stamp("generate", s)
    # 6. prompt following on held-out scenes, next to chance and ceiling: the HTML report
    s = time.time()
    prompts_file = out / "prompts-heldout-dense.jsonl"
    if not prompts_file.is_file():
        write_heldout_prompts(prompts_file, eval_scenes, cfg.data.num_frames / cfg.data.fps, "dense",
                              train_manifest=cfg.data.manifest)
    report = compare_models([pipeline], prompts_file, out / "report", names=["demo"], steps=cfg.sample.steps,
                            guidance=cfg.sample.guidance, command=f"t2v demo --out {out}")
    unseen = []
    if world.holdout:  # compositional generalisation: the same on scenes holding the combinations left out
        rep = compare_models([pipeline], unseen_file, out / "report-unseen-combos", names=["demo"],
                             steps=cfg.sample.steps, guidance=cfg.sample.guidance, command=f"t2v demo --out {out}")
        unseen = [f"## Prompt following on {eval_scenes} held-out scenes with combinations never trained on", "",
                  f"Left out of every training clip: {', '.join(world.holdout)} (colour, shape, direction).", "",
                  report_table(rep), "", f"Report: `{out / 'report-unseen-combos' / 'report.html'}`.", ""]
    stamp("eval", s)
    # 7. summary
    summary = out / "summary.md"
    train_sum = json.loads((out / "t2v" / "train_summary.json").read_text()) \
        if (out / "t2v" / "train_summary.json").is_file() else {}
    steps = train_sum.get("steps", cfg.train.max_steps)
    notes = []
    if train_sum.get("curriculum_complete") is False:  # train.max_steps shorter than the curriculum
        curriculum = cfg.objective.pure_noise_steps + cfg.objective.noise_ramp_steps
        notes = [f"**Warning**: training ended at step {steps}, inside the {curriculum}-step noise-level curriculum "
                 f"(train.max_steps={cfg.train.max_steps}), so low noise levels were barely trained and the scores "
                 "below are not the preset's.", ""]
    elif steps < cfg.train.max_steps:
        notes = [f"**Note**: training stopped at step {steps} of {cfg.train.max_steps} (a time cap, "
                 f"train.max_minutes={cfg.train.max_minutes:g}, or an interrupted run), so the scores below are "
                 f"not the preset's. Delete `{out / 't2v'}` and re-run without the cap.", ""]
    lines = [
        "# dense-t2v demo", "",
        f"- data: {num_clips} synthworld clips ({world}), dense oracle captions: `{cfg.data.manifest}`",
        f"- VAE: `{cfg.vae.path}` (reconstruction PSNR {vae_res.get('psnr', float('nan')):.1f} dB"
        f"{', trained here' if vae_steps > 0 else ''})",
        f"- model: `{pipeline}` ({train_sum.get('steps', '?')} of {cfg.train.max_steps} steps in "
        f"{train_sum.get('minutes', float('nan')):.1f} min, final loss {train_sum.get('final_loss', float('nan')):.4f})",
        f"- videos from long dense prompts: `{out / 'videos'}` (every frame of each: `{sheet}`)", "",
        *notes,
        f"## Prompt following on {eval_scenes} held-out scenes", "", report_table(report), "",
        "Mean over prompts [bootstrap 95% CI]. Chance = the same videos, each scored against ten other scenes' prompts; "
        "ceiling = the true scenes through the VAE, read by the same detector. "
        f"Report with charts and a gallery: `{out / 'report' / 'report.html'}`.", "",
        *unseen,
        "## Prompts", "", *[f"{i}. {p}  \n   → `{v}`" for i, (p, v) in enumerate(zip(prompts, videos))], "",
        "## Wall time (s)", "", *[f"- {k}: {v}" for k, v in times.items()], f"- total: {time.time() - t0:.0f}",
        f"- probe training step at the start: {step_s:.3f} s (the estimate's reference: {REFERENCE_STEP_S} s)", "",
    ]
    summary.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def probe_step(cfg, bf16: bool = False):
    """One training step of the run's own model (text adapter and all) on random latents and a 96-token caption,
    as a closure — what :func:`probe_step_seconds` times and ``bench/train_step.py`` counts. ``bf16``: under CPU
    bf16 autocast. It draws from the global RNG; callers that must not move it fork it."""
    import dataclasses

    import torch

    from t2v.models.build import build_text_encoder, build_transformer, build_vae
    from t2v.objective import flow_matching_loss

    probe = dataclasses.replace(cfg, vae=dataclasses.replace(cfg.vae, path=None))  # same shapes, no trained VAE needed
    vae, text_dim = build_vae(probe), build_text_encoder(probe).dim
    model = build_transformer(probe, vae, text_dim)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    b, f = cfg.train.batch_size, vae.latent_frames(cfg.data.num_frames)
    hw = cfg.data.size // vae.spatial_factor
    x0 = torch.randn(b, model.in_channels, f, hw, hw)  # (B, C, F, h, w)
    text, mask = torch.randn(b, 96, text_dim), torch.ones(b, 96, dtype=torch.bool)  # (B, L, D): a long caption

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = flow_matching_loss(model, x0, text, mask, cfg.objective)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def probe_step_seconds(cfg, steps: int = 3) -> float:
    """Seconds per training step of the run's own model on random latents (a warm-up step, then the mean of
    ``steps``): the machine's speed for this work, right now, in a few seconds."""
    import torch

    with torch.random.fork_rng(devices=[]):
        step = probe_step(cfg)
        times = []
        for _ in range(steps + 1):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    return sum(times[1:]) / steps


def expected_minutes(num_clips: int, vae_steps: int, eval_scenes: int, train_steps: int, step_s: float) -> float:
    """The demo's expected wall time here: the reference stage times scaled by the counts asked for and by this
    machine's probe step, plus ``train_steps`` probe steps."""
    ref, speed = REFERENCE_SECONDS, step_s / REFERENCE_STEP_S
    other = ((ref["synth"] + ref["cache"]) * num_clips / 1000 + ref["vae"] * vae_steps / 1000 + ref["generate"]
             + ref["eval"] * eval_scenes / 50)
    return (other * speed + train_steps * step_s) / 60


def plan(num_clips: int, vae_steps: int, eval_scenes: int, train_steps: int, step_s: float) -> str:
    """What the demo will do and how long it should take here (each stage's progress bar then shows its ETA)."""
    minutes = expected_minutes(num_clips, vae_steps, eval_scenes, train_steps, step_s)
    vae = f"VAE trained here ({vae_steps} steps)" if vae_steps > 0 else "the packaged VAE"
    return (f"{num_clips} clips → {vae} → cache → training ({train_steps} steps) → 4 videos → "
            f"report on {eval_scenes} held-out scenes; expected about {minutes:.0f} min here (a probe training "
            f"step takes {step_s:.2f} s now, {REFERENCE_STEP_S} s on the reference machine). Another job on the "
            "same cores can slow it several times over.")


def video_sheet(videos: list[Path], prompts: list[str], path: Path) -> Path:
    """Every frame of each video in a row, labelled with its prompt: the videos at a glance."""
    from clipio.images import contact_sheet, save_png
    from clipio.video import open_video

    rows = []
    for v in videos:
        with open_video(v) as r:
            rows.append(r.frames_at([k / r.info.fps for k in range(r.info.num_frames)]))
    cols = [f"frame {k}" for k in range(max(len(r) for r in rows))]
    return save_png(path, contact_sheet(rows, [p[:160] for p in prompts], cols, cell=72, label_width=260))
