"""``t2v`` command line.

    t2v synth     --out DIR --num-clips N [--seed S --size PX --fps F --seconds S --max-objects N --max-events N --moving-start --workers N --window S]
    t2v train-vae --manifest M --out DIR [--steps N]
    t2v cache     --config YAML [--num-shards N --shard-id K --device D] [key=value ...]
    t2v train     --config YAML [--resume latest|DIR] [key=value ...]
    t2v generate  --model DIR (--prompt TEXT | --prompts FILE) --out PATH [--frames N --steps N --guidance G --seed S
                  --recaption oracle --device D --offload --vae-slicing --vae-tiling --lora DIR --lora-scale S]
    t2v plan      --config YAML [--gpus 8 --gpu-mem 80 --nodes 1] [key=value ...]
    t2v prompts   --out P.jsonl [--num-prompts 100 --train-manifest M --caption-field dense]
    t2v compare   --models DIR [DIR ...] --prompts P.jsonl --out DIR [--names A B --clip CLIP_DIR --recaption CAPTIONER
                  --variants NAME=FILE --judge CAPTIONER [--judge-claims CAPTIONER] --device D ...]
    t2v experiment [--out runs/experiment --minutes 15 --num-clips 1000 --num-prompts 100 --captioner DIR]   (`make experiment`)
    t2v demo      [--out runs/demo --num-clips 1000 --num-prompts 100]   (`make demo`)
    t2v serve     --model DIR [DIR ...] [--names A B --captioner oracle DIR --max-frames N --port P --host H]
                  (a web demo: the app extra)

--config takes a YAML file or a preset name (tiny, dit-b-256, wan-1.3b-finetune; captioner: oracle, …).
generate and compare sample with the model's saved sample.* settings unless --steps/--guidance say otherwise.
A user error prints one line and exits 2; -v shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from clipio.cli import add_verbose, main_of


def _synth(a: argparse.Namespace) -> int:
    from synthworld.dataset import World, describe_dataset, holdout_combinations, write_synth_dataset

    world = World(a.max_objects, a.max_events, a.moving_start, holdout_combinations(a.holdout_combos))
    s = write_synth_dataset(a.out, a.num_clips, seed=a.seed, size=a.size, fps=a.fps, seconds=a.seconds,
                            world=world, workers=a.workers, window=a.window)
    if world.holdout:
        print(f"held out of every clip: {', '.join(world.holdout)}")
    print(f"wrote {s.written} clips, skipped {s.skipped} already present, {s.errors} errors -> {s.out}")
    print(describe_dataset(s.manifest, sheet_path=None if a.no_sheet else s.out / "contact_sheet.png"))
    return 1 if s.errors else 0


def _train_vae(a: argparse.Namespace) -> int:
    from t2v.vae_train import train_vae

    res = train_vae(a.manifest, a.out, size=a.size, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                    latent_channels=a.latent_channels, seed=a.seed, crop=a.crop)
    print(f"saved VAE to {a.out}: reconstruction PSNR {res['psnr']:.1f} dB, detector agreement "
          f"{res['detector_agreement']:.2f}, scaling_factor {res['scaling_factor']:.3f}")
    return 0


def _cache(a: argparse.Namespace) -> int:
    import torch

    from t2v.config import load_config
    from t2v.data.cache import build_cache, cache_exists
    from t2v.generate import resolve_device
    from t2v.models.build import build_text_encoder, build_vae

    cfg = load_config(a.config, a.overrides)
    # one worker of several: --num-shards/--shard-id, or the process's place in a torchrun/accelerate launch
    num_shards = a.num_shards or int(os.environ.get("WORLD_SIZE", 1))
    shard_id = a.shard_id if a.shard_id is not None else int(os.environ.get("RANK", 0))
    device = resolve_device(a.device or (f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available()
                                         else "cpu"))
    lat, txt = build_cache(cfg, build_vae(cfg).to(device), build_text_encoder(cfg).to(device),
                           num_shards=num_shards, shard_id=shard_id)
    if cache_exists(cfg):
        print(f"cache ready: {lat}\n             {txt}")
    else:
        print(f"worker {shard_id} of {num_shards} done; the cache is ready when every worker is: {lat.parent}")
    return 0


def _train(a: argparse.Namespace) -> int:
    from t2v.config import load_config
    from t2v.train import train

    cfg = load_config(a.config, a.overrides)
    final = train(cfg, resume=a.resume)
    print(f"pipeline: {final}")
    return 0


def _generate(a: argparse.Namespace) -> int:
    from t2v.compare.prompts import load_prompts
    from t2v.generate import generate

    prompts = [a.prompt] if a.prompt else [it.prompt for it in load_prompts(a.prompts)]
    steps, guidance = sample_settings(a.model, a.steps, a.guidance)
    if a.recaption:  # short prompt -> the dense caption style the model was trained on
        from t2v.generate import recaption_prompts

        prompts = recaption_prompts(a.model, prompts, a.recaption, a.frames)
        for p in prompts:
            print(f"recaptioned: {p}")
    paths = generate(a.model, prompts, a.out, num_frames=a.frames, height=a.height, width=a.width, steps=steps,
                     guidance=guidance, seed=a.seed,
                     negative_prompt=a.negative_prompt, fps=a.fps, lora=a.lora, lora_scale=a.lora_scale, **_device(a))
    for p in paths:
        print(p)
    return 0


def sample_settings(model: str | Path, steps: int | None, guidance: float | None) -> tuple[int, float]:
    """``--steps`` / ``--guidance``, or else the model's saved ``sample.*`` settings (the trainer's defaults
    for a folder without a saved config)."""
    from t2v.config import SampleConfig
    from t2v.generate import pipeline_config

    cfg = pipeline_config(model)
    saved = cfg.sample if cfg is not None else SampleConfig()
    return (saved.steps if steps is None else steps), (saved.guidance if guidance is None else guidance)


def _serve(a: argparse.Namespace) -> int:
    from t2v.serve import serve

    serve(a.model, names=a.names, captioners=a.captioner, max_frames=a.max_frames, device=a.device, host=a.host,
          port=a.port)
    return 0


def _demo(a: argparse.Namespace) -> int:
    from dataclasses import replace

    from synthworld.dataset import DEMO_WORLD, holdout_combinations
    from t2v.demo import run_demo

    run_demo(a.out, a.config, num_clips=a.num_clips, eval_scenes=a.num_prompts, vae_steps=a.vae_steps,
             vae_crop=a.vae_crop, overrides=a.overrides,
             world=replace(DEMO_WORLD, holdout=holdout_combinations(a.holdout_combos)))
    return 0


def _compare(a: argparse.Namespace) -> int:
    from t2v.compare.prompts import parse_variants
    from t2v.compare.run import compare_models

    steps, guidance = sample_settings(a.models[0], a.steps, a.guidance)
    rep = compare_models(a.models, a.prompts, a.out, names=a.names, steps=steps, guidance=guidance, seed=a.seed,
                         clip=a.clip, recaption=a.recaption, judge=a.judge, judge_claims=a.judge_claims,
                         variants=parse_variants(a.variants), gallery=a.gallery,
                         command="t2v " + " ".join(sys.argv[1:]), **_device(a))
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
    from t2v.compare.prompts import write_heldout_prompts

    path = write_heldout_prompts(a.out, a.num_prompts, a.seconds, a.caption_field, a.train_manifest, a.phrasing,
                                 a.scenes_from, a.combos)
    print(f"wrote {path}")
    return 0


def _experiment(a: argparse.Namespace) -> int:
    from t2v.experiment import run_experiment

    report = run_experiment(a.out, a.config, num_clips=a.num_clips, minutes=a.minutes, num_prompts=a.num_prompts,
                            vae_steps=a.vae_steps, vae_crop=a.vae_crop, overrides=a.overrides, captioner=a.captioner)
    print((report / "report.md").read_text())
    print(f"report: {report / 'report.html'}")
    return 0


def _plan(a: argparse.Namespace) -> int:
    from t2v.config import load_config
    from t2v.training.memory import format_plan, model_shape, plan

    cfg = load_config(a.config, a.overrides)
    shape = model_shape(cfg)
    print(format_plan(cfg, shape, plan(cfg, a.gpus, a.gpu_mem, a.nodes, shape), a.gpus, a.gpu_mem))
    return 0


def _device_args(s: argparse.ArgumentParser) -> None:
    """Where a saved pipeline runs (`generate`, `compare`)."""
    s.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present; bf16 there)")
    s.add_argument("--offload", action="store_true",
                   help="move each model to the GPU only while it runs (GPUs smaller than the whole pipeline)")
    s.add_argument("--vae-slicing", action="store_true", help="decode one frame/video at a time (less memory)")
    s.add_argument("--vae-tiling", action="store_true", help="decode in spatial tiles (large or long videos)")


def _device(a: argparse.Namespace) -> dict:
    return {"device": a.device, "offload": a.offload, "vae_slicing": a.vae_slicing, "vae_tiling": a.vae_tiling}


def _end_to_end_args(s: argparse.ArgumentParser, out: str, num_prompts: int) -> None:
    """The arguments of the runs that go from clips to a report (`t2v demo`, `t2v experiment`)."""
    s.add_argument("--out", type=Path, default=Path(out))
    s.add_argument("--config", default="tiny", help="a config file or a preset name (tiny, dit-b-256, …)")
    s.add_argument("--num-clips", type=int, default=1000, help="synthworld clips to train on")
    s.add_argument("--num-prompts", type=int, default=num_prompts, help="held-out dense prompts the report scores")
    s.add_argument("--vae-steps", type=int, default=0,
                   help="train the run's VAE for this many steps on its clips (0: the config's vae.path; the tiny "
                        "preset's is the packaged synthworld-48px, trained so for 1000 steps)")
    s.add_argument("--vae-crop", type=int, default=0,
                   help="train the VAE on random windows of this size (0: whole frames; docs/does-it-learn.md: "
                        "32 px windows cost half the time and lost colour and position)")
    s.add_argument("overrides", nargs="*", help="key=value overrides of the training config")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t2v", description="dense-t2v: caption-conditioned text-to-video.")
    add_verbose(p)
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
    s.add_argument("--workers", type=int, default=0, help="rendering processes (0: one per usable core)")
    s.add_argument("--holdout-combos", type=int, default=0, metavar="K",
                   help="leave K colour × shape × direction combinations out of every clip (recorded in the manifest; "
                        "t2v prompts --combos unseen then writes prompts that hold them)")
    s.add_argument("--window", type=float, default=0.0,
                   help="also write the true captions of each WINDOW-second training window of a longer clip")
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
    s.add_argument("--crop", type=int, default=0, help="train on random CROP px windows (0: whole frames)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_train_vae)

    for name, fn, text in (("cache", _cache, "precompute VAE latents and text embeddings"),
                           ("train", _train, "train the text-to-video model")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--config", type=Path, required=True)
        if name == "train":
            s.add_argument("--resume", default=None, help="'latest' or a checkpoint folder")
        else:
            s.add_argument("--num-shards", type=int, default=0,
                           help="workers sharing the work (default: the launch's WORLD_SIZE, else 1)")
            s.add_argument("--shard-id", type=int, default=None, help="this worker (default: the launch's RANK, else 0)")
            s.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda:LOCAL_RANK when present)")
        s.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=100")
        s.set_defaults(func=fn)

    text = ("same prompts and seeds through one or more models; per-category report with chance and ceiling "
            "(to evaluate one model: t2v compare --models DIR)")
    s = sub.add_parser("compare", help=text, description=text)
    s.add_argument("--models", nargs="+", required=True, help="pipeline folders (one: an evaluation of that model)")
    s.add_argument("--names", nargs="+", default=None, help="display names (default: the run folder names)")
    s.add_argument("--prompts", type=Path, required=True, help=".jsonl with prompt (+ synthworld scene) or .txt")
    s.add_argument("--out", type=Path, required=True, help="report folder")
    s.add_argument("--steps", type=int, default=None, help="denoising steps (default: the first model's sample.steps)")
    s.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the first model's sample.guidance)")
    s.add_argument("--seed", type=int, default=0, help="prompt k uses seed + k for every model")
    s.add_argument("--clip", default=None, help="a CLIP model folder: adds CLIP score and Fréchet distance")
    s.add_argument("--gallery", type=int, default=12, help="prompts shown side by side in the report")
    s.add_argument("--recaption", type=Path, default=None, metavar="CAPTIONER",
                   help="also run every model on the prompts re-captioned by this captioner (config, preset or "
                        "trained folder) as arm NAME+recaption: same scenes and seeds, paired differences")
    s.add_argument("--variants", nargs="+", default=None, metavar="NAME=FILE",
                   help="other wordings of the same scenes (t2v prompts --caption-field paraphrase): every model also "
                        "runs on each as arm MODEL@NAME, same seeds, paired differences")
    s.add_argument("--judge", default=None, metavar="CAPTIONER",
                   help="a VLM judge (captioner config, preset or trained folder: hf, openai, oracle): DiffSW-captions "
                        "every video, splits each prompt into atomic claims and checks each; per-claim-type rates "
                        "with CIs, and agreement with the detector where prompts have scenes")
    s.add_argument("--judge-claims", default=None, metavar="CAPTIONER",
                   help="split the prompts into claims with this captioner instead of the judge (oracle on synthworld "
                        "prompts: claims the detector checks too, so a model judge's agreement is measured)")
    _device_args(s)
    s.set_defaults(func=_compare)

    s = sub.add_parser("plan", help="memory per GPU of a run config for DDP / FSDP2 / HSDP, before launching it")
    s.add_argument("--config", type=Path, required=True)
    s.add_argument("--gpus", type=int, default=8, help="GPUs in all")
    s.add_argument("--gpu-mem", type=float, default=80.0, help="GB per GPU")
    s.add_argument("--nodes", type=int, default=1, help="nodes (> 1 adds HSDP: shards within a node)")
    s.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.batch_size=2")
    s.set_defaults(func=_plan)

    s = sub.add_parser("prompts", help="write held-out synthworld prompts (with their scenes) as JSONL")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--num-prompts", type=int, default=100)
    s.add_argument("--caption-field", default="dense", choices=["short", "dense", "paraphrase", "paraphrase-unseen"],
                   help="the prompt: the oracle's short or dense caption, or the dense facts in other words "
                        "(synthworld.paraphrase; --phrasing picks which wording; -unseen: words no training caption uses)")
    s.add_argument("--phrasing", type=int, default=1, help="with --caption-field paraphrase: wording 1, 2, … of the scenes")
    s.add_argument("--scenes-from", type=Path, default=None, metavar="PROMPTS.jsonl",
                   help="word the scenes of this prompts file instead of drawing held-out ones (same order)")
    s.add_argument("--combos", default="seen", choices=["seen", "unseen"],
                   help="unseen: scenes holding a colour × shape × direction combination the training manifest's world "
                        "held out (compositional generalisation); seen: none of them")
    s.add_argument("--seconds", type=float, default=4.0)
    s.add_argument("--train-manifest", type=Path, default=None, help="its scenes are excluded; its world is used")
    s.set_defaults(func=_prompts)

    s = sub.add_parser("generate", help="generate videos from prompts with a trained pipeline folder")
    s.add_argument("--model", type=Path, required=True, help="a TextToVideoPipeline folder")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--prompt")
    g.add_argument("--prompts", type=Path, help="a .txt (one prompt per line) or .jsonl ({\"prompt\": ...}) file")
    s.add_argument("--out", type=Path, required=True, help="a .mp4/.gif file (one prompt) or a folder")
    s.add_argument("--frames", type=int, default=None)
    s.add_argument("--height", type=int, default=None, help="frame height in px (default: the training size; "
                   "a model trained with data.buckets generates any bucket's shape)")
    s.add_argument("--width", type=int, default=None, help="frame width in px (default: the training size)")
    s.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's sample.steps)")
    s.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the model's sample.guidance)")
    s.add_argument("--negative-prompt", default=None)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--fps", type=float, default=None, help="playback fps (default: the training fps)")
    s.add_argument("--recaption", type=Path, default=None, metavar="CAPTIONER",
                   help="first expand each prompt into a dense caption with this captioner: a config (a file or a "
                        "preset name: oracle) or a trained captioner's folder (captioner train's OUTPUT/model)")
    s.add_argument("--lora", type=Path, default=None, metavar="DIR",
                   help="apply a LoRA folder (a LoRA run's lora/, or any diffusers Wan LoRA) to the transformer; "
                        "for a pipeline of its base model")
    s.add_argument("--lora-scale", type=float, default=1.0, help="strength of --lora (1: as trained, 0: off)")
    _device_args(s)
    s.set_defaults(func=_generate)

    text = ("a web demo (Gradio, the app extra): type a prompt of any length, watch each model's video from the "
            "same seed side by side; download mp4/gif")
    s = sub.add_parser("serve", help=text, description=text)
    s.add_argument("--model", type=Path, nargs="+", required=True,
                   help="TextToVideoPipeline folders, shown side by side (e.g. the short- and dense-caption models)")
    s.add_argument("--names", nargs="+", default=None, help="display names (default: the run folder names)")
    s.add_argument("--captioner", nargs="+", default=["oracle"], metavar="CAPTIONER",
                   help="the captioners the page offers for re-captioning a prompt: configs, preset names or "
                        "trained captioner folders (default: oracle)")
    from t2v.serve import FRAMES_OVER_TRAINING

    s.add_argument("--max-frames", type=int, default=None,
                   help=f"most frames a video may have (default: {FRAMES_OVER_TRAINING} times the frames a model "
                        "was trained on)")
    s.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present; bf16 there)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    s.add_argument("--port", type=int, default=None, help="port to listen on (default: 7860, or the next free one)")
    s.set_defaults(func=_serve)

    s = sub.add_parser("experiment", help="short vs dense captions: captioner → two trainings → compare → report")
    _end_to_end_args(s, "runs/experiment", num_prompts=100)
    s.add_argument("--minutes", type=float, default=15.0, help="training budget of each model")
    s.add_argument("--captioner", default=None, metavar="CAPTIONER",
                   help="a third arm: the same clips captioned by this captioner (a trained captioner's folder, "
                        "e.g. runs/captioner/train/model, or a captioner config) train a third model")
    s.set_defaults(func=_experiment)

    s = sub.add_parser("demo", help="the whole loop offline on CPU: data → VAE → cache → train → generate → report")
    _end_to_end_args(s, "runs/demo", num_prompts=100)
    s.add_argument("--holdout-combos", type=int, default=0, metavar="K",
                   help="leave K colour × shape × direction combinations out of the training clips and report prompt "
                        "following on held-out scenes that hold them, separately (compositional generalisation)")
    s.set_defaults(func=_demo)
    return p


main = main_of("t2v", build_parser)


if __name__ == "__main__":
    sys.exit(main())
