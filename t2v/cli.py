"""``t2v`` command line.

    t2v synth     --out DIR --num-clips N [--seed S --size PX --fps F --seconds S --max-objects N --max-events N --moving-start]
    t2v train-vae --manifest M --out DIR [--steps N]
    t2v cache     --config YAML [key=value ...]
    t2v train     --config YAML [--resume latest|DIR] [key=value ...]
    t2v generate  --model DIR (--prompt TEXT | --prompts FILE) --out PATH [--frames N --steps N --guidance G --seed S
                  --recaption configs/captioner/oracle.yaml]
    t2v prompts   --out P.jsonl [--num 100 --train-manifest M --field dense]
    t2v compare   --models DIR [DIR ...] --prompts P.jsonl --out DIR [--names A B --clip CLIP_DIR]
    t2v experiment [--out runs/experiment --minutes 15]   (what `make experiment` runs)
    t2v demo      [--out runs/demo]   (what `make demo` runs)
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _synth(a: argparse.Namespace) -> int:
    from synthworld.dataset import World, describe_dataset, write_synth_dataset

    s = write_synth_dataset(a.out, a.num_clips, seed=a.seed, size=a.size, fps=a.fps, seconds=a.seconds,
                            world=World(a.max_objects, a.max_events, a.moving_start))
    print(f"wrote {s.written} clips, skipped {s.skipped} already present, {s.errors} errors -> {s.out}")
    print(describe_dataset(s.manifest, sheet_path=None if a.no_sheet else s.out / "contact_sheet.png"))
    return 1 if s.errors else 0


def _train_vae(a: argparse.Namespace) -> int:
    from t2v.vae_train import train_vae

    res = train_vae(a.manifest, a.out, size=a.size, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                    latent_channels=a.latent_channels, seed=a.seed)
    print(f"saved VAE to {a.out}: reconstruction PSNR {res['psnr']:.1f} dB, detector agreement "
          f"{res['detector_agreement']:.2f}, scaling_factor {res['scaling_factor']:.3f}")
    return 0


def _cache(a: argparse.Namespace) -> int:
    from t2v.config import load_config
    from t2v.data.cache import build_cache
    from t2v.models.build import build_text_encoder, build_vae

    cfg = load_config(a.config, a.overrides)
    lat, txt = build_cache(cfg, build_vae(cfg), build_text_encoder(cfg))
    print(f"cache ready: {lat}\n             {txt}")
    return 0


def _train(a: argparse.Namespace) -> int:
    from t2v.config import load_config
    from t2v.train import train

    cfg = load_config(a.config, a.overrides)
    final = train(cfg, resume=a.resume)
    print(f"pipeline: {final}")
    return 0


def _generate(a: argparse.Namespace) -> int:
    from t2v.generate import generate

    prompts = [a.prompt] if a.prompt else [ln.strip() for ln in Path(a.prompts).read_text().splitlines() if ln.strip()]
    if a.recaption:  # short prompt -> the dense caption style the model was trained on
        from captioner.config import build_backend, load_captioner_config
        from captioner.modes import recaption
        from t2v.generate import load_pipeline, training_fps

        pipe = load_pipeline(a.model)
        seconds = (a.frames or pipe.transformer.config.sample_frames) / training_fps(a.model)
        prompts = recaption(prompts, build_backend(load_captioner_config(a.recaption).backend), duration=seconds)
        for p in prompts:
            print(f"recaptioned: {p}")
    paths = generate(a.model, prompts, a.out, num_frames=a.frames, steps=a.steps, guidance=a.guidance, seed=a.seed,
                     negative_prompt=a.negative_prompt, fps=a.fps)
    for p in paths:
        print(p)
    return 0


def _demo(a: argparse.Namespace) -> int:
    from t2v.demo import run_demo

    run_demo(a.out, a.config, num_clips=a.num_clips, eval_scenes=a.eval_scenes, vae_steps=a.vae_steps,
             overrides=a.overrides)
    return 0


def _compare(a: argparse.Namespace) -> int:
    from t2v.compare.run import compare_models

    rep = compare_models(a.models, a.prompts, a.out, names=a.names, steps=a.steps, guidance=a.guidance, seed=a.seed,
                         clip=a.clip, gallery=a.gallery, command="t2v " + " ".join(sys.argv[1:]))
    for cat in rep["categories"]:
        row = "  ".join(f"{n} {_fmt_stat(rep['metrics'][n].get(cat['key']))}" for n in rep["metrics"])
        print(f"{cat['label']:<48} {row}")
    print(f"wrote {a.out}/report.html, report.md, report.json")
    return 0


def _fmt_stat(s: dict | None) -> str:
    if not s or s.get("mean") is None:
        return "–"
    return f"{s['mean']:.2f} [{s['lo']:.2f}, {s['hi']:.2f}]"


def _prompts(a: argparse.Namespace) -> int:
    from t2v.compare.run import write_heldout_prompts

    print(f"wrote {write_heldout_prompts(a.out, a.num, a.seconds, a.field, a.train_manifest)}")
    return 0


def _experiment(a: argparse.Namespace) -> int:
    from t2v.experiment import run_experiment

    report = run_experiment(a.out, a.config, num_clips=a.clips, minutes=a.minutes, num_prompts=a.prompts,
                            vae_steps=a.vae_steps, overrides=a.overrides)
    print((report / "report.md").read_text())
    print(f"report: {report / 'report.html'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t2v", description="dense-t2v: caption-conditioned text-to-video.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="render a synthworld dataset (clips + manifest with oracle captions)")
    s.add_argument("--out", type=Path, required=True, help="output folder (clips/ and manifest.jsonl)")
    s.add_argument("--num-clips", type=int, required=True)
    s.add_argument("--seed", type=int, default=0, help="dataset seed; clip i uses a scene seed derived from it")
    s.add_argument("--size", type=int, default=64, help="frame size in pixels (square, even, 32..256)")
    s.add_argument("--fps", type=float, default=8.0)
    s.add_argument("--seconds", type=float, default=4.0, help="clip duration")
    s.add_argument("--max-objects", type=int, default=3, help="shapes per scene: 1..N (N <= 3)")
    s.add_argument("--max-events", type=int, default=3, help="events per shape: 1..N")
    s.add_argument("--moving-start", action="store_true",
                   help="only scenes where every shape is visible and starts moving by 0.5 s")
    s.add_argument("--no-sheet", action="store_true", help="skip the contact-sheet PNG")
    s.set_defaults(func=_synth)

    s = sub.add_parser("train-vae", help="train a small AutoencoderKL on a manifest's frames; save a diffusers folder")
    s.add_argument("--manifest", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--size", type=int, default=64)
    s.add_argument("--steps", type=int, default=1000)
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--lr", type=float, default=3e-3)
    s.add_argument("--latent-channels", type=int, default=4)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_train_vae)

    for name, fn, text in (("cache", _cache, "precompute VAE latents and text embeddings"),
                           ("train", _train, "train the text-to-video model")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--config", type=Path, required=True)
        if name == "train":
            s.add_argument("--resume", default=None, help="'latest' or a checkpoint folder")
        s.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=100")
        s.set_defaults(func=fn)

    text = ("same prompts and seeds through one or more models; per-category report with chance and ceiling "
            "(to evaluate one model: t2v compare --models DIR)")
    s = sub.add_parser("compare", help=text, description=text)
    s.add_argument("--models", nargs="+", required=True, help="pipeline folders (one: an evaluation of that model)")
    s.add_argument("--names", nargs="+", default=None, help="display names (default: the run folder names)")
    s.add_argument("--prompts", type=Path, required=True, help=".jsonl with prompt (+ synthworld scene) or .txt")
    s.add_argument("--out", type=Path, required=True, help="report folder")
    s.add_argument("--steps", type=int, default=20)
    s.add_argument("--guidance", type=float, default=5.0)
    s.add_argument("--seed", type=int, default=0, help="prompt k uses seed + k for every model")
    s.add_argument("--clip", default=None, help="a CLIP model folder: adds CLIP score and Fréchet distance")
    s.add_argument("--gallery", type=int, default=12, help="prompts shown side by side in the report")
    s.set_defaults(func=_compare)

    s = sub.add_parser("prompts", help="write held-out synthworld prompts (with their scenes) as JSONL")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--num", type=int, default=100)
    s.add_argument("--field", default="dense", choices=["short", "dense"])
    s.add_argument("--seconds", type=float, default=4.0)
    s.add_argument("--train-manifest", type=Path, default=None, help="its scenes are excluded; its world is used")
    s.set_defaults(func=_prompts)

    s = sub.add_parser("generate", help="generate videos from prompts with a trained pipeline folder")
    s.add_argument("--model", type=Path, required=True, help="a TextToVideoPipeline folder")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--prompt")
    g.add_argument("--prompts", type=Path, help="a text file, one prompt per line")
    s.add_argument("--out", type=Path, required=True, help="a .mp4/.gif file (one prompt) or a folder")
    s.add_argument("--frames", type=int, default=None)
    s.add_argument("--steps", type=int, default=20)
    s.add_argument("--guidance", type=float, default=3.0)
    s.add_argument("--negative-prompt", default=None)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--fps", type=float, default=None, help="playback fps (default: the training fps)")
    s.add_argument("--recaption", type=Path, default=None, metavar="CAPTIONER_YAML",
                   help="first expand each prompt into a dense caption with this captioner config's backend")
    s.set_defaults(func=_generate)

    s = sub.add_parser("experiment", help="short vs dense captions: captioner → two trainings → compare → report")
    s.add_argument("--out", type=Path, default=Path("runs/experiment"))
    s.add_argument("--config", type=Path, default=Path("configs/t2v/tiny.yaml"))
    s.add_argument("--clips", type=int, default=1000)
    s.add_argument("--minutes", type=float, default=15.0, help="training budget of each of the two models")
    s.add_argument("--prompts", type=int, default=100, help="held-out dense prompts to compare on")
    s.add_argument("--vae-steps", type=int, default=1000)
    s.add_argument("overrides", nargs="*", help="key=value overrides of the training config (both models)")
    s.set_defaults(func=_experiment)

    s = sub.add_parser("demo", help="the whole loop offline on CPU: data → VAE → cache → train → generate → eval")
    s.add_argument("--out", type=Path, default=Path("runs/demo"))
    s.add_argument("--config", type=Path, default=Path("configs/t2v/tiny.yaml"))
    s.add_argument("--num-clips", type=int, default=1000)
    s.add_argument("--eval-scenes", type=int, default=50)
    s.add_argument("--vae-steps", type=int, default=1000)
    s.add_argument("overrides", nargs="*", help="key=value overrides of the training config")
    s.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:  # user errors: one clear line, no traceback
        print(f"t2v {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
