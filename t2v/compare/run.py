"""``t2v compare``: the same prompts and seeds through every model, scored per category, into a report.

Prompts come from a JSONL file (``{"prompt": ..., "scene": {...synthworld spec...}}`` per line; the
scene is optional) or a plain text file (one prompt per line). ``t2v prompts`` writes held-out
synthworld prompts with their scenes.

Per prompt ``k`` every model generates with seed ``seed + k``; the synthworld detector reads each
video back and :func:`synthworld.score.scene_following` scores it (when the prompt has a scene);
every video also gets VBench's temporal flicker, and with ``--clip DIR`` a CLIP score and a Fréchet
distance of CLIP video features to the reference videos (the true scenes, or ``--reference``
clips). Categories are averaged per prompt, then bootstrapped over prompts (95% CIs), and each pair
of models gets a paired bootstrap CI of the difference. Chance = the same videos scored against ten
other prompts' scenes each (:func:`t2v.compare.metrics.chance_rates`); ceiling = the true scenes
through the first model's VAE.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from clipio.video import write_gif
from synthworld.detect import detect_video
from synthworld.score import SCENE_CATEGORIES, scene_following
from synthworld.spec import SceneSpec
from t2v.compare.metrics import (
    bootstrap_ci,
    chance_rates,
    frechet_distance,
    paired_difference_ci,
    per_prompt_rates,
    temporal_flicker,
)

log = logging.getLogger(__name__)
CATEGORY_LABELS = {"colour": "object colour", "shape": "object shape", "binding": "attribute binding",
                   "position": "start position (3×3 region)",
                   "direction": "motion direction", "events": "temporal events (right change, right second)",
                   "count": "object count"}


@dataclass
class PromptItem:
    prompt: str
    scene: SceneSpec | None = None


def load_prompts(path: str | Path) -> list[PromptItem]:
    """A JSONL file of ``{"prompt", "scene"?}`` or a text file with one prompt per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--prompts {path}: no such file")
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                d = json.loads(line)
                scene = SceneSpec.from_dict(d["scene"]) if d.get("scene") else None
                items.append(PromptItem(str(d["prompt"]), scene))
            except (json.JSONDecodeError, KeyError, ValueError, TypeError) as e:
                raise ValueError(f"--prompts {path}:{n}: expected {{\"prompt\": ..., \"scene\": ...}}: {e}") from None
        else:
            items.append(PromptItem(line.strip()))
    if not items:
        raise ValueError(f"--prompts {path}: no prompts in it")
    return items


def write_heldout_prompts(out: str | Path, num: int, seconds: float, field: str = "dense",
                          train_manifest: str | Path | None = None) -> Path:
    """``num`` held-out synthworld scenes (never in ``train_manifest``; its world) with their captions."""
    from synthworld.dataset import caption_for, heldout_specs, training_world

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        for spec in heldout_specs(num, seconds, *training_world(train_manifest)):
            f.write(json.dumps({"prompt": caption_for(spec, field), "scene": spec.to_dict()}) + "\n")
    return out


def _stats(per_prompt: list[dict[str, float | None]], keys) -> dict[str, dict]:
    return {k: bootstrap_ci([p[k] for p in per_prompt if p.get(k) is not None]) for k in keys}


def compare_models(models: list[str | Path], prompts: str | Path, out: str | Path, names: list[str] | None = None,
                   steps: int = 20, guidance: float = 5.0, seed: int = 0, clip: str | None = None,
                   gallery: int = 12, command: str = "") -> dict:
    """Generate, score and report. Returns the report dict (also written to ``out/report.json``)."""
    from t2v.compare.report import write_report
    from t2v.evaluate import true_video
    from t2v.generate import load_pipeline, training_fps

    # 1. inputs
    out = Path(out)
    items = load_prompts(prompts)
    names = names or [Path(m).parent.name if Path(m).name == "pipeline" else Path(m).name for m in models]
    if len(names) != len(models) or len(set(names)) != len(names):
        raise ValueError(f"--names {names}: need one distinct name per model ({len(models)} models)")
    (out / "gallery").mkdir(parents=True, exist_ok=True)
    scorer = None
    if clip:
        from t2v.compare.metrics import ClipScorer

        scorer = ClipScorer(clip)
    scenes = [it.scene for it in items]
    has_scenes = any(s is not None for s in scenes)

    # 2. every model, the same prompts and seeds
    per_prompt: dict[str, list[dict]] = {}
    dets_of: dict[str, list] = {}  # detections, read once: scored against the prompt's scene and for chance
    videos_of: dict[str, list[np.ndarray]] = {}
    settings: dict = {}
    first_pipe = None
    for name, model in zip(names, models):
        pipe = load_pipeline(model)
        fps = training_fps(model)
        first_pipe = first_pipe or (pipe, fps)
        frames_n = pipe.transformer.config.sample_frames
        settings = {"prompts": len(items), "seeds": f"{seed} + prompt index", "steps": steps,
                    "guidance": guidance, "frames": frames_n, "fps": fps}
        vids = []
        for k, it in enumerate(tqdm(items, desc=f"generating ({name})", unit="video")):
            v = pipe(it.prompt, num_frames=frames_n, num_inference_steps=steps, guidance_scale=guidance,
                     generator=torch.Generator().manual_seed(seed + k), progress=False).frames[0]
            vids.append(v)
            if k < gallery:
                write_gif(out / "gallery" / f"{k:03d}-{name}.gif", v, fps)
        videos_of[name] = vids
        dets_of[name] = [detect_video(v, fps) if it.scene is not None else None for it, v in zip(items, vids)]
        rows = []
        for it, v, det in zip(items, vids, dets_of[name]):
            r = per_prompt_rates(scene_following(it.scene, det)) if det is not None else {}
            r["flicker"] = temporal_flicker(v)
            if scorer:
                r["clip_score"] = scorer.score(v, it.prompt)
            rows.append(r)
        per_prompt[name] = rows
        del pipe

    # 3. references: chance (deranged scenes) and ceiling (true scenes through the VAE)
    keys = (list(SCENE_CATEGORIES) if has_scenes else []) + ["flicker"] + (["clip_score"] if scorer else [])
    metrics = {n: _stats(per_prompt[n], keys) for n in names}
    reference = {}
    fd = {}
    if has_scenes:
        chance_rows = [row for name in names for row in chance_rates(scenes, dets_of[name], scene_following)]
        pipe, fps = first_pipe
        size = videos_of[names[0]][0].shape[1]
        true = [true_video(pipe, s, fps, size) if s is not None else None for s in scenes]
        ceil_rows = []
        for it, s, v in zip(items, scenes, true):
            if s is not None:
                r = per_prompt_rates(scene_following(s, detect_video(v, fps)))
                r["flicker"] = temporal_flicker(v)
                if scorer:
                    r["clip_score"] = scorer.score(v, it.prompt)
                ceil_rows.append(r)
        reference = {"chance": _stats(chance_rows, SCENE_CATEGORIES), "ceiling": _stats(ceil_rows, keys)}
        if scorer:  # Fréchet distance of CLIP video features: generated vs the true scenes
            ref = np.stack([scorer.video_features(v) for v in true if v is not None])
            for name in names:
                fd[name] = frechet_distance(np.stack([scorer.video_features(v) for v in videos_of[name]]), ref)

    # 4. paired differences (every later model vs the first)
    diffs = []
    for b in names[1:]:
        for k in keys:
            pairs = [(x.get(k), y.get(k)) for x, y in zip(per_prompt[names[0]], per_prompt[b])]
            pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
            if pairs:
                d = paired_difference_ci([x for x, _ in pairs], [y for _, y in pairs])
                diffs.append({"a": names[0], "b": b, "category": k, **d})

    # 5. the report
    cats = [{"key": k, "label": CATEGORY_LABELS[k], "kind": "rate"} for k in SCENE_CATEGORIES if k in keys]
    cats.append({"key": "flicker", "label": "temporal flicker (VBench, 1 = steady)", "kind": "quality"})
    if scorer:
        cats.append({"key": "clip_score", "label": "CLIP score", "kind": "quality"})
    report = {
        "title": f"Comparison: {' vs '.join(names)}",
        "created": time.strftime("%Y-%m-%d %H:%M"),
        "command": command or f"t2v compare --models {' '.join(map(str, models))} --prompts {prompts} --out {out}",
        "models": [{"name": n, "path": str(m), "caption_field": _caption_field(m)} for n, m in zip(names, models)],
        "settings": settings,
        "categories": cats,
        "metrics": metrics,
        "reference": reference,
        "differences": diffs,
        "notes": _notes(fd) + _steps_note(names, models),
        "gallery": [{"prompt": it.prompt, "videos": {n: f"gallery/{k:03d}-{n}.gif" for n in names},
                     "scores": {n: {c: per_prompt[n][k].get(c) for c in SCENE_CATEGORIES
                                    if per_prompt[n][k].get(c) is not None} for n in names}}
                    for k, it in enumerate(items[:gallery])],
    }
    if fd:
        report["frechet_clip_distance"] = fd
    write_report(report, out)
    return report


def _caption_field(model: str | Path) -> str | None:
    import yaml

    cfg = Path(model) / "t2v_config.yaml"
    if cfg.is_file():
        return yaml.safe_load(cfg.read_text()).get("data", {}).get("caption_field")
    return None


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
        lines.append(f"| {c['label']} | " + " | ".join(row) + " |")
    return "\n".join(lines)
