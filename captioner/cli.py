"""``captioner`` command line.

    captioner run        (--videos DIR|LIST | --manifest IN.jsonl) --out OUT.jsonl --config YAML
                         [--mode diffsw|fast --engine local|ray --num-shards N --shard-id K --retry-errors] [key=value ...]
    captioner split      DIR|LIST --out SHOTS.jsonl [--min-duration 1 --max-duration 60 --detector content|adaptive]
    captioner keyframes  VIDEO --out DIR [--interval 2 --threshold 0.93 --embedder pixels|clip --clip-path DIR --max-side PX]
    captioner filter     IN.jsonl --out OUT.jsonl [--threshold 0.95 --caption-field short]
    captioner import-sharegpt4video IN.jsonl --out OUT.jsonl [--video-root DIR]
    captioner export-sharegpt4video MANIFEST --out OUT.jsonl
    captioner recaption  --config YAML "short prompt" ...
    captioner clip-summary MANIFEST --id ID --start S --end S --config YAML
    captioner tiny-vlm   --out DIR      (a tiny random LLaVA folder for captioner/presets/tiny-local.yaml)
    captioner train      [--quiet --no-resume] CONFIG [key=value ...]   (fine-tune a VLM into a captioner on a manifest's annotations;
                         accelerate launch ... -m captioner.cli train CONFIG for DDP/FSDP; resumes its output folder)
    captioner mini-vlm   --annotations MANIFEST --out DIR   (the untrained miniature ShareCaptioner, its tokenizer
                         fitted to the annotations: a model.path for `captioner train mini`)
    captioner miniature  --out DIR [--clips N --heldout N --family F]   (the miniature ShareCaptioner: annotate, build, train,
                         measure against ground truth; what `make captioner` runs)
    captioner probe      VIDEO ...      (metadata, and whether it decodes)
    captioner serve      --config YAML [--port P --host H]   (a web demo: drop a video, read its dense caption; the app extra)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clipio.cli import add_verbose, main_of


def _probe(a: argparse.Namespace) -> int:
    from clipio.video import VideoError, open_video

    failed = 0
    for path in a.videos:
        try:
            with open_video(path, backend=a.backend, timeout=a.timeout) as v:
                info = v.info
                if a.decode:
                    for _ in v.iter_frames(chunk=32):
                        pass
            rec = {"path": str(path), "status": "ok", "fps": info.fps, "num_frames": info.num_frames,
                   "duration": round(info.duration, 3), "width": info.width, "height": info.height,
                   "backend": info.backend}
        except VideoError as e:
            failed += 1
            rec = {"path": str(path), "status": "error", "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(rec))
    return 1 if failed else 0


def _filter(a: argparse.Namespace) -> int:
    from captioner.filter import TextEmbedder, filter_manifest

    embedder = TextEmbedder(a.embedder, device=a.device, batch_size=a.batch_size)
    summary = filter_manifest(a.manifest, a.out, threshold=a.threshold, field=a.caption_field, embedder=embedder,
                              progress=True)
    print(json.dumps(summary))
    return 0


def _import_sharegpt4video(a: argparse.Namespace) -> int:
    from captioner.sharegpt4video import import_sharegpt4video

    print(json.dumps(import_sharegpt4video(a.jsonl, a.out, video_root=a.video_root)))
    return 0


def _export_sharegpt4video(a: argparse.Namespace) -> int:
    from captioner.sharegpt4video import export_sharegpt4video

    print(json.dumps(export_sharegpt4video(a.manifest, a.out)))
    return 0


def _keyframes(a: argparse.Namespace) -> int:
    from captioner.embed import build_embedder
    from captioner.keyframes import extract_keyframes, save_keyframes

    embedder = build_embedder(a.embedder, path=a.clip_path, device=a.device)
    keyframes = extract_keyframes(a.video, interval=a.interval, threshold=a.threshold, embedder=embedder,
                                  max_duration=a.max_duration, backend=a.backend, max_side=a.max_side)
    print(json.dumps(save_keyframes(keyframes, a.out)))
    return 0


def _run(a: argparse.Namespace) -> int:
    from captioner.config import load_captioner_config
    from captioner.run import iter_tasks_from_manifest, run_captioner, shard, tasks_from_videos

    overrides = list(a.overrides) + ([f"run.mode={a.mode}"] if a.mode else [])
    cfg = load_captioner_config(a.config, overrides)
    tasks = tasks_from_videos(a.videos, a.out) if a.videos else iter_tasks_from_manifest(a.manifest, a.out)
    tasks = shard(tasks, a.num_shards, a.shard_id)
    s = run_captioner(cfg, tasks, a.out, engine=a.engine, progress=not a.quiet, retry_errors=a.retry_errors)
    print(f"captioner run: {s}")
    return 0


def _split(a: argparse.Namespace) -> int:
    from captioner.run import tasks_from_videos
    from captioner.split import SplitConfig, split_videos

    cfg = SplitConfig(detector=a.detector, threshold=a.threshold, min_duration=a.min_duration,
                      max_duration=a.max_duration, width=a.width, backend=a.backend)
    summary = split_videos(tasks_from_videos(a.videos, a.out), a.out, cfg, progress=not a.quiet)
    print(json.dumps(summary.as_dict()))
    return 0


def _recaption(a: argparse.Namespace) -> int:
    from captioner.config import build_backend, load_captioner_config
    from captioner.modes import recaption
    from captioner.prompting import PromptSet

    cfg = load_captioner_config(a.config)
    for text in recaption(a.prompts, build_backend(cfg.backend), duration=a.seconds, prompts=PromptSet(cfg.run.prompts)):
        print(text)
    return 0


def _tiny_vlm(a: argparse.Namespace) -> int:
    from captioner.backends.tiny_vlm import build_tiny_llava

    print(f"tiny LLaVA (random weights) saved to {build_tiny_llava(a.out, seed=a.seed)}")
    return 0


def _train(a: argparse.Namespace) -> int:
    from captioner.training.config import load_train_config
    from captioner.training.train import train_captioner

    summary = train_captioner(load_train_config(a.config, a.overrides), resume=not a.no_resume, progress=not a.quiet)
    print(json.dumps(summary))
    return 0


def _mini_vlm(a: argparse.Namespace) -> int:
    from captioner.training.miniature import build_miniature
    from captioner.training.train import load_records

    print(f"untrained miniature ShareCaptioner saved to {build_miniature(a.out, load_records(a.annotations), seed=a.seed, family=a.family)}")
    return 0


def _miniature(a: argparse.Namespace) -> int:
    from captioner.training.miniature import run_miniature

    report = run_miniature(a.out, num_clips=a.clips, num_heldout=a.heldout, overrides=a.overrides, family=a.family)
    print(report.read_text())
    print(f"report: {report} (and {report.with_suffix('.png')})")
    return 0


def _clip_summary(a: argparse.Namespace) -> int:
    from captioner.config import build_backend, load_captioner_config
    from captioner.modes import clip_summary
    from clipio.manifest import read_manifest

    rec = next((r for r in read_manifest(a.manifest) if r["id"] == a.id), None)
    if rec is None:
        print(f"captioner clip-summary: no record with id {a.id!r} in {a.manifest}", file=sys.stderr)
        return 2
    from captioner.prompting import PromptSet

    cfg = load_captioner_config(a.config)
    print(clip_summary(rec, a.start, a.end, build_backend(cfg.backend), prompts=PromptSet(cfg.run.prompts)))
    return 0


def _serve(a: argparse.Namespace) -> int:
    from captioner.serve import serve

    serve(a.config, host=a.host, port=a.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="captioner", description="dense-t2v captioner.")
    add_verbose(p)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("run", help="caption videos (DiffSW or fast) into a manifest; resumable, sharded")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--videos", type=Path, help="a folder of videos, or a text file listing video paths")
    src.add_argument("--manifest", type=Path, help="a manifest whose ok records name the clips to caption")
    s.add_argument("--out", type=Path, required=True, help="output manifest (JSONL); appended to, resumed")
    s.add_argument("--config", type=Path, required=True, help="captioner/presets/*.yaml")
    s.add_argument("--mode", choices=["diffsw", "fast"], default=None, help="overrides run.mode")
    s.add_argument("--engine", choices=["local", "ray"], default="local", help="ray: Ray Data (the ray extra)")
    s.add_argument("--num-shards", type=int, default=1, help="split the inputs into N shards (SLURM arrays)")
    s.add_argument("--shard-id", type=int, default=0, help="which shard this process captions (0-based)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--retry-errors", action="store_true",
                   help="caption again the clips whose last record in --out is an error (appends the new record)")
    s.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. keyframes.interval=1")
    s.set_defaults(func=_run)

    s = sub.add_parser("split", help="cut videos at shot boundaries into a manifest of shots (captioner run --manifest)")
    s.add_argument("videos", type=Path, help="a folder of videos, or a text file listing video paths")
    s.add_argument("--out", type=Path, required=True, help="output manifest (JSONL); appended to, resumed")
    s.add_argument("--min-duration", type=float, default=1.0, help="drop shots shorter than this (seconds)")
    s.add_argument("--max-duration", type=float, default=60.0, help="drop shots longer than this (seconds)")
    s.add_argument("--detector", choices=["content", "adaptive"], default="content",
                   help="PySceneDetect's ContentDetector or AdaptiveDetector")
    s.add_argument("--threshold", type=float, default=None, help="detector threshold (default: content 27, adaptive 3)")
    s.add_argument("--width", type=int, default=256, help="frames are downscaled to this width for detection")
    s.add_argument("--backend", default="auto", choices=["auto", "decord", "pyav"])
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_split)

    s = sub.add_parser("recaption", help="short prompts -> dense captions (what t2v generate --recaption does)")
    s.add_argument("prompts", nargs="+")
    s.add_argument("--config", type=Path, required=True, help="captioner/presets/*.yaml (its backend is used)")
    s.add_argument("--seconds", type=float, default=4.0, help="length of the video the caption describes")
    s.set_defaults(func=_recaption)

    s = sub.add_parser("tiny-vlm", help="save a tiny random LLaVA folder (offline tests, tiny-local config)")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_tiny_vlm)

    s = sub.add_parser("train", help="fine-tune a VLM into a captioner (four modes) on a manifest's annotations")
    s.add_argument("config", help="a YAML file or a preset of captioner/training/presets: mini, qwen2.5-vl-7b-lora")
    s.add_argument("--no-resume", action="store_true", help="start afresh even if the output folder has checkpoints")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. train.max_steps=100")
    s.set_defaults(func=_train)

    s = sub.add_parser("mini-vlm", help="save the untrained miniature ShareCaptioner, fitted to an annotated manifest")
    s.add_argument("--annotations", type=Path, required=True, help="a manifest of annotations (its captions)")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--family", choices=("llava", "idefics3"), default="llava",
                   help="llava: nine visual tokens an image; idefics3: one, the nine concatenated (pixel shuffle)")
    s.set_defaults(func=_mini_vlm)

    s = sub.add_parser("miniature", help="the miniature ShareCaptioner end to end, measured against ground truth")
    s.add_argument("--out", type=Path, default=Path("runs/captioner"))
    s.add_argument("--clips", type=int, default=2000, help="annotated training clips")
    s.add_argument("--heldout", type=int, default=100, help="held-out clips it is measured on")
    s.add_argument("--family", choices=("llava", "idefics3"), default="llava",
                   help="the miniature's VLM (see mini-vlm --family)")
    s.add_argument("overrides", nargs="*", help="key=value overrides of the training preset (mini)")
    s.set_defaults(func=_miniature)

    s = sub.add_parser("clip-summary", help="dense caption of a sub-span of a captioned clip (no decoding)")
    s.add_argument("manifest", type=Path)
    s.add_argument("--id", required=True, help="the clip's id in the manifest")
    s.add_argument("--start", type=float, required=True, help="seconds from the clip's start")
    s.add_argument("--end", type=float, required=True)
    s.add_argument("--config", type=Path, required=True, help="captioner/presets/*.yaml (its backend is used)")
    s.set_defaults(func=_clip_summary)

    s = sub.add_parser("probe", help="print one JSON line of metadata per video (or the error)")
    s.add_argument("videos", nargs="+", type=Path)
    s.add_argument("--backend", default="auto", choices=["auto", "decord", "pyav"])
    s.add_argument("--timeout", type=float, default=60.0, help="seconds a decoder call may take")
    s.add_argument("--decode", action="store_true", help="also decode every frame (finds corrupt streams)")
    s.set_defaults(func=_probe)

    text = ("a web demo (Gradio, the app extra): drop a video, watch its key-frames and differential captions "
            "arrive, then the dense and short caption; download the manifest record")
    s = sub.add_parser("serve", help=text, description=text)
    s.add_argument("--config", type=Path, required=True,
                   help="a captioner config, preset name (oracle, …) or trained captioner folder")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    s.add_argument("--port", type=int, default=None, help="port to listen on (default: 7860, or the next free one)")
    s.set_defaults(func=_serve)

    s = sub.add_parser("filter", help="semantic filtering: keep a clip only when its caption is novel")
    s.add_argument("manifest", type=Path)
    s.add_argument("--out", type=Path, required=True, help="filtered manifest (replaced, not appended to)")
    s.add_argument("--threshold", type=float, default=0.95,
                   help="drop a clip whose max cosine similarity to the kept ones is >= this")
    s.add_argument("--caption-field", default="short", help="caption field to embed (captions[FIELD])")
    s.add_argument("--embedder", default="minilm", help="'minilm' or a transformers encoder folder / hub id")
    s.add_argument("--device", default="cpu")
    s.add_argument("--batch-size", type=int, default=64)
    s.set_defaults(func=_filter)

    s = sub.add_parser("import-sharegpt4video", help="ShareGPT4Video 40K JSONL -> manifest (resumable)")
    s.add_argument("jsonl", type=Path)
    s.add_argument("--out", type=Path, required=True, help="manifest to append to (ids already in it are skipped)")
    s.add_argument("--video-root", type=Path, default=None, help="folder the 40K video_path values are relative to")
    s.set_defaults(func=_import_sharegpt4video)

    s = sub.add_parser("export-sharegpt4video", help="manifest -> ShareGPT4Video 40K JSONL (ok records only)")
    s.add_argument("manifest", type=Path)
    s.add_argument("--out", type=Path, required=True, help="40K-style JSONL to write (replaced)")
    s.set_defaults(func=_export_sharegpt4video)

    s = sub.add_parser("keyframes", help="semantic-aware key-frames of a video -> PNGs, keyframes.json, contact sheet")
    s.add_argument("video", type=Path)
    s.add_argument("--out", type=Path, required=True, help="folder for the key-frame PNGs and keyframes.json")
    s.add_argument("--interval", type=float, default=2.0, help="seconds between candidate frames")
    s.add_argument("--threshold", type=float, default=0.93,
                   help="keep a candidate when its cosine similarity to the last kept key-frame is below this")
    s.add_argument("--embedder", default="pixels", choices=["pixels", "clip"])
    s.add_argument("--clip-path", type=Path, default=None, help="CLIP vision model folder (--embedder clip)")
    s.add_argument("--max-duration", type=float, default=None, help="only the first S seconds")
    s.add_argument("--max-side", type=int, default=None,
                   help="decode the frames with the longer side at most PX (aspect kept; as keyframes.max_side)")
    s.add_argument("--backend", default="auto", choices=["auto", "decord", "pyav"])
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=_keyframes)
    return p


main = main_of("captioner", build_parser)


if __name__ == "__main__":
    sys.exit(main())
