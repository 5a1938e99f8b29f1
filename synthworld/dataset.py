"""Write a synthworld dataset: ``OUT/clips/*.mp4`` and ``OUT/manifest.jsonl`` with oracle captions.

Clip ``i`` of a dataset with seed ``S`` is the random scene with seed ``scene_seed(S, i)``, so a
dataset is reproducible, and re-running the same command resumes: clips whose id is already in
the manifest are skipped. A clip that fails becomes a ``status: error`` record and the run goes on.
"""

from __future__ import annotations

import logging
import os
import random
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from clipio.images import contact_sheet, save_png
from clipio.manifest import ManifestWriter, error_record, read_manifest, resolve_video, window_spans
from clipio.video import open_video, write_mp4
from synthworld import captions
from synthworld.generate import random_scene
from synthworld.render import render
from synthworld.simulate import sub_span
from synthworld.spec import COLOURS, DIRECTIONS, SHAPES

log = logging.getLogger(__name__)
ORACLE_NAME = "synthworld-oracle"
ORACLE_VERSION = "oracle-v1"


def scene_seed(dataset_seed: int, index: int) -> int:
    """The scene seed of clip ``index``: independent streams per (dataset seed, index)."""
    return int(np.random.SeedSequence([dataset_seed, index]).generate_state(1)[0])


def clip_id(index: int) -> str:
    return f"clip-{index:06d}"


@dataclass
class SynthSummary:
    out: Path
    manifest: Path
    written: int
    skipped: int
    errors: int


@dataclass(frozen=True)
class World:
    """How busy the random scenes are: at most ``max_objects`` shapes, ``max_events`` events each.

    ``moving_start``: keep only scenes in which every shape is visible from the start and its first
    event is a move by ``MOVING_START_BY`` seconds (the scene for a seed is the first of a fixed
    sequence of candidate seeds that qualifies, so it is still reproducible). Trained on the general
    world, the tiny CPU model never ties "to the left" to motion within its budget; on these clips it
    does (docs/does-it-learn.md, session 5).
    """

    max_objects: int = 3
    max_events: int = 3
    moving_start: bool = False
    # compositional generalisation: "colour shape direction" combinations (an object of that colour at the start
    # and that shape, moving that way at some point) that ``combos="seen"`` scenes never hold and ``"unseen"``
    # scenes always do (at least one object); recorded in every manifest record's meta.world
    holdout: tuple[str, ...] = ()
    combos: str = "seen"

    def __post_init__(self) -> None:
        if isinstance(self.holdout, str):
            raise ValueError(f"World.holdout {self.holdout!r}: a list of 'colour shape direction' strings, not one string")
        object.__setattr__(self, "holdout", tuple(self.holdout))  # a list when read back from JSON
        if self.combos not in ("seen", "unseen"):
            raise ValueError(f"World.combos {self.combos!r}: use 'seen' or 'unseen'")
        for c in self.holdout:
            parts = c.split()
            if len(parts) != 3 or parts[0] not in COLOURS or parts[1] not in SHAPES or parts[2] not in DIRECTIONS:
                raise ValueError(f"World.holdout {c!r}: expected 'colour shape direction', e.g. 'red circle left'")
        if self.combos == "unseen" and not self.holdout:
            raise ValueError("World.combos 'unseen' needs held-out combinations (World.holdout)")

    def scene(self, seed: int, duration: float):
        filtered = self.moving_start or self.holdout
        for k in range(1000 if filtered else 1):
            spec = random_scene(seed + 7919 * k, duration=duration, max_objects=self.max_objects,
                                max_events_per_object=self.max_events)
            if self.moving_start and not _moves_from_start(spec):
                continue
            if self.holdout and bool(set(combinations(spec)) & set(self.holdout)) != (self.combos == "unseen"):
                continue
            return spec
        raise RuntimeError(f"no scene of {self} in 1000 candidates of seed {seed}: the world's filters (moving_start, "
                           "combos) keep too few scenes; hold out more combinations or relax the filters")

    @classmethod
    def of_manifest(cls, manifest: str | Path) -> World:
        """The world a synthworld manifest was rendered from (recorded in each record's meta)."""
        for r in read_manifest(manifest):
            if r["status"] == "ok":
                return cls(**r.get("meta", {}).get("world", {}))
        raise ValueError(f"{manifest}: no ok record to read the synthworld settings from")


def combinations(spec) -> list[str]:
    """The scene's "colour shape direction" combinations as they are on screen: an object's colour and shape with
    the direction it moves in, for every colour it has while it moves that way (a colour change while moving, or
    before a later move, makes another combination)."""
    colour = {i: o.colour for i, o in enumerate(spec.objects)}
    moving: dict[int, str | None] = {}
    out = set()
    for e in sorted(spec.events, key=lambda e: e.t):
        if e.kind == "move":
            moving[e.obj] = e.direction
        elif e.kind in ("stop", "disappear"):
            moving[e.obj] = None
        elif e.kind == "colour":
            colour[e.obj] = e.colour
        if moving.get(e.obj):
            out.add(f"{colour[e.obj]} {spec.objects[e.obj].shape} {moving[e.obj]}")
    return sorted(out)


def holdout_combinations(num: int, seed: int = 0) -> tuple[str, ...]:
    """``num`` colour × shape × direction combinations drawn at random (sorted), each colour, shape and direction
    still seen in the others."""
    import itertools

    every = [" ".join(c) for c in itertools.product(COLOURS, SHAPES, DIRECTIONS)]
    if not 0 <= num <= len(every) // 4:
        raise ValueError(f"--holdout-combos {num}: hold out 0 to {len(every) // 4} of the {len(every)} colour × shape "
                         "× direction combinations (at most a quarter)")
    rng = random.Random(seed)
    while True:
        held = set(rng.sample(every, num))
        seen = [c.split() for c in every if c not in held]
        if all({p[k] for p in seen} == set(vocab) for k, vocab in enumerate((COLOURS, SHAPES, DIRECTIONS))):
            return tuple(sorted(held))


MOVING_START_BY = 0.5  # seconds


# The demo's world: one shape per clip that starts moving within 0.5 s (then nothing else happens).
# On the full world (up to 3 shapes × 3 events) the tiny model learns colour within the demo's
# budget but not where shapes are or which way they move; on this one it learns all three
# (docs/does-it-learn.md, "Direction is learned — from clips that move"). Any world is one `t2v synth` away.
DEMO_WORLD = World(max_objects=1, max_events=1, moving_start=True)


def _moves_from_start(spec) -> bool:
    """Every object visible at 0 s and its first event a move starting by ``MOVING_START_BY``."""
    for i, o in enumerate(spec.objects):
        first = next((e for e in spec.events if e.obj == i), None)
        if not o.visible or first is None or first.kind != "move" or first.t > MOVING_START_BY:
            return False
    return True


VARIED_PHRASINGS = 3  # wordings a "varied" caption draws from besides the oracle's own


def varied_caption(spec) -> str:
    """The dense caption as a captioner whose wording varies from clip to clip would write it: the oracle's own
    sentences for one clip in four, otherwise one of :data:`VARIED_PHRASINGS` paraphrases (other words and clause
    orders, every fact kept: :func:`synthworld.paraphrase.paraphrase`), chosen by the scene. A manifest's
    ``captions.varied``; train on it with ``data.caption_field=varied``."""
    from synthworld.paraphrase import paraphrase

    k = random.Random(f"{spec.seed}:varied").randrange(VARIED_PHRASINGS + 1)
    return captions.dense_caption(spec) if k == 0 else paraphrase(spec, 100 + k)


def clip_record(spec, index: int, video: str, size: int, fps: float, num_frames: int,
                world: World | None = None, window: float = 0.0) -> dict:
    """A manifest record for a rendered scene, with the oracle's captions and the spec in meta; with
    ``window`` > 0 also the true captions of each training window of that many seconds (``windows``)."""
    rec = {
        "id": clip_id(index),
        "video": video,
        "start": 0.0,
        "end": num_frames / fps,
        "fps": fps,
        "width": size,
        "height": size,
        "status": "ok",
        "error": None,
        "keyframes": captions.keyframe_captions(spec),
        "captions": {"short": captions.short_caption(spec), "dense": captions.dense_caption(spec),
                     "varied": varied_caption(spec)},
        "meta": {"captioner": ORACLE_NAME, "prompt_version": ORACLE_VERSION, "scene": spec.to_dict(),
                 "world": asdict(world or World())},
    }
    if window:
        spans = window_spans(rec["end"], window)
        if spans:
            rec["windows"] = [{"start": s, "end": e, "captions": {"short": captions.short_caption(sub),
                                                                  "dense": captions.dense_caption(sub)}}
                              for s, e in spans for sub in [sub_span(spec, s, e)]]
    return rec


def usable_cores() -> int:
    """Cores this process may run on (``taskset`` and cgroup affinity included, unlike ``os.cpu_count()``)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _render_clip(job: tuple) -> tuple[dict, bool]:
    """(record, ok) of clip ``index``: rendered and written, or an error record (one bad clip must not stop
    the run). Top-level so that worker processes can run it."""
    out, index, seed, size, fps, seconds, world, window = job
    cid = clip_id(index)
    video = f"clips/{cid}.mp4"
    try:
        spec = world.scene(scene_seed(seed, index), seconds)
        frames = render(spec, size=size, fps=fps)
        write_mp4(out / video, frames, fps)
        return clip_record(spec, index, video, size, fps, len(frames), world, window), True
    except Exception as e:
        log.warning("%s failed: %s", cid, e)
        return error_record(cid, video, e), False


def write_synth_dataset(
    out: str | Path,
    num_clips: int,
    seed: int = 0,
    size: int = 64,
    fps: float = 8.0,
    seconds: float = 4.0,
    progress: bool = True,
    world: World | None = None,
    workers: int = 1,
    window: float = 0.0,
) -> SynthSummary:
    """Render ``num_clips`` random scenes to ``out`` (resuming if ``out`` already holds some).

    ``workers`` > 1 renders in that many processes (0: one per core this process may use); records are written in clip order either way, and each
    clip depends only on (``seed``, its index), so the dataset is the same for any number of workers. ``window`` > 0
    adds the true captions of each ``window``-second training window of a longer clip (``windows``)."""
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    if not 32 <= size <= 256 or size % 2:
        raise ValueError(f"size must be an even number of pixels in 32..256, got {size}")
    if not 1 <= fps <= 60:
        raise ValueError(f"fps must be in 1..60, got {fps}")
    if not 1 <= seconds <= 60:
        raise ValueError(f"seconds must be in 1..60, got {seconds}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0: one per usable core), got {workers}")
    workers = workers or usable_cores()
    world = world or World()
    out = Path(out)
    manifest = out / "manifest.jsonl"
    written = errors = 0
    with ManifestWriter(manifest) as w:
        todo = [(out, i, seed, size, fps, seconds, world, window) for i in range(num_clips) if clip_id(i) not in w.done_ids]
        skipped = num_clips - len(todo)
        bar = tqdm(total=num_clips, initial=skipped, desc="rendering clips", unit="clip", disable=not progress)
        with ExitStack() as stack:
            results = map(_render_clip, todo)
            if workers > 1 and len(todo) > 1:  # spawned processes: safe beside torch's threads
                pool = stack.enter_context(ProcessPoolExecutor(min(workers, len(todo)), mp_context=get_context("spawn")))
                results = pool.map(_render_clip, todo, chunksize=max(1, min(16, len(todo) // (4 * workers))))
            for rec, ok in results:
                w.write(rec)  # in clip order: a killed run resumes after the last clip written
                written += ok
                errors += not ok
                bar.update(1)
        bar.close()
    return SynthSummary(out, manifest, written, skipped, errors)


def describe_dataset(manifest: str | Path, sheet_path: str | Path | None = None, max_rows: int = 8) -> str:
    """A short human summary of a manifest; optionally a contact sheet of its first clips."""
    recs = read_manifest(manifest)
    ok = [r for r in recs if r["status"] == "ok"]
    kinds = Counter(e["kind"] for r in ok for e in r.get("meta", {}).get("scene", {}).get("events", []))
    objs = Counter(len(r.get("meta", {}).get("scene", {}).get("objects", [])) for r in ok)
    dense_words = [len(r["captions"]["dense"].split()) for r in ok]
    short_words = [len(r["captions"]["short"].split()) for r in ok]
    lines = [
        f"manifest: {manifest}",
        f"clips: {len(ok)} ok, {len(recs) - len(ok)} error; {sum(r['end'] - r['start'] for r in ok):.0f} s of video",
        f"objects per clip: {dict(sorted(objs.items()))}; events: {dict(sorted(kinds.items()))}",
        f"caption length (words): short {np.mean(short_words):.1f}, dense {np.mean(dense_words):.1f}" if ok else "",
    ]
    if ok:
        lines += [f"example short: {ok[0]['captions']['short']}", f"example dense: {ok[0]['captions']['dense']}"]
    if sheet_path is not None and ok:
        rows, labels = [], []
        for r in ok[:max_rows]:
            with open_video(resolve_video(manifest, r)) as v:
                times = np.linspace(0, v.info.duration - 1 / v.info.fps, 6)
                rows.append(v.frames_at(times))
            labels.append(f"{r['id']}: {r['captions']['short']}")
        col_labels = [f"{t:.1f}s" for t in times]
        save_png(sheet_path, contact_sheet(rows, labels, col_labels, cell=72, label_width=220))
        lines.append(f"contact sheet: {sheet_path}")
    return "\n".join(line for line in lines if line)


# ----------------------------------------------------------------------------- held-out scenes
HELDOUT_DATASET_SEED = 1_000_003  # scene seeds derived from it never meet those of small dataset seeds


def heldout_specs(num: int, duration: float, exclude: set[int] | None = None, world: World | None = None,
                  dataset_seed: int = HELDOUT_DATASET_SEED):
    """``num`` scenes of ``world`` (default: the full synthworld) whose seeds are not in ``exclude``. A seed whose
    candidates hold no scene of a filtered world (rare scenes: ``combos="unseen"``) is passed over."""
    world = world or World()
    specs = []
    i = 0
    while len(specs) < num:
        s = scene_seed(dataset_seed, i)
        i += 1
        if i > 100 * num + 1000:
            raise RuntimeError(f"held-out scenes: found {len(specs)} of {num} scenes of {world} in {i - 1} seeds")
        try:
            spec = world.scene(s, duration)
        except RuntimeError:
            continue
        if exclude and spec.seed in exclude:  # spec.seed, not s: a moving-start world may draw a later candidate
            continue
        specs.append(spec)
    return specs


def training_world(train_manifest: str | Path | None) -> tuple[set[int] | None, World | None]:
    """``(scene seeds to exclude, world)`` of a synthworld training manifest: held-out scenes come from
    the same world and are none of its scenes. ``(None, None)`` without a manifest."""
    if not train_manifest:
        return None, None
    seeds = {r["meta"]["scene"]["seed"] for r in read_manifest(train_manifest)
             if r["status"] == "ok" and "scene" in r.get("meta", {})}
    return seeds, World.of_manifest(train_manifest)


def caption_for(spec, field: str, phrasing: int = 1) -> str:
    """A scene's prompt: the oracle's ``short`` or ``dense`` caption, or ``paraphrase`` (the dense caption's facts in
    other words and clause orders, wording number ``phrasing``: :func:`synthworld.paraphrase.paraphrase`), or
    ``paraphrase-unseen`` (the same in words no training caption uses)."""
    if field == "short":
        return captions.short_caption(spec)
    if field == "dense":
        return captions.dense_caption(spec)
    if field in ("paraphrase", "paraphrase-unseen"):
        from synthworld.paraphrase import TRAINING, UNSEEN, paraphrase

        return paraphrase(spec, phrasing, UNSEEN if field == "paraphrase-unseen" else TRAINING)
    raise ValueError(f"caption_field {field!r}: held-out synthworld prompts exist for 'short', 'dense', 'paraphrase' "
                     "and 'paraphrase-unseen'")
