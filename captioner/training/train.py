"""``captioner train``: fine-tune a transformers VLM into a captioner on a manifest's annotations.

    load the VLM folder (AutoModelForImageTextToText + AutoProcessor) → LoRA (peft) or full → the four
    modes' conversations (:mod:`captioner.training.conversations`) → accelerate loop (DDP/FSDP via
    ``accelerate launch``; loss on answer tokens) → ``OUTPUT/model/``: a folder the ``hf`` backend loads

A run folder holds ``checkpoints/step-N/`` (accelerate state: model, optimiser, scheduler, RNG; and
``trainer_state.json`` — the step, which fixes the data position), ``validation/step-N.jsonl`` (the model's
answers to the held-out records' requests of every mode, next to the annotation), TensorBoard logs in
``logs/``, ``train_config.yaml`` and, at the end, ``model/`` (LoRA merged into the weights; the adapter
alone in ``adapter/``) and ``train_summary.json``. A rerun of the same folder resumes from its newest
checkpoint.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from captioner.training.config import CaptionerTrainConfig
from captioner.training.conversations import MODES, FrameSource, answer_eos_id, collate, weighted_loss
from captioner.training.data import AnnotationDataset, ModeMixSampler, mode_weights, split_validation

log = logging.getLogger(__name__)
VISION_PARTS = ("vision_tower", "visual.", "vision_model", "vision_encoder")
PROJECTOR_PARTS = ("multi_modal_projector", "mm_projector", "visual.merger", "connector")


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """The ``ok`` records of a manifest (the last of each id), their ``video`` resolved to an absolute path (a
    validation manifest may live in another folder than the training one)."""
    from clipio.manifest import iter_latest, resolve_video

    return [{**r, "video": str(resolve_video(path, r))} for r in iter_latest(path) if r.get("status") == "ok"]


def _lora(model, cfg: CaptionerTrainConfig):
    from peft import LoraConfig, get_peft_model

    lc = cfg.model.lora
    targets: Any = lc.target_modules
    targets = "all-linear" if targets == ["all-linear"] else targets
    return get_peft_model(model, LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
                                            target_modules=targets, task_type="CAUSAL_LM"))


def build_model(cfg: CaptionerTrainConfig):
    """(model, processor): the folder's VLM, LoRA-wrapped or not, vision frozen if asked."""
    from transformers import AutoModelForImageTextToText

    from captioner.backends.hf import DTYPES, load_processor
    from captioner.checkpoints import locate_checkpoint
    from captioner.config import load_captioner_config

    m = cfg.model
    path = locate_checkpoint(m.path, "model.path")
    ccfg = load_captioner_config(cfg.data.captioner)
    processor = load_processor(path, m.trust_remote_code, ccfg.backend.max_pixels, ccfg.backend.min_pixels)
    kwargs: dict[str, Any] = {"dtype": DTYPES[m.dtype], "trust_remote_code": m.trust_remote_code}
    if m.attn_implementation:
        kwargs["attn_implementation"] = m.attn_implementation
    model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
    if m.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if m.lora.r > 0:
        model = _lora(model, cfg)
    for flag, name, parts, what in ((m.freeze_vision, "freeze_vision", VISION_PARTS, "a vision tower"),
                                    (m.freeze_projector, "freeze_projector", PROJECTOR_PARTS,
                                     "a vision-language projector")):
        if not flag:
            continue
        frozen = [p for n, p in model.named_parameters() if any(v in n for v in parts)]
        if not frozen:
            raise ValueError(f"model.{name}: no parameter of {type(model).__name__} is named like {what} "
                             f"({', '.join(parts)})")
        for p in frozen:
            p.requires_grad_(False)
    return model, processor, ccfg


def param_groups(model, lr: float, projector_lr: float | None) -> list[dict[str, Any]]:
    """The trainable parameters as optimiser groups: the vision side (tower, projector) at ``projector_lr`` when
    it is set, everything else at ``lr``."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if projector_lr is None:
        return [{"params": [p for _, p in trainable]}]
    vision = lambda n: any(v in n for v in VISION_PARTS + PROJECTOR_PARTS)  # noqa: E731
    groups = [{"params": [p for n, p in trainable if not vision(n)]},
              {"params": [p for n, p in trainable if vision(n)], "lr": projector_lr}]
    return [g for g in groups if g["params"]]


class Validator:
    """The held-out records' first request of every mode: answers written next to the annotation, and the
    mean answer-token loss."""

    def __init__(self, records, prompts, frames, processor, eos_id, max_length, prepare_image):
        ds = AnnotationDataset(records, MODES, prompts, frames, processor, eos_id, max_length, prepare_image)
        first: dict[tuple[str, str], int] = {}
        for i, (ri, mode, _) in enumerate(ds.items):
            first.setdefault((records[ri]["id"], mode), i)
        self.ds, self.idx = ds, sorted(first.values())
        self.convs = [ds.conversation(i) for i in self.idx]

    @torch.no_grad()
    def run(self, model, processor, step: int, out: Path, max_new_tokens: int) -> dict[str, float]:
        from captioner.backends.hf import HFBackend

        was_training = model.training
        model.eval()
        losses = {m: [] for m in MODES}
        for i, conv in zip(self.idx, self.convs):
            batch = collate([self.ds[i]], processor.tokenizer.pad_token_id)
            batch = {k: v.to(model.device) for k, v in batch.items()}
            losses[conv.mode].append(float(model(**batch).loss))
        backend = HFBackend.from_model(model, processor, max_new_tokens=max_new_tokens, batch_size=8)
        answers = backend.generate([c.request for c in self.convs])
        out.mkdir(parents=True, exist_ok=True)
        with open(out / f"step-{step:06d}.jsonl", "w") as f:
            for c, a in zip(self.convs, answers):
                f.write(json.dumps({"step": step, "id": c.record_id, "mode": c.mode, "task": c.request.task,
                                    "answer": str(a), "target": c.answer}) + "\n")
        model.train(was_training)
        return {f"val/loss_{m}": sum(v) / len(v) for m, v in losses.items() if v}


def latest_checkpoint(out: Path) -> Path | None:
    ckpts = sorted(c for c in (out / "checkpoints").glob("step-*") if (c / "trainer_state.json").is_file())
    return ckpts[-1] if ckpts else None


def train_captioner(cfg: CaptionerTrainConfig, resume: bool = True, progress: bool = True) -> dict[str, Any]:
    """Train; returns the summary written to ``OUTPUT/train_summary.json``."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed
    from tqdm import tqdm
    from transformers import get_scheduler

    from captioner.backends.hf import prepare_pil
    from captioner.prompting import PromptSet
    from clipio.config import flat_hparams

    t, d = cfg.train, cfg.data
    out = Path(t.output_dir)
    # find_unused_parameters: a text-only batch (summary, re-caption) leaves the vision tower without gradients
    acc = Accelerator(gradient_accumulation_steps=t.grad_accum, mixed_precision=t.mixed_precision,
                      log_with="tensorboard", project_config=ProjectConfiguration(str(out), logging_dir=str(out / "logs")),
                      kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    set_seed(t.seed)
    model, processor, ccfg = build_model(cfg)
    processor.tokenizer.padding_side = "right"
    if processor.tokenizer.pad_token is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    eos_id = answer_eos_id(processor.tokenizer, getattr(model, "generation_config", None))

    records = load_records(d.manifest)
    train_recs, val_recs = split_validation(records, load_records(d.val_manifest) if d.val_manifest else None,
                                            d.val_clips)
    prompts = PromptSet(ccfg.run.prompts)
    frames = FrameSource(ccfg, cache_clips=d.cache_clips)

    prepare_image = functools.partial(prepare_pil, max_pixels=ccfg.backend.max_pixels)  # picklable for workers

    weights = mode_weights(d.modes)
    ds = AnnotationDataset(train_recs, tuple(m for m in MODES if weights[m] > 0), prompts, frames, processor,
                           eos_id, d.max_length, prepare_image, d.emphasis_pattern())
    sampler = ModeMixSampler(ds, weights, batch_size=t.batch_size, seed=t.seed, hflip=d.hflip)
    pad_id = processor.tokenizer.pad_token_id
    # workers are spawned, not forked: a forked worker inherits the decoder's and the timeout watchdog's threads
    # in whatever state they were (a decode in a forked worker hung until its timeout here)
    workers = {"num_workers": d.num_workers, "multiprocessing_context": "spawn", "persistent_workers": True} \
        if d.num_workers else {}
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=functools.partial(collate, pad_id=pad_id),
                                         **workers)
    if len(loader) < t.grad_accum * acc.num_processes:
        raise ValueError(f"{len(ds)} conversations make {len(sampler)} batches of {t.batch_size} per epoch under the "
                         f"mode mix, fewer than train.grad_accum={t.grad_accum} x {acc.num_processes} processes: "
                         "lower them or add data")
    groups = param_groups(model, t.lr, t.projector_lr)
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)
    model, opt, loader = acc.prepare(model, opt, loader)
    steps_per_epoch = max(len(loader) // t.grad_accum, 1)
    total = t.max_steps or max(1, math.ceil(t.epochs * steps_per_epoch))
    # a prepared scheduler steps once per process at every optimiser step
    sched = acc.prepare(get_scheduler(t.lr_scheduler, opt, num_warmup_steps=t.warmup_steps * acc.num_processes,
                                      num_training_steps=total * acc.num_processes))

    step = 0
    ckpt = latest_checkpoint(out) if resume else None
    if ckpt is not None:
        acc.load_state(str(ckpt))
        step = json.loads((ckpt / "trainer_state.json").read_text())["step"]
        log.info("resuming from %s (step %d of %d)", ckpt, step, total)
    per_epoch = {m: sampler.drawn(m) for m in MODES if sampler.drawn(m)}
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.yaml").write_text(cfg.to_yaml())
        n_train = sum(p.numel() for p in params)
        log.info("captioner train: %d conversations %s from %d records (%d held out); per epoch %s in %d "
                 "one-mode batches; %d steps; %d trainable parameters", len(ds), ds.counts(), len(train_recs),
                 len(val_recs), per_epoch, len(sampler), total, n_train)
    acc.init_trackers("captioner", config=flat_hparams(cfg.to_dict()))
    validator = Validator(val_recs, prompts, frames, processor, eos_id, d.max_length, prepare_image) \
        if val_recs and acc.is_main_process else None

    def save(step: int) -> None:
        path = out / "checkpoints" / f"step-{step:06d}"
        acc.save_state(str(path))
        if acc.is_main_process:
            (path / "trainer_state.json").write_text(json.dumps({"step": step}))
            for old in sorted((out / "checkpoints").glob("step-*"))[:-t.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    def validate(step: int) -> None:
        if validator is not None:
            metrics = validator.run(acc.unwrap_model(model), processor, step, out / "validation", t.val_max_new_tokens)
            acc.log(metrics, step=step)
            log.info("step %d validation: %s", step, {k: round(v, 3) for k, v in metrics.items()})
        acc.wait_for_everyone()

    model.train()
    bar = tqdm(total=total, initial=step, desc="captioner train", unit="step",
               disable=not (progress and acc.is_main_process))
    t0, first_step, losses, last = time.time(), step, [], float("nan")
    while step < total:
        epoch, done_in_epoch = divmod(step, steps_per_epoch)
        batches = acc.skip_first_batches(loader, done_in_epoch * t.grad_accum) if done_in_epoch else loader
        batches.set_epoch(epoch)  # the draw of this epoch (accelerate passes it on to the sampler)
        for batch in batches:
            with acc.accumulate(model):
                loss = weighted_loss(model, batch)
                acc.backward(loss)
                if acc.sync_gradients and t.max_grad_norm > 0:
                    acc.clip_grad_norm_(params, t.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
            losses.append(loss.detach())
            if not acc.sync_gradients:
                continue
            step += 1
            bar.update(1)
            if step % t.log_every == 0 or step == total:
                last = float(acc.gather(torch.stack(losses)).mean())
                losses = []
                acc.log({"train/loss": last, "train/lr": sched.get_last_lr()[0]}, step=step)
                bar.set_postfix(loss=f"{last:.3f}")
            if t.checkpoint_every and step % t.checkpoint_every == 0 and step < total:
                save(step)
            if t.val_every and step % t.val_every == 0 and step < total:
                validate(step)
            if step >= total:
                break
    bar.close()
    save(step)
    validate(step)
    summary = {"steps": step, "total_steps": total, "final_loss": last, "conversations": ds.counts(),
               "per_epoch": per_epoch,
               "train_records": len(train_recs), "val_records": len(val_recs),
               "seconds": round(time.time() - t0, 1), "steps_this_run": step - first_step,
               "processes": acc.num_processes}
    if acc.is_main_process:
        export(acc.unwrap_model(model), processor, out, lora=cfg.model.lora.r > 0, ccfg=ccfg)
        (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
    acc.wait_for_everyone()
    acc.end_training()
    return summary


def export(model, processor, out: Path, lora: bool, ccfg=None) -> Path:
    """``out/model``: a folder ``AutoModelForImageTextToText`` and the ``hf`` backend load (LoRA merged), with
    ``captioner.yaml`` (the captioner config it was trained for), so ``--config OUT/model`` captions with it."""
    if lora:
        model.save_pretrained(out / "adapter")
        model = model.merge_and_unload()
    model.config.use_cache = True
    model.save_pretrained(out / "model")
    processor.tokenizer.padding_side = "left"
    processor.save_pretrained(out / "model")
    if ccfg is not None:
        from captioner.config import CAPTIONER_YAML

        d = ccfg.to_dict()
        d["backend"].pop("path", None)  # the folder itself, wherever it is moved
        (out / "model" / CAPTIONER_YAML).write_text(yaml.safe_dump(d, sort_keys=False))
    return out / "model"

