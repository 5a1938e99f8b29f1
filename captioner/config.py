"""The captioner's typed config (``captioner/presets/*.yaml``), loaded strictly like the t2v config."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clipio.config import ConfigError, apply_overrides, from_dict, load_yaml_mapping, resolve_config

CAPTIONER_YAML = "captioner.yaml"  # in a trained captioner's folder: the captioner config it was trained for


@dataclass
class KeyframeConfig:
    interval: float = 2.0  # seconds between candidate frames
    threshold: float = 0.93  # keep a candidate when its cosine to the last kept key-frame is below this
    embedder: str = "pixels"  # pixels | clip
    clip_path: str | None = None  # a CLIP (vision) folder, for embedder: clip
    max_duration: float | None = None  # caption at most this many seconds of each clip
    device: str = "cpu"
    # key-frames are decoded (resize at decode, aspect kept, never up) with the longer side at most this;
    # backend.max_pixels, when set, bounds them too, so they come out at the size the VLM sees. None: no bound
    max_side: int | None = None

    def __post_init__(self):
        _check_positive("keyframes.max_side", self.max_side)


@dataclass
class BackendConfig:
    kind: str = "oracle"  # oracle | hf | openai
    # hf: a transformers image-text-to-text folder
    path: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 8
    max_new_tokens: int = 256  # an answer cut here is flagged: meta.truncated in the record
    device_map: str | None = None  # None: the whole model on `device`; auto | balanced | sequential: accelerate
    attn_implementation: str | None = None  # eager | sdpa | flash_attention_2 ...; None: transformers' default
    trust_remote_code: bool = False  # run the checkpoint's own Python code (auto_map), e.g. InternVL
    # hf and openai: each image is scaled down (aspect kept) to at most this many pixels before it is sent;
    # Qwen2-VL-family processors also get it (and min_pixels) as their own pixel budget. None: as decoded
    max_pixels: int | None = None
    min_pixels: int | None = None  # hf, Qwen2-VL-family processors only: their lower bound
    # openai: any OpenAI-compatible chat-completions server (GPT-4o, vllm serve, SGLang)
    model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this environment variable, never from YAML
    concurrency: int = 8
    max_retries: int = 5
    timeout: float = 60.0
    temperature: float = 0.0

    def __post_init__(self):
        for name in ("max_pixels", "min_pixels"):
            _check_positive(f"backend.{name}", getattr(self, name))
        if self.max_pixels and self.min_pixels and self.min_pixels > self.max_pixels:
            raise ConfigError(f"backend.min_pixels ({self.min_pixels}) must not exceed backend.max_pixels "
                              f"({self.max_pixels})")


def _check_positive(name: str, v: int | None) -> None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
        raise ConfigError(f"{name}: must be a whole number >= 1 or null, got {v!r}")


@dataclass
class RaySettings:
    """``--engine ray``: the actors and workers Ray schedules (docs/cluster.md)."""

    num_actors: int = 1  # captioning actors; each builds the backend once and captions active_clips at a time
    num_gpus_per_actor: float = 0.0  # a VLM on a GPU: 1 (0.5 packs two actors on one GPU); the hf backend: device cuda
    num_cpus_per_actor: float = 1.0
    extract_workers: int = 2  # key-frame extraction actors (decode + embed), ahead of the captioning actors
    extract_cpus: float = 1.0  # CPUs each extraction worker reserves
    extract_gpus: float = 0.0  # GPUs each reserves: a CLIP embedder on keyframes.device=cuda (0.25: four share one)
    chunk_size: int = 16  # clips per block the driver streams to Ray (the unit a key-frame worker takes)
    start_timeout: float = 600.0  # seconds to wait for every actor to start before failing (VLM load, autoscaler)
    # clips fed ahead of the records that came back (bounds the images in the pipeline); None: two rounds of
    # every stage, 2 * (num_actors * run.active_clips + extract_workers * chunk_size)
    max_in_flight: int | None = None

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """ConfigError naming the first bad value (also called by the ray engine, for values set in code)."""
        for name in ("num_actors", "extract_workers", "chunk_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"run.ray.{name}: must be a whole number >= 1, got {v!r}")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ConfigError(f"run.ray.max_in_flight: must be a whole number >= 1 or null, got {self.max_in_flight!r}")
        for name in ("num_cpus_per_actor", "extract_cpus", "start_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"run.ray.{name}: must be > 0, got {getattr(self, name)!r}")
        for name in ("num_gpus_per_actor", "extract_gpus"):
            g = getattr(self, name)
            if g < 0 or (g > 1 and g != int(g)):
                raise ConfigError(f"run.ray.{name}: must be 0, a fraction below 1 (actors sharing a GPU) "
                                  f"or a whole number of GPUs, got {g!r}")


@dataclass
class RunSettings:
    mode: str = "diffsw"  # diffsw | fast
    active_clips: int = 16  # clips captioned together: step k of every active clip is one backend batch
    prefetch: int = 2  # threads extracting key-frames ahead of the backend
    prompts: str | None = None  # a folder of prompt files; None: captioner/prompts/
    grid_cols: int = 4  # fast mode: key-frames per grid row
    grid_cell: int = 224  # fast mode: cell size in pixels
    video_backend: str = "auto"  # auto | decord | pyav
    decode_timeout: float = 60.0  # seconds one decoder call may take
    # training windows: a clip longer than window_seconds also gets the dense caption of each window
    # [k * stride, k * stride + window_seconds] (its own timeline entries, re-timed from 0; one text-only
    # clip_summary call each), so a model trained on a window reads what happens in it. 0: off.
    window_seconds: float = 0.0
    window_stride: float | None = None  # None: window_seconds (windows side by side)
    ray: RaySettings = field(default_factory=RaySettings)  # --engine ray only


@dataclass
class CaptionerConfig:
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    run: RunSettings = field(default_factory=RunSettings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def load_captioner_config(path: str | Path | None = None, overrides: list[str] | None = None) -> CaptionerConfig:
    """Defaults ← YAML (a path, or a preset name: ``oracle``) ← ``key=value`` overrides, strictly (unknown keys and wrong types name the key).

    ``path`` may also be a trained captioner's folder (``captioner train``'s ``OUTPUT/model``): its
    ``captioner.yaml`` — the settings it was trained for — with ``backend.path`` set to the folder."""
    if path is not None and Path(path).is_dir():
        if not (Path(path) / CAPTIONER_YAML).is_file():
            raise ConfigError(f"{path} is a folder without {CAPTIONER_YAML}: name a captioner config (a YAML file or "
                              "a preset), or a model folder written by `captioner train`")
        d = load_yaml_mapping(Path(path) / CAPTIONER_YAML)
        d.setdefault("backend", {}).update(kind="hf", path=str(path))
    else:
        d = load_yaml_mapping(resolve_config(path, "captioner.presets")) if path is not None else {}
    apply_overrides(d, overrides or [])
    cfg = from_dict(CaptionerConfig, d)
    for name, value, options in [("backend.kind", cfg.backend.kind, ("oracle", "hf", "openai")),
                                 ("keyframes.embedder", cfg.keyframes.embedder, ("pixels", "clip")),
                                 ("run.mode", cfg.run.mode, ("diffsw", "fast")),
                                 ("run.video_backend", cfg.run.video_backend, ("auto", "decord", "pyav"))]:
        if value not in options:
            raise ConfigError(f"{name}: {value!r} is not one of {list(options)}")
    if cfg.backend.kind == "hf" and not cfg.backend.path:
        raise ConfigError("backend.path: the hf backend needs a model folder (backend.path=...)")
    if cfg.backend.kind == "openai" and not cfg.backend.model:
        raise ConfigError("backend.model: the openai backend needs a model name (backend.model=...)")
    if cfg.keyframes.embedder == "clip" and not cfg.keyframes.clip_path:
        raise ConfigError("keyframes.clip_path: the clip embedder needs a CLIP folder")
    for name, v in [("keyframes.interval", cfg.keyframes.interval), ("run.active_clips", cfg.run.active_clips),
                    ("backend.batch_size", cfg.backend.batch_size), ("backend.concurrency", cfg.backend.concurrency)]:
        if not v > 0:
            raise ConfigError(f"{name}: must be > 0, got {v}")
    if cfg.run.window_seconds < 0 or (cfg.run.window_stride is not None and not cfg.run.window_stride > 0):
        raise ConfigError(f"run.window_seconds / run.window_stride: must be >= 0 / > 0, got "
                          f"{cfg.run.window_seconds} / {cfg.run.window_stride}")
    if cfg.run.window_seconds and cfg.run.mode != "diffsw":
        raise ConfigError("run.window_seconds: window captions are made from the per-key-frame captions of "
                          "diffsw mode (fast mode has none); use run.mode=diffsw")
    if not 0 < cfg.keyframes.threshold <= 1:
        raise ConfigError(f"keyframes.threshold: must be in (0, 1], got {cfg.keyframes.threshold}")
    return cfg


def build_backend(cfg: BackendConfig):
    """The backend a config names (imports its library only when it is used)."""
    if cfg.kind == "oracle":
        from captioner.backends.oracle import OracleBackend

        return OracleBackend()
    if cfg.kind == "hf":
        from captioner.backends.hf import HFBackend

        return HFBackend(cfg.path, device=cfg.device, dtype=cfg.dtype, max_new_tokens=cfg.max_new_tokens,
                         batch_size=cfg.batch_size, attn_implementation=cfg.attn_implementation,
                         trust_remote_code=cfg.trust_remote_code, device_map=cfg.device_map,
                         max_pixels=cfg.max_pixels, min_pixels=cfg.min_pixels)
    from captioner.backends.openai_api import OpenAIBackend

    return OpenAIBackend(cfg.model, base_url=cfg.base_url, api_key_env=cfg.api_key_env,
                         concurrency=cfg.concurrency, max_retries=cfg.max_retries, timeout=cfg.timeout,
                         max_tokens=cfg.max_new_tokens, temperature=cfg.temperature, max_pixels=cfg.max_pixels)
