"""Training loop: accelerate (DDP / FSDP / DeepSpeed via launch configs), flow matching, EMA,
exact resume, TensorBoard, validation GIFs, final pipeline export.

Run folder (``train.output_dir``)::

    config.yaml                  the resolved config
    logs/                        TensorBoard (loss, lr, grad_norm, samples_per_s, mfu)
    checkpoints/step-000500/     accelerate state (model, optimizer, scheduler, RNG, EMA) + trainer_state.json
    samples/step-000500/         validation GIFs and a contact sheet
    pipeline/                    the final TextToVideoPipeline (EMA weights when EMA is on)
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from t2v.config import RunConfig
from t2v.data.cache import CachedDataset, cache_exists
from t2v.data.dataset import ManifestClipDataset
from t2v.data.sampler import ResumableBatchSampler, collate_cached, collate_online, pad_text
from t2v.models.build import build_text_encoder, build_transformer, build_vae
from t2v.objective import caption_dropout_at, curriculum_sigmas, flow_matching_loss

log = logging.getLogger(__name__)

# Peak dense bf16 TFLOP/s for MFU on common GPUs (spec sheets); other devices: train.peak_tflops.
PEAK_TFLOPS = {"H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "RTX 4090": 165.0, "V100": 125.0}


def mixed_precision(cfg: RunConfig) -> str:
    mp = cfg.train.mixed_precision
    if mp == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return mp


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    ckpts = sorted((Path(output_dir) / "checkpoints").glob("step-*"))
    ckpts = [c for c in ckpts if (c / "trainer_state.json").is_file()]
    return ckpts[-1] if ckpts else None


def build_pipeline(transformer, vae, text_encoder, cfg: RunConfig):
    from diffusers import FlowMatchEulerDiscreteScheduler

    from t2v.pipeline import TextToVideoPipeline

    return TextToVideoPipeline(vae.vae, text_encoder.model, text_encoder.tokenizer, transformer,
                               FlowMatchEulerDiscreteScheduler(shift=cfg.sample.shift),
                               text_window=text_encoder.window, max_text_tokens=text_encoder.max_tokens,
                               text_layers=text_encoder.layers)


def train(cfg: RunConfig, resume: str | None = None) -> Path:
    """Train per ``cfg``; ``resume`` is ``"latest"`` or a checkpoint folder. Returns the pipeline folder."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    out = Path(cfg.train.output_dir)
    # 1. Accelerator (the launch config decides DDP / FSDP / DeepSpeed; precision from the run config)
    acc = Accelerator(
        gradient_accumulation_steps=cfg.train.grad_accum,
        mixed_precision=mixed_precision(cfg),
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    main = acc.is_main_process
    if main:
        cfg.save(out / "config.yaml")
    set_seed(cfg.train.seed)  # same initial weights on every rank

    # 2. Models: frozen text encoder and VAE, trainable transformer
    text_encoder = build_text_encoder(cfg).to(acc.device)
    vae = build_vae(cfg).to(acc.device)
    model = build_transformer(cfg, vae, text_encoder.dim)
    empty_text = text_encoder([""])[0][0].cpu()  # (L, D) for caption dropout with cached text

    # 3. Data: the cache when it exists for this config, else decode and encode online
    use_cache = cfg.data.use_cache and cache_exists(cfg)
    dataset = CachedDataset(cfg) if use_cache else ManifestClipDataset(
        cfg.data.manifest, cfg.data.caption_field, cfg.data.num_frames, cfg.data.fps, cfg.data.size)
    if main:
        log.info("data: %d clips from %s (%s, caption_field=%s)", len(dataset), cfg.data.manifest,
                 "cached latents" if use_cache else "online decoding", cfg.data.caption_field)

    # 4. Optimiser, LR schedule, EMA
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.optim.lr,
                            betas=tuple(cfg.optim.betas), weight_decay=cfg.optim.weight_decay)
    sched = get_scheduler("constant_with_warmup" if cfg.optim.schedule == "constant" else "cosine", opt,
                          num_warmup_steps=cfg.optim.warmup_steps * acc.num_processes,
                          num_training_steps=cfg.train.max_steps * acc.num_processes)
    ema = None
    if cfg.train.ema_decay > 0:
        from t2v.models.backbone import T2VTransformer

        ema = EMAModel(model.parameters(), decay=cfg.train.ema_decay, model_cls=T2VTransformer,
                       model_config=model.config)
        ema.to(acc.device)
        acc.register_for_checkpointing(ema)
    model, opt, sched = acc.prepare(model, opt, sched)

    # 5. Resume: model, optimiser, scheduler, EMA and RNG from accelerate; step and data position here
    step, rng_restored = 0, False
    if resume:
        ckpt = latest_checkpoint(out) if resume == "latest" else Path(resume)
        if ckpt is None:
            log.warning("--resume latest: no checkpoint in %s, starting from scratch", out / "checkpoints")
        else:
            acc.load_state(str(ckpt))
            step = json.loads((ckpt / "trainer_state.json").read_text())["step"]
            rng_restored = True
            if main:
                log.info("resumed from %s at step %d", ckpt, step)
    if not rng_restored:
        set_seed(cfg.train.seed, device_specific=True)  # different noise on each rank
    sampler = ResumableBatchSampler(len(dataset), cfg.train.batch_size, cfg.train.seed, acc.process_index,
                                    acc.num_processes, start_batch=step * cfg.train.grad_accum)
    # own generator: creating the loader's iterator must not draw from the (restored) global RNG
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.data.num_workers,
                        collate_fn=collate_cached if use_cache else collate_online,
                        generator=torch.Generator().manual_seed(cfg.train.seed))
    batches = iter(loader)

    # 6. Training loop
    if main:
        acc.init_trackers("t2v", config=_flat(cfg.to_dict()))
    n_params = sum(p.numel() for p in acc.unwrap_model(model).parameters() if p.requires_grad)
    peak = _peak_flops(cfg)
    p = cfg.model.patch_size
    patch_volume = p[0] * p[1] * p[2] if cfg.model.backbone == "wan" else p[1] * p[1]  # latents per token
    t0, seen, last_log = time.time(), 0, time.time()
    curriculum_end = cfg.objective.pure_noise_steps + cfg.objective.noise_ramp_steps
    loss = torch.tensor(float("nan"))
    budget = f" (stops after {cfg.train.max_minutes:g} min)" if cfg.train.max_minutes > 0 else ""
    bar = tqdm(total=cfg.train.max_steps, initial=step, desc="training" + budget, unit="step", disable=not main)
    while step < cfg.train.max_steps:
        for _ in range(cfg.train.grad_accum):
            batch = next(batches)
            with acc.accumulate(model):
                x0, text, mask = _encode_batch(batch, vae, text_encoder, empty_text, cfg, acc.device, use_cache,
                                               caption_dropout_at(cfg.objective, step))
                sigma = curriculum_sigmas(x0.shape[0], cfg.objective, step, device=x0.device)
                loss = flow_matching_loss(model, x0, text, mask, cfg.objective, sigma=sigma)
                acc.backward(loss)
                grad_norm = acc.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm) \
                    if acc.sync_gradients and cfg.optim.max_grad_norm > 0 else None
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
            seen += x0.shape[0] * acc.num_processes
        step += 1
        if ema is not None:
            ema.step(acc.unwrap_model(model).parameters())
        bar.update(1)
        if step % cfg.train.log_every == 0 or step == cfg.train.max_steps:
            dt = max(time.time() - last_log, 1e-9)
            tokens = x0[0].numel() / max(acc.unwrap_model(model).in_channels, 1) / patch_volume
            logs = {"loss": acc.reduce(loss.detach(), "mean").item(), "lr": sched.get_last_lr()[0],
                    "samples_per_s": seen / dt}
            if grad_norm is not None:
                logs["grad_norm"] = float(grad_norm)
            if peak:
                logs["mfu"] = 6 * n_params * tokens * seen / dt / peak
            acc.log(logs, step=step)
            post = {"loss": f"{logs['loss']:.4f}", "sps": f"{logs['samples_per_s']:.1f}"}
            if budget:
                post["min_left"] = f"{max(cfg.train.max_minutes - (time.time() - t0) / 60, 0):.1f}"
            bar.set_postfix(post)
            seen, last_log = 0, time.time()
        timeout = cfg.train.max_minutes > 0 and time.time() - t0 > 60 * cfg.train.max_minutes
        if step % cfg.train.checkpoint_every == 0 or timeout:
            save_checkpoint(acc, out, step, cfg)
        if cfg.train.validate_every and step % cfg.train.validate_every == 0 and main:
            _validate(acc, model, ema, vae, text_encoder, cfg, out / "samples" / f"step-{step:06d}", step)
        if timeout:
            if main:
                log.warning("train.max_minutes=%g reached at step %d: stopping early", cfg.train.max_minutes, step)
                if step < curriculum_end:
                    log.warning("stopped inside the noise-level curriculum (objective.pure_noise_steps + "
                                "noise_ramp_steps = %d): low noise levels were barely trained, expect blurred or "
                                "empty samples; raise train.max_minutes or shorten the curriculum", curriculum_end)
            break
    bar.close()

    # 7. Export the final pipeline (EMA weights when EMA is on), a run summary and a last set of samples
    acc.wait_for_everyone()
    final = out / "pipeline"
    # parameter checksums of every rank: identical unless distributed training lost sync
    checksum = torch.stack([p.detach().double().sum() for p in acc.unwrap_model(model).parameters()]).sum()
    checksums = acc.gather(checksum.reshape(1).to(acc.device)).tolist()
    if main:
        summary = {"steps": step, "curriculum_complete": step >= curriculum_end,
                   "world_size": acc.num_processes, "final_loss": float(loss.detach()),
                   "minutes": (time.time() - t0) / 60, "param_checksums": checksums,
                   "distributed_type": str(acc.distributed_type), "mixed_precision": acc.mixed_precision}
        (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
        unwrapped = acc.unwrap_model(model)
        if ema is not None:
            ema.store(unwrapped.parameters())
            ema.copy_to(unwrapped.parameters())
        pipe = build_pipeline(unwrapped, vae, text_encoder, cfg)
        pipe.save_pretrained(final)
        cfg.save(final / "t2v_config.yaml")
        if cfg.train.validation_prompts:
            from t2v.validation import write_samples

            write_samples(pipe, cfg, out / "samples" / "final", tracker=_tb(acc), step=step)
        if ema is not None:
            ema.restore(unwrapped.parameters())
        log.info("saved pipeline to %s after %d steps (%.1f min)", final, step, (time.time() - t0) / 60)
    acc.end_training()
    return final


def _encode_batch(batch, vae, text_encoder, empty_text, cfg: RunConfig, device, use_cache: bool, p: float):
    """Latents x0 (B, C, F, h, w), text (B, L, D), mask (B, L); applies caption dropout with probability p."""
    if use_cache:
        x0 = batch["latents"].to(device)
        seqs = [t[m] for t, m in zip(batch["text"], batch["text_mask"])]
        drop = (torch.rand(len(seqs)) < p).tolist()
        text, mask = pad_text([empty_text if d else s for s, d in zip(seqs, drop)])
        return x0, text.to(device), mask.to(device)
    with torch.no_grad():
        x0 = vae.encode(batch["video"].to(device))
        drop = (torch.rand(len(batch["caption"])) < p).tolist()
        text, mask = text_encoder(["" if d else c for c, d in zip(batch["caption"], drop)])
    return x0, text.to(device), mask.to(device)


def save_checkpoint(acc, out: Path, step: int, cfg: RunConfig) -> Path:
    ckpt = out / "checkpoints" / f"step-{step:06d}"
    acc.save_state(str(ckpt))
    if acc.is_main_process:
        (ckpt / "trainer_state.json").write_text(json.dumps({"step": step}))
        cfg.save(ckpt / "config.yaml")
        old = sorted((out / "checkpoints").glob("step-*"))[: -cfg.train.keep_checkpoints]
        for o in old:
            shutil.rmtree(o, ignore_errors=True)
    acc.wait_for_everyone()
    return ckpt


def _validate(acc, model, ema, vae, text_encoder, cfg, folder: Path, step: int) -> None:
    if not cfg.train.validation_prompts:
        return
    from t2v.validation import write_samples

    unwrapped = acc.unwrap_model(model)
    if ema is not None:
        ema.store(unwrapped.parameters())
        ema.copy_to(unwrapped.parameters())
    was_training = unwrapped.training
    unwrapped.eval()
    write_samples(build_pipeline(unwrapped, vae, text_encoder, cfg), cfg, folder, tracker=_tb(acc), step=step)
    unwrapped.train(was_training)
    if ema is not None:
        ema.restore(unwrapped.parameters())


def _tb(acc):
    try:
        return acc.get_tracker("tensorboard", unwrap=True)
    except Exception:  # no tracker configured
        return None


def _peak_flops(cfg: RunConfig) -> float:
    if cfg.train.peak_tflops > 0:
        return cfg.train.peak_tflops * 1e12
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for k, v in PEAK_TFLOPS.items():
            if k in name:
                return v * 1e12
    return 0.0


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v if isinstance(v, int | float | str | bool) else str(v)
    return out

