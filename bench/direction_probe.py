"""Does a trained pipeline move an object the way its prompt says? A direct probe of motion grounding.

The detector-based ``direction`` score of ``t2v compare`` is a hit rate over a few dozen moves, so
it needs many scenes to separate a model from chance. This probe asks the question with paired
prompts instead: one template, rendered with "to the left" / "to the right" / "upwards" /
"downwards", the same noise seeds for every phrase. Each video's object is tracked by its
per-frame centroid (as in ``position_probe.py``) and its displacement from the first to the last
frame is read; then

    dx = Δx(moving right) − Δx(moving left),   dy = Δy(moving down) − Δy(moving up)

(in frame widths, paired per seed, bootstrap 95% intervals). A model that ignores the prompt's
motion scores 0 on both (same seed, same video); a model that follows it scores > 0.

Two prompt sets are read, because synthworld's dense captions say a move twice — as a direction
word and as where the object is at the end ("… is still moving to the left on the left side"):

- ``words``: the direction words only (the object starts in the centre; no end position);
- ``caption``: the dense-caption form, with the end region the move leads to from the centre.

A model that has learned the direction words moves the object in both; one that has learned only
where the caption puts the object at the end moves it in ``caption`` alone.

Both start the object in the centre, which a training world may hardly have: in
``World(1, 1, moving_start=True)`` (the demo's) 1% of clips start there, and an object that starts
on an edge nearly always moves inwards. So a third set asks the question inside that world:

- ``scene``: the oracle's own dense captions of pairs of scenes — a large red square in one corner,
  moving slowly along one of the two inward ways (e.g. top-left: right or down), same seed — that
  differ only in that way. Per corner and noise seed, ``along = Δ(named way) − Δ(other way)`` on
  the named way's axis and sign, averaged over the two ways: 0 for a model that draws the same video
  for both, and the distance a slow move covers between the first and last frame (0.42 frame widths
  for 8 frames at 2 fps) for one that follows.

    python bench/direction_probe.py --model runs/demo/t2v/pipeline --seeds 12 --out runs/bench/direction_probe.json

Writes the JSON and a PNG (rows = prompt × seed, columns = frames) beside it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from synthworld.spec import SPEEDS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from position_probe import _shift, centroid, fmt_ci, probe_args, render_prompts  # noqa: E402

PHRASES = {"left": "to the left", "right": "to the right", "up": "upwards", "down": "downwards"}
END_REGION = {"left": "on the left side", "right": "on the right side", "up": "at the top", "down": "at the bottom"}
TEMPLATE = ("The video opens on a plain black background with a big red square in the centre. Right from the "
            "start, the red square begins to move {direction} at a quick pace. In the final frame, the red "
            "square is still moving {direction}.")
CAPTION_TEMPLATE = TEMPLATE[:-1] + " {end}."


CORNERS = {"top-left": ("right", "down"), "top-right": ("left", "down"),
           "bottom-left": ("right", "up"), "bottom-right": ("left", "up")}  # corner: its two inward ways
CORNER_SPEED = SPEEDS["slowly"]  # a quick move from a corner would leave the frame within 4 s


def corner_scenes(duration: float = 4.0) -> dict[str, str]:
    """``{"<corner>:<way>": dense caption}``: a large red square in each corner moving slowly each inward way."""
    from synthworld.captions import dense_caption
    from synthworld.spec import SceneSpec

    out = {}
    for corner, ways in CORNERS.items():
        for way in ways:
            spec = SceneSpec.from_dict({
                "background": "black", "duration": duration, "seed": 7,  # same seed: same phrasing per pair
                "objects": [{"shape": "square", "colour": "red", "size": "large", "region": corner}],
                "events": [{"t": 0.0, "obj": 0, "kind": "move", "direction": way, "speed": CORNER_SPEED}]})
            out[f"{corner}:{way}"] = dense_caption(spec)
    return out


def along(disp: dict[str, np.ndarray]) -> np.ndarray:
    """(corners × seeds,) separation along the named way: Δ(way) − Δ(other way) on the way's axis and sign,
    averaged over a corner's two ways. ``disp["<corner>:<way>"]`` is (seeds, 2) of (Δx, Δy)."""
    from synthworld.spec import DIRECTIONS

    vals = []
    for corner, ways in CORNERS.items():
        per_way = []
        for way, other in (ways, ways[::-1]):
            ax = 0 if DIRECTIONS[way][0] else 1
            sign = DIRECTIONS[way][ax]
            per_way.append(sign * (disp[f"{corner}:{way}"][:, ax] - disp[f"{corner}:{other}"][:, ax]))
        vals.append(np.mean(per_way, axis=0))
    return np.concatenate(vals)


def prompt_sets(template: str = TEMPLATE) -> dict[str, dict[str, str]]:
    """``{"words": {key: prompt}, "caption": {key: prompt}}`` for the four directions."""
    return {"words": {k: template.format(direction=p) for k, p in PHRASES.items()},
            "caption": {k: CAPTION_TEMPLATE.format(direction=p, end=END_REGION[k]) for k, p in PHRASES.items()}}


def displacement(frames: np.ndarray) -> tuple[float, float]:
    """(Δx, Δy) of the object's centroid from the first to the last frame where one is seen (frame fractions)."""
    cs = np.array([centroid(f) for f in frames])  # (F, 2), NaN where nothing is drawn
    seen = np.flatnonzero(~np.isnan(cs[:, 0]))
    if len(seen) < 2:
        return float("nan"), float("nan")
    d = cs[seen[-1]] - cs[seen[0]]
    return float(d[0]), float(d[1])


def main() -> None:
    ap = probe_args(__doc__, TEMPLATE, "direction", 16, "runs/bench/direction_probe.json")
    ap.add_argument("--sheet-seeds", type=int, default=2, help="seeds per phrase shown in the PNG")
    args = ap.parse_args()

    from clipio.images import contact_sheet, save_png
    from t2v.compare.metrics import bootstrap_ci
    from t2v.generate import load_pipeline, training_fps

    pipe = load_pipeline(args.model)
    res = {"model": args.model, "seeds": args.seeds, "steps": args.steps, "guidance": args.guidance}
    rows, labels = [], []
    for name, prompts in prompt_sets(args.template).items():
        disp = {k: np.full((args.seeds, 2), np.nan) for k in PHRASES}
        for k, s, fr in render_prompts(pipe, prompts, args.seeds, args.steps, args.guidance):
            disp[k][s] = displacement(fr)
            if s < args.sheet_seeds:
                rows.append(fr)
                labels.append(f"{name}: {PHRASES[k]} (seed {s})")
        res[name] = {
            "prompts": prompts,
            "dx_right_minus_left": _shift(disp["left"][:, 0], disp["right"][:, 0]),
            "dy_down_minus_up": _shift(disp["up"][:, 1], disp["down"][:, 1]),
            "mean_displacement": {k: [float(np.nanmean(v[:, 0])), float(np.nanmean(v[:, 1]))] for k, v in disp.items()},
        }
    # the same question inside the training world: corner starts, the two inward ways (real dense captions)
    frames, fps = pipe.transformer.config.sample_frames, training_fps(args.model)
    prompts = corner_scenes(frames / fps)
    disp = {k: np.full((args.seeds, 2), np.nan) for k in prompts}
    for k, s, fr in render_prompts(pipe, prompts, args.seeds, args.steps, args.guidance):
        disp[k][s] = displacement(fr)
        if s < args.sheet_seeds and k.startswith("top-left"):
            rows.append(fr)
            labels.append(f"scene: {k.replace(':', ', moving ')} (seed {s})")
    sep = along(disp)
    res["scene"] = {"prompts": prompts, "along_named_way": bootstrap_ci(sep[~np.isnan(sep)]),
                    "followed": CORNER_SPEED * (frames - 1) / fps,
                    "mean_displacement": {k: [float(np.nanmean(v[:, 0])), float(np.nanmean(v[:, 1]))]
                                          for k, v in disp.items()}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    save_png(out.with_suffix(".png"), contact_sheet(rows, labels, cell=64, label_width=240))

    for name in ("words", "caption"):
        r = res[name]
        print(f"{name:8s} dx(right) - dx(left) = {fmt_ci(r['dx_right_minus_left'])}; "
              f"dy(down) - dy(up) = {fmt_ci(r['dy_down_minus_up'])}  (0 = motion ignored)")
    print(f"scene    along the named way (corner starts, dense captions) = "
          f"{fmt_ci(res['scene']['along_named_way'])}  (0 = motion ignored, +{res['scene']['followed']:.2f} = followed)")
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
