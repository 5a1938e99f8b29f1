"""t2v data: the VAE, its training, the clip dataset, the latent/text cache and its workers, the batch sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_overrides

from t2v.config import load_config
from t2v.data.cache import CachedDataset, build_cache, cache_dirs, cache_exists
from t2v.data.dataset import ManifestClipDataset
from t2v.data.sampler import ResumableBatchSampler
from t2v.models.build import build_text_encoder, build_vae
from t2v.models.vae import VideoVAE, build_tiny_kl

TINY = "t2v/presets/tiny.yaml"



# ----------------------------------------------------------------------------- VAE, data, cache
def test_vae_round_trip_shapes():
    vae = VideoVAE(build_tiny_kl(4, [8, 16], 32))
    video = torch.rand(2, 3, 4, 32, 32) * 2 - 1
    z = vae.encode(video)
    assert z.shape == (2, 4, 4, 16, 16) and vae.spatial_factor == 2
    assert vae.decode(z).shape == video.shape


def test_untrained_vae_is_reproducible_and_leaves_the_global_rng_alone(tmp_path):
    cfg = load_config(TINY, ["vae.path=null", "data.size=32", "vae.block_out_channels=[8, 16]"])
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, b = build_vae(cfg), build_vae(cfg)
    assert torch.equal(torch.rand(3), expected)  # the caller's random stream goes on as if untouched
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_dataset_and_cache_equal_online_encoding(tiny_manifest, tmp_path):
    cfg = load_config(TINY, tiny_overrides(tiny_manifest, tmp_path))
    ds = ManifestClipDataset(tiny_manifest, "dense", 4, 2.0, 32)
    item = ds[3]
    assert item["video"].shape == (3, 4, 32, 32) and -1 <= item["video"].min() and item["video"].max() <= 1
    assert item["caption"] == ds.records[3]["captions"]["dense"]
    # the manifest's recorded size spares a probe; probing the file gives the same frames
    from clipio.manifest import resolve_video
    from t2v.data.dataset import decode_clip, to_tensor

    r = ds.records[3]
    probed = decode_clip(resolve_video(tiny_manifest, r), r["start"], r["end"], 4, 2.0, 32)
    torch.testing.assert_close(to_tensor(probed), item["video"])
    text_encoder, vae = build_text_encoder(cfg), build_vae(cfg)
    assert not cache_exists(cfg)
    build_cache(cfg, vae, text_encoder)
    assert cache_exists(cfg)
    cached = CachedDataset(cfg)[3]
    assert cached["id"] == item["id"]
    # equal up to float32 batching effects (the cache encodes 8 clips per call, this one alone)
    torch.testing.assert_close(cached["latents"], vae.encode(item["video"][None])[0], atol=1e-3, rtol=1e-3)
    states, mask = text_encoder([item["caption"]])
    torch.testing.assert_close(cached["text"], states[0][mask[0]], atol=1e-4, rtol=1e-4)
    # another caption field is a different cache; an unknown field is a clear error
    short = load_config(TINY, tiny_overrides(tiny_manifest, tmp_path, **{"data.caption_field": "short"}))
    assert not cache_exists(short)
    with pytest.raises(ValueError, match="caption_field 'long' is missing"):
        ManifestClipDataset(tiny_manifest, "long", 4, 2.0, 32)


def test_cache_workers_share_the_shards_and_the_last_one_completes_it(tiny_manifest, tmp_path, monkeypatch,
                                                                        capsys):
    """`t2v cache --num-shards 2 --shard-id K` (or the RANK/WORLD_SIZE of a launch): each worker encodes every
    other cache shard; the cache is usable once both are done, and equals one worker's."""
    import t2v.data.cache as cache_mod
    from t2v.cli import main as t2v_main

    monkeypatch.setattr(cache_mod, "SHARD", 2)  # 8 clips -> 4 cache shards
    ov = tiny_overrides(tiny_manifest, tmp_path / "two")
    cfg = load_config(TINY, ov)
    assert t2v_main(["cache", "--config", TINY, "--num-shards", "2", "--shard-id", "1", "--device", "cpu", *ov]) == 0
    assert "worker 1 of 2 done" in capsys.readouterr().out and not cache_exists(cfg)
    lat, _ = cache_dirs(cfg)
    assert sorted(p.name for p in lat.glob("shard-*")) == ["shard-00001.safetensors", "shard-00003.safetensors"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")  # the other worker, as a launcher would start it
    assert t2v_main(["cache", "--config", TINY, *ov]) == 0
    assert "cache ready" in capsys.readouterr().out and cache_exists(cfg)
    one = load_config(TINY, tiny_overrides(tiny_manifest, tmp_path / "one"))
    build_cache(one, build_vae(one), build_text_encoder(one))
    for i in (0, 3, 6):
        a, b = CachedDataset(cfg)[i], CachedDataset(one)[i]
        assert a["id"] == b["id"] and torch.equal(a["latents"], b["latents"]) and torch.equal(a["text"], b["text"])
    with pytest.raises(ValueError, match="--shard-id 2: must be in 0..1"):
        build_cache(cfg, None, None, num_shards=2, shard_id=2)


def test_batch_sampler_resumes_and_shards():
    full = ResumableBatchSampler(10, 3, seed=1)
    it = iter(full)
    first = [next(it) for _ in range(7)]  # crosses epoch boundaries
    resumed = iter(ResumableBatchSampler(10, 3, seed=1, start_batch=4))
    assert [next(resumed) for _ in range(3)] == first[4:]
    epoch0 = sum(first[:3], []) + first[3][:1]
    assert sorted(epoch0) == list(range(10))  # each epoch is a permutation
    r0, r1 = ResumableBatchSampler(10, 2, seed=1, rank=0, world=2), ResumableBatchSampler(10, 2, 1, 1, 2)
    assert set(r0.batch(0)).isdisjoint(r1.batch(0))


def test_train_vae_saves_a_loadable_diffusers_folder(tiny_manifest, tmp_path):
    from clipio.pixels import to_signed
    from t2v.vae_train import foreground_weight, load_frames, train_vae

    res = train_vae(tiny_manifest, tmp_path / "vae", size=32, steps=60, batch_size=8, block_out_channels=(8, 16))
    vae = VideoVAE.from_pretrained(str(tmp_path / "vae"))
    assert vae.scale == pytest.approx(res["scaling_factor"]) and 0 <= res["detector_agreement"] <= 1
    # it learned something: reconstructions beat those of the same VAE untrained
    x = to_signed(load_frames(tiny_manifest, 32)[:64]).permute(0, 3, 1, 2)  # (N, 3, H, W)
    torch.manual_seed(0)
    raw = build_tiny_kl(4, (8, 16), 32)
    with torch.no_grad():
        mse_raw = ((raw.decode(raw.encode(x).latent_dist.mode()).sample - x) ** 2).mean()
        mse = ((vae.vae.decode(vae.vae.encode(x).latent_dist.mode()).sample - x) ** 2).mean()
    assert mse < 0.7 * mse_raw
    x = torch.full((1, 3, 8, 8), -1.0)
    x[:, 0, 2:4, 2:4] = 1.0  # a red 2×2 square on black
    w = foreground_weight(x, 20.0)
    assert w[0, 0, 2, 2] == 21.0 and w[0, 0, 0, 0] == 1.0


def test_vae_trains_on_random_windows_and_is_scored_on_whole_frames(tiny_manifest, tmp_path):
    from t2v.vae_train import random_crops, train_vae

    x = torch.arange(4 * 3 * 32 * 32, dtype=torch.float32).reshape(4, 3, 32, 32)
    crops = random_crops(x, 16, torch.Generator().manual_seed(0))
    assert crops.shape == (4, 3, 16, 16)
    for b in range(4):  # each window is a slice of its own frame, at the offset its first pixel names
        top, left = divmod(int(crops[b, 0, 0, 0] - x[b, 0, 0, 0]), 32)
        assert torch.equal(crops[b], x[b, :, top : top + 16, left : left + 16])
    res = train_vae(tiny_manifest, tmp_path / "vae", size=32, steps=20, batch_size=8, block_out_channels=(8, 16),
                    crop=16)
    assert VideoVAE.from_pretrained(str(tmp_path / "vae")).vae.config.sample_size == 32 and res["psnr"] > 0
    with pytest.raises(ValueError, match="crop must be a multiple of 8"):
        train_vae(tiny_manifest, tmp_path / "bad", size=32, steps=3, crop=12)


def test_tiny_preset_loads_the_packaged_synthworld_vae_which_keeps_what_the_detector_reads():
    """vae.path: synthworld-48px is package data (t2v/assets/), trained on the demo's clips: on held-out scenes of the
    demo's world its reconstructions show the same objects to the detector, where an untrained VAE's do not."""
    from einops import rearrange

    from clipio.pixels import to_signed, to_uint8
    from synthworld.dataset import DEMO_WORLD, heldout_specs
    from synthworld.detect import detect_video
    from synthworld.render import render
    from t2v.models.vae import resolve_vae_path

    cfg = load_config("tiny")
    assert cfg.vae.path == "synthworld-48px" and (Path(resolve_vae_path(cfg.vae.path)) / "config.json").is_file()
    vae = build_vae(cfg)
    assert (vae.latent_channels, vae.spatial_factor) == (cfg.vae.latent_channels, 4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = VideoVAE(build_tiny_kl(4, cfg.vae.block_out_channels, 48), vae.scale)

    def objects(video: torch.Tensor) -> list:  # (3, F, H, W) in [-1, 1]
        u8 = to_uint8(rearrange(video, "c f h w -> f h w c"))
        return sorted((t.colour, t.shape) for t in detect_video(u8, fps=2.0).tracks)

    same, same_untrained, mse = 0, 0, []
    for spec in heldout_specs(10, 4.0, world=DEMO_WORLD):
        x = rearrange(to_signed(render(spec, size=48, fps=2.0)), "f h w c -> 1 c f h w")  # (1, 3, 8, 48, 48)
        rec, rec_untrained = vae.decode(vae.encode(x)), untrained.decode(untrained.encode(x))
        same += objects(rec[0]) == objects(x[0])
        same_untrained += objects(rec_untrained[0]) == objects(x[0])
        mse.append(float(((rec - x) ** 2).mean()) / 4)  # in [0, 1] units
    psnr = 10 * np.log10(1 / np.mean(mse))
    assert same >= 8 and same_untrained <= 2 and psnr > 30, (same, same_untrained, psnr)


def test_the_run_vae_stage_uses_the_configs_vae_unless_told_to_train_one(tiny_manifest, tmp_path):
    """steps 0: the packaged VAE's record, nothing trained; a crop without steps would be ignored, so it is refused;
    steps > 0 trains into vae.path once (a rerun reuses it)."""
    from t2v.vae_train import run_vae

    assert run_vae(load_config("tiny"), tiny_manifest, steps=0)["steps"] == 1000  # the packaged VAE's record
    with pytest.raises(ValueError, match="--vae-crop 16 only applies to a VAE trained here"):
        run_vae(load_config("tiny"), tiny_manifest, steps=0, crop=16)
    with pytest.raises(ValueError, match="vae.path is not set"):
        run_vae(load_config(TINY, ["vae.path=null"]), tiny_manifest, steps=3)
    cfg = load_config(TINY, [f"vae.path={tmp_path / 'vae'}", "data.size=32", "vae.block_out_channels=[8, 16]"])
    with pytest.raises(ValueError, match="steps must be >= 3"):
        run_vae(cfg, tiny_manifest, steps=2)
    first = run_vae(cfg, tiny_manifest, steps=3)
    assert first["steps"] == 3 and run_vae(cfg, tiny_manifest, steps=5) == first  # kept, not retrained


def test_vae_frames_need_no_captions(tiny_manifest, tmp_path):
    """A manifest of uncaptioned clips (e.g. straight after `captioner split`) is enough to train a VAE."""
    import json

    from t2v.vae_train import load_frames

    recs = [json.loads(line) for line in tiny_manifest.read_text().splitlines()]
    bare = tmp_path / "manifest.jsonl"
    bare.write_text("".join(json.dumps({**{k: v for k, v in r.items() if k != "captions"},
                                        "video": str(tiny_manifest.parent / r["video"])}) + "\n" for r in recs))
    frames = load_frames(bare, 32, per_clip=2)
    assert frames.shape == (2 * len(recs), 32, 32, 3) and frames.dtype == np.uint8
