"""Generate videos from prompts with a saved TextToVideoPipeline folder; write mp4 or gif."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipio.video import write_video
from t2v.config import ConfigError, RunConfig, load_config

log = logging.getLogger(__name__)


def default_device() -> str:
    """CUDA when present, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | None) -> torch.device:
    """``device`` (``cpu``, ``cuda``, ``cuda:1``), or :func:`default_device`; a CUDA device on a machine without
    one is an error naming it."""
    dev = torch.device(device or default_device())
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    return dev


def inference_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU that supports it (weights and activations; latents and the sampler stay fp32), else fp32."""
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32


def load_pipeline(model_dir: str | Path, device: str | None = "cpu", offload: bool = False,
                  vae_slicing: bool = False, vae_tiling: bool = False, lora: str | Path | None = None,
                  lora_scale: float = 1.0):
    """A saved pipeline on ``device`` (None: :func:`default_device`) in :func:`inference_dtype`.

    ``lora``: a LoRA folder (a LoRA run's ``lora/``, or any diffusers Wan LoRA) applied to the transformer's DiT
    at ``lora_scale``, for a pipeline whose transformer is the LoRA's base model. A LoRA run's own ``pipeline/``
    already holds its LoRA merged in: applying it again doubles it (a warning says so).

    ``offload``: diffusers' model CPU offload — each model (text encoder, transformer, VAE) moves to the GPU
    only while it runs, for GPUs smaller than the three together. ``vae_slicing`` decodes one frame (image
    VAE) or one video (Wan VAE) at a time; ``vae_tiling`` decodes in overlapping spatial tiles: less memory
    for long or large videos."""
    from t2v.pipeline import TextToVideoPipeline

    model_dir = Path(model_dir)
    if not (model_dir / "model_index.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a pipeline folder (no model_index.json); "
                                "pass the `pipeline/` folder of a training run")
    dev = resolve_device(device)
    if offload and dev.type != "cuda":
        raise ValueError("--offload moves each model to the GPU only while it runs: it needs a CUDA --device")
    pipe = TextToVideoPipeline.from_pretrained(str(model_dir), dtype=inference_dtype(dev))
    if lora is not None:
        from t2v.models.lora import load_lora

        saved = pipeline_config(model_dir)
        if saved is not None and saved.model.lora.rank > 0:
            log.warning("--lora %s: %s already holds a LoRA merged into its weights (model.lora.rank=%d in its "
                        "t2v_config.yaml); this one is added on top. To apply a LoRA to its base, use a pipeline "
                        "of the base model", lora, model_dir, saved.model.lora.rank)
        load_lora(pipe.transformer, lora, lora_scale)
        pipe.transformer.to(inference_dtype(dev))
    elif lora_scale != 1.0:
        raise ValueError(f"--lora-scale {lora_scale}: there is no --lora to scale")
    if offload:
        pipe.enable_model_cpu_offload(device=dev)
    else:
        pipe.to(dev)
    if vae_slicing:
        pipe.vae.enable_slicing()
    if vae_tiling:
        pipe.vae.enable_tiling()
    return pipe


def _slug(text: str, n: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:n] or "prompt"


def generate(model_dir: str | Path, prompts: list[str], out: str | Path, num_frames: int | None = None,
             steps: int = 20, guidance: float = 3.0, seed: int = 0, negative_prompt: str | None = None,
             fps: float | None = None, device: str | None = "cpu", height: int | None = None,
             width: int | None = None, **load) -> list[Path]:
    """One video per prompt. ``out`` is a file (.mp4/.gif) for a single prompt, else a folder of mp4s.
    ``device`` and ``load`` (offload, vae_slicing, vae_tiling, lora, lora_scale): as :func:`load_pipeline`. The noise comes from a
    CPU generator, so a seed gives the same starting noise on every device."""
    if not prompts:
        raise ValueError("no prompts given")
    pipe = load_pipeline(model_dir, device, **load)
    fps = fps or training_fps(Path(model_dir))
    out = Path(out)
    single = len(prompts) == 1 and out.suffix.lower() in (".mp4", ".gif")
    paths = []
    for i, prompt in enumerate(prompts):
        frames = sample(pipe, prompt, negative_prompt=negative_prompt, num_frames=num_frames, height=height,
                        width=width, steps=steps, guidance=guidance, seed=seed + i)
        path = out if single else out / f"{i:03d}-{_slug(prompt)}.mp4"
        paths.append(write_video(path, frames, fps))
    if not single:
        (out / "prompts.txt").write_text("\n".join(prompts) + "\n")
    return paths


def sample(pipe, prompt: str, negative_prompt: str | None = None, num_frames: int | None = None,
           height: int | None = None, width: int | None = None, steps: int = 20, guidance: float = 3.0,
           seed: int = 0, on_step: Callable[[int, int], None] | None = None) -> np.ndarray:
    """One video, uint8 ``(F, H, W, 3)``, from a loaded pipeline; the noise comes from a CPU generator seeded
    with ``seed``, so a seed gives the same video here, in ``t2v generate`` and in ``t2v serve``.
    ``on_step(i, steps)`` is called after denoising step ``i`` (0-based) of ``steps``."""
    def step_end(_pipe, i, _t, kwargs):
        on_step(i, steps)
        return kwargs

    return pipe(prompt, negative_prompt=negative_prompt, num_frames=num_frames, height=height, width=width,
                num_inference_steps=steps, guidance_scale=guidance, generator=torch.Generator().manual_seed(seed),
                callback_on_step_end=step_end if on_step is not None else None,
                progress=on_step is None).frames[0]


def pipeline_config(model_dir: str | Path) -> RunConfig | None:
    """The run config saved with a pipeline folder (``t2v_config.yaml``), loaded strictly; None when the
    folder has none. A bad file is an error that names it."""
    path = Path(model_dir) / "t2v_config.yaml"
    if not path.is_file():
        return None
    try:
        return load_config(path)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def training_fps(model_dir: str | Path) -> float:
    """The fps the pipeline was trained at (its saved ``data.fps``); 8.0 for a folder without a config."""
    cfg = pipeline_config(model_dir)
    return cfg.data.fps if cfg is not None else 8.0


def recaption_prompts(model_dir: str | Path, prompts: list[str], captioner: str | Path,
                      num_frames: int | None = None, backends: dict[str, Any] | None = None) -> list[str]:
    """Short prompts → the dense caption style the model was trained on, by a captioner in re-caption mode
    (a captioner config or preset name, or a trained captioner folder: ``captioner train``'s ``model/``),
    for a video of the model's length (``num_frames``, default its sample frames, at its training fps).
    ``backends``: built captioner backends by ``str(captioner)``, reused and filled (an app's cache: a VLM loads once)."""
    from captioner.config import build_backend, load_captioner_config
    from captioner.modes import recaption
    from captioner.prompting import PromptSet

    if num_frames is None:
        tcfg = Path(model_dir) / "transformer" / "config.json"
        if not tcfg.is_file():
            raise FileNotFoundError(f"{model_dir}: no transformer/config.json; is it a t2v pipeline folder?")
        num_frames = int(json.loads(tcfg.read_text())["sample_frames"])
    ccfg = load_captioner_config(captioner)
    backend = backends.get(str(captioner)) if backends is not None else None
    if backend is None:
        backend = build_backend(ccfg.backend)
        if backends is not None:
            backends[str(captioner)] = backend
    return recaption(prompts, backend, duration=num_frames / training_fps(model_dir),
                     prompts=PromptSet(ccfg.run.prompts))


def check_captioner(captioner: str | Path) -> None:
    """What :func:`recaption_prompts` takes as ``captioner``, checked before it is first used: a config that
    does not load is an error naming it."""
    from captioner.config import load_captioner_config

    load_captioner_config(captioner)
