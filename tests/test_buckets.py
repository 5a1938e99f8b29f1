"""Aspect-ratio × size × frame-count buckets: a mixed 16:9 / 9:16 / 1:1 synthworld set keeps its shapes,
every batch comes from one bucket on every rank, the order resumes exactly, training runs from the cache
with a bucket summary, and each bucket's validation sample comes out at its own shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_overrides
from safetensors.torch import load_file

from clipio.manifest import read_manifest, resolve_video
from clipio.video import open_video, write_mp4
from synthworld.dataset import write_synth_dataset
from t2v.config import ConfigError, load_config
from t2v.data.buckets import Bucket, BucketBatchSampler, assign, bucket_grid
from t2v.data.cache import config_samples

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "t2v/presets/tiny.yaml")
CROPS = {"16:9": (36, 64), "9:16": (64, 36), "1:1": (64, 64)}  # (height, width) cut from 64 px renders
BUCKETS = ['data.buckets.aspect_ratios=["16:9", "9:16", "1:1"]', "data.buckets.sizes=[32]"]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """12 synthworld clips (2 s, 8 fps): four each cropped to 16:9, 9:16 and 1:1."""
    root = tmp_path_factory.mktemp("mixed")
    s = write_synth_dataset(root, 12, seed=2, size=64, fps=8.0, seconds=2.0, progress=False)
    recs = read_manifest(s.manifest)
    with open(root / "mixed.jsonl", "w") as f:
        for i, r in enumerate(recs):
            h, w = list(CROPS.values())[i % 3]
            with open_video(resolve_video(s.manifest, r)) as v:
                frames = v.frames_at([k / 8 for k in range(16)])
            y0, x0 = (64 - h) // 2, (64 - w) // 2
            video = f"clips/{r['id']}-{w}x{h}.mp4"
            write_mp4(root / video, np.ascontiguousarray(frames[:, y0:y0 + h, x0:x0 + w]), 8.0)
            f.write(json.dumps({**r, "video": video, "width": w, "height": h}) + "\n")
    return root / "mixed.jsonl"


def test_each_clip_goes_to_the_bucket_of_its_shape(mixed, tmp_path):
    cfg = load_config(TINY, tiny_overrides(mixed, tmp_path, **{"data.buckets.num_frames": "[2, 4]"}) + BUCKETS)
    grid = bucket_grid(cfg)  # multiples of 4 (the test VAE's 2x, 2x2 patches)
    assert {(b.width, b.height) for b in grid} == {(44, 24), (24, 44), (32, 32)} and {b.frames for b in grid} == {2, 4}
    samples = config_samples(cfg)
    for s in samples:
        b, r = s["bucket"], s["record"]
        assert (b.width > b.height) == (r["width"] > r["height"]) and (b.width == b.height) == (r["width"] == r["height"])
        assert b.frames == 4  # 2 s clips hold 4 frames at 2 fps
    # a short clip gets the frame count that fits it; a small video is not upscaled into a bigger bucket
    two = [Bucket(f, 32, 32) for f in (2, 4)] + [Bucket(4, 64, 64)]
    assert assign(two, 48, 48, duration=1.0, fps=2.0) == Bucket(2, 32, 32)
    assert assign(two, 100, 90, duration=3.0, fps=2.0) == Bucket(4, 64, 64)
    with pytest.raises(ConfigError, match="'16x9' is not 'W:H'"):
        load_config(TINY, ['data.buckets.aspect_ratios=["16x9"]'])
    with pytest.raises(ConfigError, match="buckets need model.backbone=wan"):
        load_config(TINY, [*BUCKETS, "model.backbone=latte"])


def test_every_batch_is_one_bucket_on_every_rank_and_the_order_resumes():
    keys = ["a"] * 9 + ["b"] * 6 + ["c"] * 3
    ranks = [BucketBatchSampler(keys, 2, seed=3, rank=r, world=2) for r in range(2)]
    assert ranks[0].per_epoch == 2 + 1 + 0  # global batches of 4: 9 -> 2, 6 -> 1, 3 -> 0 (waits)
    seen = []
    for j in range(9):  # three epochs
        parts = [s.batch(j) for s in ranks]
        assert all(len(p) == 2 for p in parts) and not set(parts[0]) & set(parts[1])
        assert len({keys[i] for p in parts for i in p}) == 1  # one bucket across both ranks
        seen += [i for p in parts for i in p]
    assert {keys[i] for i in seen} == {"a", "b"}
    resumed = BucketBatchSampler(keys, 2, seed=3, rank=1, world=2, start_batch=5)
    assert [b for _, b in zip(range(4), resumed)] == [ranks[1].batch(j) for j in range(5, 9)]
    assert BucketBatchSampler(keys, 2, seed=4).batch(0) != BucketBatchSampler(keys, 2, seed=3).batch(0) or \
        BucketBatchSampler(keys, 2, seed=4).batch(1) != BucketBatchSampler(keys, 2, seed=3).batch(1)
    with pytest.raises(ValueError, match="no bucket holds a global batch of 8"):
        BucketBatchSampler(keys[-3:], 4, world=2)


def test_a_mixed_set_trains_from_the_cache_and_samples_every_bucket_at_its_shape(mixed, tmp_path):
    ov = tiny_overrides(mixed, tmp_path, **{"train.validation_prompts": '["a red circle moves left"]'}) + BUCKETS
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for cmd in (["-m", "t2v.cli", "cache", "--config", TINY, "--device", "cpu", *ov],
                ["train_t2v.py", "--config", TINY, *ov]):
        r = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
    assert "cached latents" in r.stderr and "44x24x4" in r.stderr and "batches/epoch" in r.stderr  # the summary
    cfg = load_config(TINY, ov)
    lat = {}
    for shard in sorted(Path(cfg.data.cache_dir).glob("latents-*/shard-*.safetensors")):
        lat.update(load_file(shard))
    assert {tuple(t.shape[-2:]) for t in lat.values()} == {(12, 22), (22, 12), (16, 16)}  # latents keep the shape
    samples = tmp_path / "run" / "samples"
    final = sorted(samples.iterdir())[-1]
    for name, (h, w) in {"44x24x4": (24, 44), "24x44x4": (44, 24), "32x32x4": (32, 32)}.items():
        with open_video(final / f"bucket-{name}.gif") as v:
            frames = v.frames_at([0.0])
        assert frames.shape[1:3] == (h, w), name
    assert (final / "buckets.png").is_file()
    # the pipeline generates any bucket's shape from the command line
    out = tmp_path / "wide.mp4"
    r = subprocess.run([sys.executable, "-m", "t2v.cli", "generate", "--model", str(tmp_path / "run" / "pipeline"),
                        "--prompt", "a red circle", "--height", "24", "--width", "44", "--steps", "2",
                        "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    with open_video(out) as v:
        assert (v.info.width, v.info.height) == (44, 24)


def test_a_bucketed_run_resumes_exactly_on_two_processes(mixed, tmp_path):
    """2 ranks (gloo): 2 steps, stop, resume to 4 == 4 steps straight, with batches from three buckets."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    launch = [str(Path(sys.executable).parent / "accelerate"), "launch", "--num_processes", "2", "--cpu",
              "--main_process_port", "29531", "train_t2v.py", "--config", TINY]
    weights = []
    for name, parts in (("straight", [[]]), ("resumed", [["train.max_steps=2"], ["--resume", "latest"]])):
        ov = tiny_overrides(mixed, tmp_path / name, **{"train.validation_prompts": "[]"}) + BUCKETS
        for extra in parts:
            r = subprocess.run([*launch, *ov, *extra], capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
            assert r.returncode == 0, r.stderr[-3000:]
        weights.append(load_file(str(next((tmp_path / name / "run" / "pipeline" / "transformer").glob("*.safetensors")))))
    assert "at step 2" in r.stderr and "batches/epoch" in r.stderr
    a, b = weights
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max() for k in a) <= 1e-6
