"""The optimisation loop: flow matching under the noise-level curriculum, gradient accumulation, EMA,
logging (loss, lr, grad_norm, throughput, MFU), checkpoints, validation samples and the time cap."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from clipio.config import flat_hparams
from t2v.objective import caption_dropout_at, curriculum_sigmas, flow_matching_loss
from t2v.training.build import Run
from t2v.training.checkpoint import save_checkpoint
from t2v.training.data import batches, encode_batch
from t2v.training.metrics import ThroughputMeter, expected_run, memory_peak_gb, peak_flops
from t2v.training.optim import trainable_parameters
from t2v.training.parallel import clip_grad_norm_
from t2v.validation import validate

log = logging.getLogger(__name__)


@dataclass
class LoopResult:
    step: int  # the last optimiser step done
    loss: float  # this rank's loss at that step
    start: float  # time.time() when the loop began
    throughput: dict[str, float] = field(default_factory=dict)  # the last logged throughput figures


class TimeCap:
    """``train.max_minutes``, honoured only once the noise-level curriculum (``curriculum_end`` steps) is done:
    a run cut inside it has barely trained the low noise levels and samples blurred or empty videos."""

    def __init__(self, minutes: float, curriculum_end: int, clock=time.time, verbose: bool = True):
        self.minutes, self.curriculum_end, self.clock, self.verbose = minutes, curriculum_end, clock, verbose
        self.start, self.warned = clock(), False

    def elapsed_minutes(self) -> float:
        return (self.clock() - self.start) / 60

    def reached(self, step: int) -> bool:
        """Whether to stop after ``step``: the cap has passed and the curriculum is over."""
        if self.minutes <= 0 or self.elapsed_minutes() <= self.minutes:
            return False
        if step < self.curriculum_end:
            if not self.warned and self.verbose:
                log.warning("train.max_minutes=%g passed at step %d, inside the noise-level curriculum "
                            "(objective.pure_noise_steps + noise_ramp_steps = %d): training goes on until the "
                            "curriculum ends", self.minutes, step, self.curriculum_end)
            self.warned = True
            return False
        return True


def run_loop(run: Run, step: int) -> LoopResult:
    """Train from optimiser step ``step`` to ``train.max_steps`` (or the time cap)."""
    cfg, acc = run.cfg, run.acc
    stream = batches(run.dataset, run.use_cache, cfg, acc.process_index, acc.num_processes, step)
    if run.main:
        # W&B: the run folder holds its files, the run is named after it; the API key comes from the environment
        # (WANDB_API_KEY or `wandb login`) and never from a config
        acc.init_trackers("t2v", config=flat_hparams(cfg.to_dict()),
                          init_kwargs={"wandb": {"dir": str(run.out), "name": run.out.name}})
    # MFU counts 6 FLOPs per parameter and token (forward 2, backward 4); a frozen weight (model.lora: the base DiT)
    # skips its weight gradient and costs 4: N = trainable + 2/3 · frozen
    n_trainable = sum(p.numel() for p in trainable_parameters(run.unwrapped))
    n_params = n_trainable + (sum(p.numel() for p in run.unwrapped.parameters()) - n_trainable) * 2 / 3
    peak = peak_flops(cfg.train.peak_tflops)
    curriculum_end = cfg.objective.pure_noise_steps + cfg.objective.noise_ramp_steps
    cap = TimeCap(cfg.train.max_minutes, curriculum_end, verbose=run.main)
    meter = ThroughputMeter()
    first_step, estimate_at = step, step + max(1, min(cfg.train.log_every, 10))
    loss, last, memory = torch.tensor(float("nan")), {}, 0.0
    budget = f" (stops after {cfg.train.max_minutes:g} min)" if cfg.train.max_minutes > 0 else ""
    bar = tqdm(total=cfg.train.max_steps, initial=step, desc="training" + budget, unit="step", disable=not run.main)
    while step < cfg.train.max_steps:
        # 1. one optimiser step over grad_accum micro-batches
        for _ in range(cfg.train.grad_accum):
            loss, grad_norm, x0 = _micro_step(run, next(stream), step)
            meter.add(x0.shape[0] * acc.num_processes)  # samples of all ranks
        step += 1
        if run.ema is not None:
            run.ema.step(trainable_parameters(run.unwrapped))
        bar.update(1)
        # 2. log: the expected time once, then loss, lr, grad norm and throughput every log_every steps
        if step == estimate_at and run.main:
            end, s_per_step, minutes = expected_run(step, step - first_step, cap.elapsed_minutes() * 60,
                                                    cfg.train.max_steps, cfg.train.max_minutes, curriculum_end)
            log.info("expected: %d steps at %.2f s/step ≈ %.1f min (%s)", end, s_per_step, minutes,
                     f"cap {cfg.train.max_minutes:g} min" if cfg.train.max_minutes > 0 else "no cap")
        if step == first_step + 1:
            memory = memory_peak_gb(acc.device)
            log.info("memory peak after the first step, rank %d: %.2f GB (%s)", acc.process_index, memory, acc.device)
        if step % cfg.train.log_every == 0 or step == cfg.train.max_steps:
            last = meter.read(world_size=acc.num_processes, tokens_per_sample=run.unwrapped.tokens(x0.shape[1:]),
                              n_params=n_params, peak_flops_per_device=peak)
            last["memory_peak_gb"] = memory
            logs = {"loss": _finite_mean_loss(run, loss, step), "lr": run.sched.get_last_lr()[0], **last}
            if grad_norm is not None:
                logs["grad_norm"] = float(grad_norm)
            acc.log(logs, step=step)
            post = {"loss": f"{logs['loss']:.4f}", "sps": f"{logs['samples_per_s']:.1f}"}
            if budget:
                post["min_left"] = f"{max(cfg.train.max_minutes - cap.elapsed_minutes(), 0):.1f}"
            bar.set_postfix(post)
        # 3. checkpoint, validation samples, the time cap
        stop = cap.reached(step)
        if acc.num_processes > 1 and cfg.train.max_minutes > 0:  # every rank stops at the same step
            stop = bool(acc.gather(torch.tensor([stop], device=acc.device)).any())
        if step % cfg.train.checkpoint_every == 0 or stop:
            _finite_mean_loss(run, loss, step)  # never a checkpoint of broken weights
            save_checkpoint(run, step)
        if cfg.train.validate_every and step % cfg.train.validate_every == 0:
            with torch.random.fork_rng(devices=[acc.device] if acc.device.type == "cuda" else []):
                validate(run, step)  # every rank (a sharded model is gathered first); the run's RNG untouched
        if stop:
            if run.main:
                log.warning("train.max_minutes=%g reached at step %d: stopping early", cfg.train.max_minutes, step)
            break
    bar.close()
    return LoopResult(step, float(loss.detach()), cap.start, last)


def _finite_mean_loss(run: Run, loss: torch.Tensor, step: int) -> float:
    """The loss averaged over ranks; a non-finite one stops the run on every rank at this same step (each sees the
    same mean), before a checkpoint of broken weights is written."""
    mean = run.acc.reduce(loss.detach(), "mean").item()
    if not math.isfinite(mean):
        raise FloatingPointError(
            f"training loss is {mean} at step {step}: stopping before a checkpoint of broken weights is written; "
            f"resume from the last checkpoint in {run.out / 'checkpoints'} with a lower optim.lr (now "
            f"{run.cfg.optim.lr:g}) or optim.max_grad_norm > 0")
    return mean


def _micro_step(run: Run, batch: dict, step: int):
    """Forward, backward and (when gradients sync) the optimiser step on one micro-batch.
    Returns (loss, grad norm or None, latents x0 (B, C, F, h, w))."""
    cfg, acc, model = run.cfg, run.acc, run.model
    grad_norm = None
    with acc.accumulate(model):
        x0, text, mask = encode_batch(batch, run.vae, run.text_encoder, run.empty_text, acc.device, run.use_cache,
                                      caption_dropout_at(cfg.objective, step))
        sigma = curriculum_sigmas(x0.shape[0], cfg.objective, step, device=x0.device)
        loss = flow_matching_loss(model, x0, text, mask, cfg.objective, sigma=sigma)
        if run.sharded:  # FSDP2: reduce-scatter gradients only on the last micro-batch of a step
            model.set_requires_gradient_sync(acc.sync_gradients)
        acc.backward(loss)
        if acc.sync_gradients and cfg.optim.max_grad_norm > 0:
            grad_norm = (clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm) if run.sharded
                         else acc.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm))
        run.opt.step()
        run.sched.step()
        run.opt.zero_grad(set_to_none=True)
    return loss, grad_norm, x0
