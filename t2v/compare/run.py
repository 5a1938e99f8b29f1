"""``t2v compare``: the same prompts and seeds through every model, scored per category, into a report.

Prompts come from a JSONL file (``{"prompt": ..., "scene": {...synthworld spec...}}`` per line; the
scene is optional) or a plain text file (one prompt per line). ``t2v prompts`` writes held-out
synthworld prompts with their scenes.

Per prompt ``k`` every model generates with seed ``seed + k``; the synthworld detector reads each
video back and :func:`synthworld.score.scene_following` scores it (when the prompt has a scene);
every video also gets VBench's temporal flicker and, when it has a scene, four defects the detector
reads (:mod:`synthworld.score.video_quality`: track jitter, fragments, background drift, shape
flips; lower is better), and with ``--clip DIR`` a CLIP score and a Fréchet
distance of CLIP video features to the reference videos (the true scenes, or ``--reference``
clips). Categories are averaged per prompt, then bootstrapped over prompts (95% CIs), and each pair
of models gets a paired bootstrap CI of the difference. Chance = the same videos scored against ten
other prompts' scenes each (:func:`t2v.compare.metrics.chance_rates`); ceiling = the true scenes
through the first model's VAE. With one model (``t2v compare --models DIR``) it is the evaluation of
that model: its scores next to chance and ceiling, and no differences.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from tqdm import tqdm

from clipio.pixels import to_signed, to_uint8
from clipio.video import write_gif
from synthworld.detect import Detection, detect_video
from synthworld.score import SCENE_CATEGORIES, scene_following
from synthworld.score.video_quality import VIDEO_QUALITY, video_quality
from synthworld.spec import SceneSpec
from t2v.compare.judge import JUDGE_KEYS, agreement_note, judge_categories
from t2v.compare.metrics import (
    bootstrap_ci,
    chance_rates,
    frechet_distance,
    paired_difference_ci,
    per_prompt_rates,
    temporal_flicker,
)
from t2v.compare.prompts import PromptItem, load_prompts, recaptioned_prompts, variant_prompts
from t2v.generate import load_pipeline, pipeline_config, training_fps

log = logging.getLogger(__name__)
CATEGORY_LABELS = {"colour": "object colour", "shape": "object shape", "binding": "attribute binding",
                   "position": "start position (3×3 region)",
                   "direction": "motion direction", "events": "temporal events (right change, right second)",
                   "count": "object count"}
# what the detector sees go wrong frame by frame (synthworld.score.video_quality): lower is better, 0 = none
DEFECT_LABELS = {"jitter": "track jitter (px RMS off a constant-velocity path)",
                 "fragments": "fragment frames (more blobs than visible objects)",
                 "bg_drift": "background drift (std of the border colour, 0–255)",
                 "shape_flips": "shape flips (frames off the track's usual shape)"}


def _stats(per_prompt: list[dict[str, float | None]], keys) -> dict[str, dict]:
    return {k: bootstrap_ci([p[k] for p in per_prompt if p.get(k) is not None]) for k in keys}


@dataclass
class ModelRun:
    """One model's pass over the prompts: its videos, their detections and per-prompt figures."""

    videos: list[np.ndarray]  # per prompt: (F, H, W, 3) uint8
    dets: list[Detection | None]  # read once; None for a prompt without a scene
    rows: list[dict[str, float | None]]  # per prompt: category -> rate, flicker, clip_score
    settings: dict


def compare_models(models: list[str | Path], prompts: str | Path, out: str | Path, names: list[str] | None = None,
                   steps: int = 20, guidance: float = 5.0, seed: int = 0, clip: str | None = None,
                   gallery: int = 12, command: str = "", device: str | None = "cpu",
                   recaption: str | Path | None = None, judge: str | Path | None = None,
                   judge_claims: str | Path | None = None, variants: dict[str, str | Path] | None = None,
                   **load: bool) -> dict:
    """Generate, score and report. Returns the report dict (also written to ``out/report.json``).

    ``recaption`` (a captioner config, preset or trained folder): every model also runs on the prompts that
    captioner re-captions (``t2v generate --recaption``), as the arm ``NAME+recaption``: same scenes, same
    seeds, so the paired difference is what re-captioning buys. The rewritten prompts are in
    ``out/prompts-recaptioned.jsonl`` and the report.

    ``variants`` (name -> prompts file): every model also runs on each file's prompts — the same scenes in the same
    order, in other words (``t2v prompts --caption-field paraphrase``) — as the arm ``NAME@VARIANT``, same seeds:
    the paired difference is what the wording costs. With ``recaption``, each variant is re-captioned too.

    ``judge`` (a captioner config, preset or trained folder): a VLM judge checks each prompt's atomic claims
    against its DiffSW caption of every video (:mod:`t2v.compare.judge`); its per-claim-type rates join the
    report, and where prompts have scenes, its agreement with the detector. A re-captioned arm is judged on the
    claims of the original prompt. ``judge_claims``: another captioner splits the prompts into claims (``oracle``
    on synthworld prompts: claims the detector can check, so a model judge's agreement is measured).

    One model is a plain evaluation (its scores with chance and ceiling, no differences). ``device`` (None:
    CUDA when present) and ``load`` (offload, vae_slicing, vae_tiling) as :func:`t2v.generate.load_pipeline`;
    CLIP scoring runs on the same device."""
    from t2v.compare.report import write_report

    # 1. inputs
    out = Path(out)
    items = load_prompts(prompts)
    names = model_names(models, names)
    (out / "gallery").mkdir(parents=True, exist_ok=True)
    judge_, claims = None, None
    if judge_claims and not judge:
        raise ValueError("--judge-claims splits the prompts for a judge: give --judge CAPTIONER too")
    if judge:  # first: a config that does not load, or a judge that reads no claims, fails before any video is made
        from t2v.compare.judge import Judge, split_claims

        judge_ = Judge(judge, claims_config=judge_claims)
        claims = split_claims(judge_, [it.prompt for it in items])
    scorer = None
    if clip:
        from t2v.compare.metrics import ClipScorer

        scorer = ClipScorer(clip, device=device)
    has_scenes = any(it.scene is not None for it in items)
    keys = ((list(SCENE_CATEGORIES) if has_scenes else []) + ["flicker"] + (["clip_score"] if scorer else [])
            + (list(VIDEO_QUALITY) if has_scenes else []))

    # the prompt sets every model runs on: the prompts, then each variant (same scenes, other words)
    sets = {"": items} | {f"@{v}": variant_prompts(items, v, path) for v, path in (variants or {}).items()}
    arms = [f"{n}{tag}{plus}" for n in names for tag in sets for plus in ("", "+recaption")[:2 if recaption else 1]]
    if len(set(arms)) != len(arms):
        raise ValueError(f"--names / --variants: the arms {arms} are not all distinct; rename a model or a variant")
    rewritten: dict[str, list[PromptItem]] = {}

    # 2. every model (and arm), the same prompts and seeds
    runs: dict[str, ModelRun] = {}
    arm_models: list[str | Path] = []
    first_pipe = None
    for name, model in zip(names, models):
        pipe, fps = load_pipeline(model, device, **load), training_fps(model)
        first_pipe = first_pipe or (pipe, fps)
        for tag, its in sets.items():
            runs[name + tag] = _run_model(pipe, fps, name + tag, its, out / "gallery", steps, guidance, seed, gallery,
                                          scorer)
            arm_models.append(model)
            if recaption and tag not in rewritten:  # once, for the first model's video length
                rewritten[tag] = recaptioned_prompts(model, its, recaption, out, pipe.transformer.config.sample_frames,
                                              f"prompts{tag.replace('@', '-')}-recaptioned.jsonl")
            if recaption:
                arm = f"{name}{tag}+recaption"
                runs[arm] = _run_model(pipe, fps, arm, rewritten[tag], out / "gallery", steps, guidance, seed, gallery,
                                       scorer)
                arm_models.append(model)
        del pipe
    names, models = list(runs), arm_models
    judge_section = None
    if judge_ is not None:  # claims of the original prompts, for every arm
        from t2v.compare.judge import judge_models

        jrows, judge_section = judge_models(judge_, [it.prompt for it in items], {n: runs[n].videos for n in names},
                                            {n: runs[n].dets for n in names},
                                            {n: runs[n].settings["fps"] for n in names}, out, claims)
        for n in names:
            for row, jr in zip(runs[n].rows, jrows[n]):
                row.update(jr)
        keys += sorted({k for n in names for r in jrows[n] for k in r}, key=list(JUDGE_KEYS.values()).index)

    # 3. references: chance (deranged scenes) and ceiling (true scenes through the VAE)
    metrics = {n: _stats(runs[n].rows, keys) for n in names}
    reference, fd = _references(items, runs, names, *first_pipe, keys, scorer) if has_scenes else ({}, {})

    # 4. paired differences (every pair of models, later − earlier)
    diffs = paired_differences({n: runs[n].rows for n in names}, keys)

    # 5. the report
    report = {
        "title": f"Comparison: {' vs '.join(names)}" if len(names) > 1 else f"Evaluation: {names[0]}",
        "created": time.strftime("%Y-%m-%d %H:%M"),
        "command": command or f"t2v compare --models {' '.join(map(str, models))} --prompts {prompts} --out {out}",
        "models": [{"name": n, "path": str(m), "caption_field": _caption_field(m)} for n, m in zip(names, models)],
        "settings": runs[names[-1]].settings,
        "categories": _categories(keys),
        "metrics": metrics,
        "reference": reference,
        "differences": diffs,
        "notes": _notes(fd) + _steps_note(names, models) + (agreement_note(judge_section) if judge_section else []),
        "gallery": [{"prompt": it.prompt, "videos": {n: f"gallery/{k:03d}-{n}.gif" for n in names},
                     "scores": {n: {c: runs[n].rows[k].get(c) for c in (*SCENE_CATEGORIES, *VIDEO_QUALITY, *JUDGE_KEYS.values())
                                    if runs[n].rows[k].get(c) is not None} for n in names}}
                    for k, it in enumerate(items[:gallery])],
    }
    if fd:
        report["frechet_clip_distance"] = fd
    if judge_section:
        report["judge"] = judge_section
    if rewritten:
        report["recaption"] = {"captioner": str(recaption), "prompts": [it.prompt for it in rewritten[""]]}
        report["notes"].append(f"*NAME+recaption*: the same model on the prompts re-captioned by {recaption} "
                               f"({out / 'prompts-recaptioned.jsonl'}), same scenes and seeds.")
    if variants:
        report["variants"] = {v: str(p) for v, p in variants.items()}
        report["notes"].append("*NAME@VARIANT*: the same model on another wording of the same scenes ("
                               + ", ".join(f"{v}: {p}" for v, p in variants.items()) + "), same seeds.")
    write_report(report, out)
    from t2v.training.card import add_evaluation

    for m in dict.fromkeys(map(str, models)):  # each trained model's card gets this table
        add_evaluation(m, report_table(report), report["command"])
    return report


def model_names(models: list[str | Path], names: list[str] | None) -> list[str]:
    """``names``, or each model's run folder name (the parent of a ``pipeline/`` folder); one distinct name each."""
    names = names or [Path(m).parent.name if Path(m).name == "pipeline" else Path(m).name for m in models]
    if len(names) != len(models) or len(set(names)) != len(names):
        raise ValueError(f"--names {names}: need one distinct name per model ({len(models)} models)")
    return names


def _prompt_row(scene: SceneSpec | None, det: Detection | None, video: np.ndarray, prompt: str,
                scorer) -> dict[str, float | None]:
    """One video's figures: its rate per scene category and its defects (when it has a scene), flicker and
    CLIP score."""
    r = per_prompt_rates(scene_following(scene, det)) if det is not None else {}
    if det is not None:
        r.update(video_quality(video, det, scene))
    r["flicker"] = temporal_flicker(video)
    if scorer:
        r["clip_score"] = scorer.score(video, prompt)
    return r


def _run_model(pipe, fps: float, name: str, items: list[PromptItem], gallery_dir: Path, steps: int,
               guidance: float, seed: int, gallery: int, scorer) -> ModelRun:
    """Prompt ``k`` with seed ``seed + k``; the first ``gallery`` videos are written as GIFs."""
    frames_n = pipe.transformer.config.sample_frames
    settings = {"prompts": len(items), "seeds": f"{seed} + prompt index", "steps": steps,
                "guidance": guidance, "frames": frames_n, "fps": fps}
    vids = []
    for k, it in enumerate(tqdm(items, desc=f"generating ({name})", unit="video")):
        v = pipe(it.prompt, num_frames=frames_n, num_inference_steps=steps, guidance_scale=guidance,
                 generator=torch.Generator().manual_seed(seed + k), progress=False).frames[0]
        vids.append(v)
        if k < gallery:
            write_gif(gallery_dir / f"{k:03d}-{name}.gif", v, fps)
    dets = [detect_video(v, fps) if it.scene is not None else None for it, v in zip(items, vids)]
    rows = [_prompt_row(it.scene, det, v, it.prompt, scorer) for it, v, det in zip(items, vids, dets)]
    return ModelRun(vids, dets, rows, settings)


def _references(items: list[PromptItem], runs: dict[str, ModelRun], names: list[str], pipe, fps: float,
                keys: list[str], scorer) -> tuple[dict, dict[str, float]]:
    """Chance (every model's videos against other prompts' scenes) and ceiling (the true scenes through
    ``pipe``'s VAE) as bootstrap stats, and with a CLIP scorer each model's Fréchet distance to the true scenes."""
    scenes = [it.scene for it in items]
    chance_rows = [row for n in names for row in chance_rates(scenes, runs[n].dets, scene_following)]
    size = runs[names[0]].videos[0].shape[1]
    true = [true_video(pipe, s, fps, size) if s is not None else None for s in scenes]
    ceil_rows = [_prompt_row(s, detect_video(v, fps), v, it.prompt, scorer)
                 for it, s, v in zip(items, scenes, true) if s is not None]
    reference = {"chance": _stats(chance_rows, SCENE_CATEGORIES), "ceiling": _stats(ceil_rows, keys)}
    fd = {}
    if scorer:  # Fréchet distance of CLIP video features: generated vs the true scenes
        ref = np.stack([scorer.video_features(v) for v in true if v is not None])
        for n in names:
            fd[n] = frechet_distance(np.stack([scorer.video_features(v) for v in runs[n].videos]), ref)
    return reference, fd


@torch.inference_mode()
def true_video(pipe, spec: SceneSpec, fps: float, size: int) -> np.ndarray:
    """A scene rendered at ``size``/``fps`` and round-tripped through the pipeline's VAE: (F, H, W, 3) uint8."""
    from synthworld.render import render

    vae = pipe.video_vae
    frames = render(spec, size=size, fps=fps)  # (F, H, W, 3) uint8
    x = rearrange(to_signed(frames), "f h w c -> 1 c f h w")
    y = vae.decode(vae.encode(x.to(pipe.device, pipe.vae.dtype))).float().cpu()
    return to_uint8(rearrange(y, "1 c f h w -> f h w c"))


def paired_differences(rows: dict[str, list[dict[str, float | None]]], keys: list[str]) -> list[dict]:
    """Per pair of models ``a`` before ``b`` and key: the paired bootstrap CI of ``b − a`` over the prompts where
    both have a value. ``rows`` maps model name -> per-prompt figures (same prompts, same order); one model
    gives no differences; three (short, dense, learned) give dense − short, learned − short, learned − dense."""
    names = list(rows)
    diffs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for k in keys:
                pairs = [(x.get(k), y.get(k)) for x, y in zip(rows[a], rows[b])]
                pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
                if pairs:
                    d = paired_difference_ci([x for x, _ in pairs], [y for _, y in pairs])
                    diffs.append({"a": a, "b": b, "category": k, **d})
    return diffs


def _categories(keys: list[str]) -> list[dict]:
    cats = [{"key": k, "label": CATEGORY_LABELS[k], "kind": "rate"} for k in SCENE_CATEGORIES if k in keys]
    cats.append({"key": "flicker", "label": "temporal flicker (VBench, 1 = steady)", "kind": "quality"})
    if "clip_score" in keys:
        cats.append({"key": "clip_score", "label": "CLIP score", "kind": "quality"})
    cats += [{"key": k, "label": DEFECT_LABELS[k], "kind": "defect", "lower_is_better": True}
             for k in VIDEO_QUALITY if k in keys]
    return cats + judge_categories(keys)


def _caption_field(model: str | Path) -> str | None:
    cfg = pipeline_config(model)
    return cfg.data.caption_field if cfg is not None else None


def _steps_note(names: list[str], models: list[str | Path]) -> list[str]:
    """How long each model trained (from its run's train_summary.json), when known."""
    parts = []
    for n, m in zip(names, models):
        summary = Path(m).parent / "train_summary.json"
        if summary.is_file():
            d = json.loads(summary.read_text())
            parts.append(f"{n} {d.get('steps', '?')} steps ({d['minutes']:.1f} min)"
                         if d.get("minutes") else f"{n} {d.get('steps', '?')} steps")
    return [f"Training: {', '.join(parts)}."] if parts else []


def _notes(fd: dict[str, float]) -> list[str]:
    notes = ["Scores are per prompt (the mean of its items), then averaged over prompts with a bootstrap 95% CI. "
             "**chance**: the same videos scored against other prompts' scenes; **ceiling**: the true scenes "
             "rendered at the models' size and fps and passed through the first model's VAE, read by the same "
             "detector — the best any model can score here."]
    if fd:
        notes.append("Fréchet distance of CLIP video features to the true scenes (lower is better): "
                     + ", ".join(f"{n} {v:.3f}" for n, v in fd.items()) + ".")
    return notes


def report_table(report: dict) -> str:
    """A short Markdown table of a report: category | model(s) | chance | ceiling (mean [95% CI])."""
    from t2v.compare.report import label

    def cell(st: dict | None) -> str:
        if not st or st.get("mean") is None:
            return "–"
        return f"{st['mean']:.2f} [{st['lo']:.2f}, {st['hi']:.2f}]"

    names = [m["name"] for m in report["models"]]
    refs = list((report.get("reference") or {}).keys())
    lines = ["| category | " + " | ".join(names + refs) + " |", "|---" * (1 + len(names) + len(refs)) + "|"]
    for c in report["categories"]:
        row = [cell(report["metrics"][n].get(c["key"])) for n in names]
        row += [cell(report["reference"][r].get(c["key"])) for r in refs]
        lines.append(f"| {label(c)} | " + " | ".join(row) + " |")
    return "\n".join(lines)
