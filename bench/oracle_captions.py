"""How well the oracle captioner's dense captions name the events of synthworld clips, and how fast it runs.

Renders synthworld sets, captions them with ``captioner run``'s path (the oracle preset: DiffSW with
key-frames every 0.25 s; fast mode: one grid of key-frames every 0.5 s), and checks every true event
with ``synthworld.score.caption_names_events`` (a sentence within one key-frame interval names the
object, the kind of change and its direction or new colour).

    python bench/oracle_captions.py [--clips-full 300 --clips-demo 100 --seed 0] --out runs/bench/oracle_captions.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from captioner.config import load_captioner_config
from captioner.run import run_captioner, tasks_from_manifest
from clipio.manifest import read_manifest
from synthworld.dataset import DEMO_WORLD, World, write_synth_dataset
from synthworld.score import caption_names_events
from synthworld.spec import SceneSpec

ROWS = [  # (name, world, frame size, captioner overrides)
    ("full world", World(), 64, []),
    ("demo world", DEMO_WORLD, 48, []),
    ("full world", World(), 64, ["run.mode=fast", "keyframes.interval=0.5"]),
]


def measure(tmp: Path, name: str, world: World, size: int, overrides: list[str], clips: int, seed: int) -> dict:
    data = tmp / f"{name.replace(' ', '-')}-{size}"
    synth = write_synth_dataset(data, clips, seed=seed, size=size, fps=8.0, seconds=4.0, world=world, progress=False)
    cfg = load_captioner_config("oracle", overrides)
    out = data / f"captions-{cfg.run.mode}.jsonl"
    t0 = time.perf_counter()
    summary = run_captioner(cfg, tasks_from_manifest(synth.manifest, out), out, progress=False)
    seconds = time.perf_counter() - t0
    named = total = 0
    for r in read_manifest(out):
        if r["status"] == "ok":
            hits = caption_names_events(SceneSpec.from_dict(r["meta"]["scene"]), r["captions"]["dense"],
                                        tol=cfg.keyframes.interval)
            total += len(hits)
            named += sum(ok for _, ok in hits)
    return {"world": name, "mode": cfg.run.mode, "interval": cfg.keyframes.interval, "size": size, "clips": clips,
            "ok": summary.ok, "errors": summary.error, "events_named": named, "events": total,
            "clips_per_s": round(clips / seconds, 2)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips-full", type=int, default=300)
    ap.add_argument("--clips-demo", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0, help="dataset seed of every set")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/oracle_captions.json"))
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, world, size, overrides in ROWS:
            clips = a.clips_demo if world == DEMO_WORLD else a.clips_full
            rows.append(measure(Path(tmp), name, world, size, overrides, clips, a.seed))
    print("| world | mode (key-frame interval) | clips | events named | clips/s |\n|---|---|---|---|---|")
    for r in rows:
        pct = 100 * r["events_named"] / max(r["events"], 1)
        print(f"| {r['world']} ({r['size']} px) | {r['mode']} ({r['interval']:g} s) | {r['clips']} | "
              f"{r['events_named']} / {r['events']} ({pct:.1f}%) | {r['clips_per_s']} |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"seed": a.seed, "rows": rows}
    a.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
