"""bench/same_result.py's comparison: a stage's digest follows file contents, not the run's folder names."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import same_result  # noqa: E402


def _run(root: Path, cache_name: str, weights: bytes, colour: float) -> Path:
    (root / "data" / "cache" / cache_name).mkdir(parents=True)
    (root / "data" / "cache" / cache_name / "shard-00000.safetensors").write_bytes(b"latents")
    (root / "t2v" / "pipeline" / "transformer").mkdir(parents=True)
    (root / "t2v" / "pipeline" / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(weights)
    (root / "report").mkdir()
    (root / "report" / "report.json").write_text(json.dumps(
        {"metrics": {"demo": {"colour": {"mean": colour, "lo": 0, "hi": 1, "n": 4}}}}))
    return root


def test_digests_compare_contents_and_scores(tmp_path):
    a = _run(tmp_path / "a", "latents-1111", b"w1", 0.5)
    b = _run(tmp_path / "b", "latents-2222", b"w1", 0.5)  # cache folder named from b's own paths
    c = _run(tmp_path / "c", "latents-1111", b"w2", 0.75)
    cache, dit = same_result.STAGES["latent + text cache"], same_result.STAGES["DiT weights"]
    assert same_result.digest(a, cache) == same_result.digest(b, cache)
    assert same_result.digest(a, dit) == same_result.digest(b, dit) != same_result.digest(c, dit)
    assert same_result.digest(a, same_result.STAGES["captions (oracle)"]) is None
    assert same_result.scores(a) == same_result.scores(b) == {"demo": {"colour": 0.5}} != same_result.scores(c)
