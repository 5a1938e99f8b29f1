"""A captioner measured against synthworld ground truth: does its dense caption say what the clip shows?

Each held-out clip's dense caption is checked against the scene it was rendered from (``meta.scene``):

- ``events``: per true event, does a sentence within ``tol`` seconds name it
  (:func:`synthworld.score.caption_checks.caption_names_events`);
- one category per attribute of :data:`synthworld.score.caption_parse.ATTRIBUTES` (colour, shape, size,
  region, direction): per true object, is it read back right from the caption
  (:func:`synthworld.score.caption_parse.caption_attributes`).

A category's score is the mean over its items, with a 95% percentile bootstrap interval over clips (the unit
that was sampled). A clip whose record is an error, or that has no record at all, fails every item it has:
a captioner that crashes on the hard clips must not score better for skipping them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from captioner.config import CaptionerConfig
from captioner.diffsw import ClipTask
from captioner.run import run_captioner
from clipio.manifest import iter_latest
from synthworld.score.caption_checks import caption_names_events
from synthworld.score.caption_parse import ATTRIBUTES, caption_attributes, true_objects
from synthworld.spec import SceneSpec

log = logging.getLogger(__name__)
CATEGORIES = ("events", *ATTRIBUTES)
N_BOOT = 1000


def bootstrap_ratio(hits: np.ndarray, n: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """Mean over items ``sum(hits) / sum(n)`` with a 95% percentile bootstrap CI resampling clips.

    ``hits``, ``n``: ``(C,)`` items right and items in all of each clip. Resamples with no item are dropped.
    """
    total = int(n.sum())
    if total == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(n), size=(n_boot, len(n)))  # (n_boot, C) resampled clip sets
    num, den = hits[idx].sum(axis=1), n[idx].sum(axis=1)  # (n_boot,)
    means = num[den > 0] / den[den > 0]
    lo, hi = np.quantile(means, [0.025, 0.975])
    return {"mean": float(hits.sum() / total), "lo": float(lo), "hi": float(hi), "n": total}


def _failed_items(spec: SceneSpec) -> dict[str, list[bool]]:
    """Every item of a scene, failed (the verdicts of a clip whose caption is missing)."""
    objs = true_objects(spec)
    out = {a: [False] * len(objs) for a in ATTRIBUTES}
    out["direction"] = [False] * sum(o["direction"] is not None for o in objs)
    out["events"] = [False] * len(spec.events)
    return out


def score_manifest(path: str | Path, tol: float = 0.5, ids: Iterable[str] | None = None,
                   scenes: Mapping[str, dict] | None = None) -> dict[str, Any]:
    """Score a captioner output manifest against its records' ``meta.scene``.

    ``ids``: the held-out clips to score (None: every record); one with no record, or an error record, fails
    every item. Its items are counted from its ``meta.scene``, else from ``scenes[id]`` (the inputs' truth).
    Returns ``{"n_clips", "n_error", "n_missing", "categories": {category: {"mean", "lo", "hi", "n"}}}``.
    """
    # 1. The last record of every id, paired to the held-out ids
    records = {r["id"]: r for r in iter_latest(path)}
    ids = list(records) if ids is None else list(dict.fromkeys(ids))
    if not ids:
        raise ValueError(f"{path}: no clips to score (ids={ids!r} and the manifest is empty)")
    scenes = scenes or {}
    # 2. Per clip: one verdict per item of each category
    per_clip: list[dict[str, list[bool]]] = []
    n_error = n_missing = 0
    for clip_id in ids:
        rec = records.get(clip_id)
        scene = (rec or {}).get("meta", {}).get("scene") or scenes.get(clip_id)
        if scene is None:
            where = "has no record" if rec is None else "has no meta.scene"
            raise ValueError(f"{path}: clip {clip_id!r} {where} and scenes= does not give its truth; "
                             "pass the input clips' scenes (task.meta['scene'])")
        spec = SceneSpec.from_dict(scene)
        n_missing += rec is None
        n_error += rec is not None and rec["status"] == "error"
        dense = rec.get("captions", {}).get("dense") if rec and rec["status"] == "ok" else None
        if not dense:
            per_clip.append(_failed_items(spec))
            continue
        verdicts = caption_attributes(spec, dense)
        verdicts["events"] = [ok for _, ok in caption_names_events(spec, dense, tol)]
        per_clip.append(verdicts)
    # 3. Per category: mean over items, bootstrap over clips
    cats = {}
    for c in CATEGORIES:
        hits = np.array([sum(v[c]) for v in per_clip], dtype=np.float64)  # (C,)
        n = np.array([len(v[c]) for v in per_clip], dtype=np.float64)  # (C,)
        cats[c] = bootstrap_ratio(hits, n)
    return {"n_clips": len(ids), "n_error": n_error, "n_missing": n_missing, "categories": cats}


def evaluate(name: str, cfg: CaptionerConfig, tasks: list[ClipTask], out_dir: str | Path, backend=None,
             tol: float = 0.5) -> dict[str, Any]:
    """Caption ``tasks`` into ``out_dir/{name}.jsonl`` (resuming), time it, and score it against the truth.

    The timing of the first run that captions clips is kept in ``out_dir/{name}.timing.json`` and reused when
    the manifest is already complete, so a rerun reports the captioner's speed, not that of skipping.
    """
    out_dir = Path(out_dir)
    manifest, timing_path = out_dir / f"{name}.jsonl", out_dir / f"{name}.timing.json"
    summary = run_captioner(cfg, tasks, manifest, backend=backend, progress=True)
    captioned = summary.ok + summary.error
    if captioned == 0 and timing_path.exists():
        timing = json.loads(timing_path.read_text())
    elif captioned == 0:
        log.warning("%s: every clip was already in %s and %s is missing: clips/s unknown", name, manifest,
                    timing_path)
        timing = {"seconds": None, "clips": 0, "clips_per_s": None}
    else:
        if summary.skipped:
            log.warning("%s: resumed run; the timing covers the %d clips captioned now, not the %d skipped",
                        name, captioned, summary.skipped)
        timing = {"seconds": summary.seconds, "clips": captioned, "clips_per_s": summary.clips_per_s}
        timing_path.write_text(json.dumps(timing, indent=2) + "\n")
    scenes = {t.id: t.meta["scene"] for t in tasks if "scene" in t.meta}
    scores = score_manifest(manifest, tol, ids=[t.id for t in tasks], scenes=scenes)
    return {"name": name, "mode": cfg.run.mode, "clips_per_s": timing["clips_per_s"],
            "seconds": timing["seconds"], "scores": scores}


def evaluate_recaption(name: str, cfg: CaptionerConfig, oracle_manifest: str | Path, out_dir: str | Path,
                       ids: Iterable[str] | None = None, backend=None, tol: float = 0.5) -> dict[str, Any]:
    """Re-caption mode on the records' short captions (``oracle_manifest``: the oracle's captions of the
    held-out clips), each dense answer scored against the clip's truth as a captioned clip would be. What a
    short caption does not say (start region, direction, timing) can only be guessed; colour, shape and size
    must survive. Writes ``out_dir/{name}.jsonl`` (the records with the re-captioned dense caption) and its
    timing; a rerun that finds every record there re-scores them and reports the first run's clips/s."""
    from captioner.config import build_backend
    from captioner.modes import recaption
    from captioner.prompting import PromptSet

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = [r for r in iter_latest(oracle_manifest) if r["status"] == "ok" and r["captions"].get("short")]
    if ids is not None:
        keep = set(ids)
        records = [r for r in records if r["id"] in keep]
    if not records:
        raise ValueError(f"{oracle_manifest}: no ok record with a short caption to re-caption")
    manifest, timing_path = out_dir / f"{name}.jsonl", out_dir / f"{name}.timing.json"
    done = {r["id"] for r in iter_latest(manifest)} if manifest.is_file() else set()
    if timing_path.is_file() and done >= {r["id"] for r in records}:
        timing = json.loads(timing_path.read_text())
    else:
        backend = backend or build_backend(cfg.backend)
        t0 = time.perf_counter()
        dense = recaption([r["captions"]["short"] for r in records], backend,
                          duration=float(records[0].get("end") or 4.0) - float(records[0].get("start") or 0.0),
                          prompts=PromptSet(cfg.run.prompts))
        seconds = time.perf_counter() - t0
        with open(manifest, "w") as f:
            for r, d in zip(records, dense):
                f.write(json.dumps({**r, "keyframes": [], "captions": {"short": r["captions"]["short"], "dense": d}})
                        + "\n")
        timing = {"seconds": round(seconds, 2), "clips": len(records), "clips_per_s": len(records) / seconds}
        timing_path.write_text(json.dumps(timing, indent=2) + "\n")
    scores = score_manifest(manifest, tol, ids=[r["id"] for r in records])
    return {"name": name, "mode": "recaption", "clips_per_s": timing["clips_per_s"], "seconds": timing["seconds"],
            "scores": scores}


def evaluate_first_keyframe(name: str, diffsw_manifest: str | Path, out_dir: str | Path,
                            ids: Iterable[str] | None = None, scenes: Mapping[str, dict] | None = None,
                            tol: float = 0.5) -> dict[str, Any]:
    """A DiffSW run read at its first step: each record's first key-frame caption (the detail request, what the
    clip starts as) scored as if it were the dense caption, so a failure of the later steps (the differential
    captions, the clip summary) is told apart from a failure to see the first frame. Only the attributes a
    first frame shows are scored (colour, shape, size, region); events and direction are ``n`` 0. Writes
    ``out_dir/{name}.jsonl``; a record that is an error or has no key-frame caption fails its items."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / f"{name}.jsonl"
    with open(manifest, "w") as f:
        for r in iter_latest(diffsw_manifest):
            first = (r.get("keyframes") or [{}])[0].get("caption")
            ok = r["status"] == "ok" and bool(first)
            f.write(json.dumps({**r, "status": "ok" if ok else "error", "keyframes": [],
                                "captions": {"dense": first} if ok else {}}) + "\n")
    scores = score_manifest(manifest, tol, ids=ids, scenes=scenes)
    for c in ("events", "direction"):
        scores["categories"][c] = {"mean": None, "lo": None, "hi": None, "n": 0}
    return {"name": name, "mode": "diffsw-first-keyframe", "clips_per_s": None, "seconds": None, "scores": scores}


def chance() -> dict[str, float | None]:
    """A uniform guess per attribute (a caption of the right form with each attribute drawn at random);
    events have none (a guess must also hit the second)."""
    from synthworld import spec

    options = {"colour": spec.COLOURS, "shape": spec.SHAPES, "size": spec.SIZES, "region": spec.REGIONS,
               "direction": spec.DIRECTIONS}
    return {"events": None, **{a: 1 / len(options[a]) for a in ATTRIBUTES}}


def _cell(s: dict[str, Any]) -> str:
    return "–" if s["mean"] is None else f"{s['mean']:.2f} [{s['lo']:.2f}, {s['hi']:.2f}]"


def write_report(results: list[dict[str, Any]], out_dir: str | Path) -> Path:
    """``captioner_eval.{json,md,png}`` in ``out_dir``: one column (md) / bar (png) per captioner; the md path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not results:
        raise ValueError("write_report: results is empty; pass the dicts evaluate() returns")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # 1. JSON: everything
    (out_dir / "captioner_eval.json").write_text(json.dumps(results, indent=2) + "\n")
    # 2. Markdown: rows = categories, columns = captioners
    names = [r["name"] for r in results]
    guess = chance()
    lines = ["| category | " + " | ".join(names) + " | chance |", "|---" * (len(names) + 2) + "|"]
    for c in CATEGORIES:
        lines.append(f"| {c} | " + " | ".join(_cell(r["scores"]["categories"][c]) for r in results)
                     + f" | {'–' if guess[c] is None else f'{guess[c]:.2f}'} |")
    speed = [("–" if r["clips_per_s"] is None else f"{r['clips_per_s']:.2f}") for r in results]
    lines.append("| clips/s | " + " | ".join(speed) + " |")
    lines.append("| clips (errors) | " + " | ".join(
        f"{r['scores']['n_clips']} ({r['scores']['n_error'] + r['scores']['n_missing']})" for r in results) + " |")
    md = out_dir / "captioner_eval.md"
    md.write_text("Mean over items, 95% bootstrap CI over clips; error and missing clips fail every item.\n\n"
                  + "\n".join(lines) + "\n")
    # 3. PNG: one group per category, one bar per captioner, CI as error bars
    x = np.arange(len(CATEGORIES))
    width = 0.8 / len(results)
    fig = Figure(figsize=(1.2 * len(CATEGORIES) + 4, 3.5), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)  # Agg attached to this figure: no global backend switched, nothing to close
    ax = fig.add_subplot()
    for k, r in enumerate(results):
        cats = [r["scores"]["categories"][c] for c in CATEGORIES]
        mean = np.array([np.nan if s["mean"] is None else s["mean"] for s in cats])
        err = np.array([[0, 0] if s["mean"] is None else [s["mean"] - s["lo"], s["hi"] - s["mean"]] for s in cats]).T
        ax.bar(x + (k - (len(results) - 1) / 2) * width, mean, width, yerr=err, capsize=2, label=r["name"])
    for k, c in enumerate(CATEGORIES):  # chance: a dashed line across each group
        if guess[c] is not None:
            ax.hlines(guess[c], k - 0.45, k + 0.45, colors="black", linestyles="dashed", linewidth=1,
                      label="chance" if k == 1 else None)
    ax.set_xticks(x, CATEGORIES)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction right")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the bars, not over them
    fig.savefig(out_dir / "captioner_eval.png")
    return md
