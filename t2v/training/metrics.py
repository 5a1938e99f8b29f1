"""Throughput, MFU and the expected run time — small pure functions — and TensorBoard access.

MFU (model FLOP utilisation, PaLM appendix B) = achieved FLOP/s per device / peak FLOP/s per device, with
6·N FLOPs per token for a forward and backward pass of an N-parameter model (Kaplan et al. 2020; attention
FLOPs left out, as in torchtitan). Per device on both sides: samples of all ranks over one device's peak
would grow with the number of ranks.
"""

from __future__ import annotations

import math
import time

import torch

# Peak dense bf16 TFLOP/s for MFU on common GPUs (spec sheets); other devices: train.peak_tflops.
PEAK_TFLOPS = {"H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "RTX 4090": 165.0, "V100": 125.0}


def peak_flops(peak_tflops: float = 0.0) -> float:
    """Peak FLOP/s of one device: ``peak_tflops`` when set, else a known GPU's, else 0 (no MFU)."""
    if peak_tflops > 0:
        return peak_tflops * 1e12
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for k, v in PEAK_TFLOPS.items():
            if k in name:
                return v * 1e12
    return 0.0


def mfu(n_params: int, tokens_per_s_per_device: float, peak_flops_per_device: float) -> float:
    """Model FLOP utilisation of one device: 6·N·tokens/s over its peak FLOP/s."""
    return 6 * n_params * tokens_per_s_per_device / peak_flops_per_device


def throughput(samples: int, seconds: float, world_size: int, tokens_per_sample: int, n_params: int,
               peak_flops_per_device: float = 0.0) -> dict[str, float]:
    """Figures for ``samples`` (all ranks together) trained in ``seconds`` on ``world_size`` devices;
    ``mfu`` only when the peak is known."""
    seconds = max(seconds, 1e-9)
    per_device = samples / world_size / seconds
    out = {"samples_per_s": samples / seconds, "samples_per_s_per_device": per_device,
           "tokens_per_s_per_device": per_device * tokens_per_sample}
    if peak_flops_per_device > 0:
        out["mfu"] = mfu(n_params, out["tokens_per_s_per_device"], peak_flops_per_device)
    return out


class ThroughputMeter:
    """Counts samples (all ranks) between two reads."""

    def __init__(self, clock=time.perf_counter):
        self.clock, self.samples, self.since = clock, 0, clock()

    def add(self, samples: int) -> None:
        self.samples += samples

    def read(self, **kw) -> dict[str, float]:
        """:func:`throughput` of the samples since the last read (``kw``: its other arguments); restarts the count."""
        now = self.clock()
        out = throughput(self.samples, now - self.since, **kw)
        self.samples, self.since = 0, now
        return out


def expected_run(step: int, steps_done: int, seconds: float, max_steps: int, cap_minutes: float = 0.0,
                 min_steps: int = 0) -> tuple[int, float, float]:
    """(last step, s/step, minutes from the start) the run is expected to reach, from ``steps_done`` steps in
    ``seconds`` so far (now at ``step``): ``max_steps``, or fewer when the time cap ``cap_minutes`` comes first,
    but not fewer than ``min_steps`` (the cap is not honoured before them)."""
    s_per_step = seconds / max(steps_done, 1)
    end = max_steps
    if cap_minutes > 0 and s_per_step > 0:
        in_cap = step + math.floor((60 * cap_minutes - seconds) / s_per_step) + 1  # the step that passes the cap
        end = min(max_steps, max(in_cap, min_steps, step))
    return end, s_per_step, (seconds + (end - step) * s_per_step) / 60


def memory_peak_gb(device: torch.device) -> float:
    """Peak memory of this process so far, in GB: allocated CUDA memory on a GPU, else the resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux reports KiB


def tensorboard(acc):
    """The run's TensorBoard ``SummaryWriter``, or None when no tracker is configured."""
    try:
        return acc.get_tracker("tensorboard", unwrap=True)
    except Exception:  # no tracker configured
        return None


class ImageLog:
    """Sends a picture (H, W, 3 uint8) to the run's trackers: TensorBoard's ``add_image``, W&B's ``wandb.Image``."""

    def __init__(self, acc):
        self.acc = acc

    def add_image(self, tag: str, image, step: int, dataformats: str = "HWC") -> None:
        names = {type(t).__name__ for t in self.acc.trackers}
        if "TensorBoardTracker" in names:
            tensorboard(self.acc).add_image(tag, image, step, dataformats=dataformats)
        if "WandBTracker" in names:
            import wandb

            self.acc.get_tracker("wandb", unwrap=True).log({tag: wandb.Image(image)}, step=step)
