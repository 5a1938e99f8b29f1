"""Precomputed VAE latents and text embeddings, in safetensors shards keyed by clip id.

Frozen encoders make every epoch re-encode the same clips and captions; the cache does it once::

    <cache_dir>/latents-<key>/shard-00000.safetensors   {"<clip id>": (C, F', h, w)}
    <cache_dir>/text-<field>-<key>/shard-00000.safetensors
                                    {"<clip id>": (L, D)}  (only the real tokens; the mask is implied)
    .../index.json                   {"ids": [...], "shard_of": {...}, "config": {...}}

``<key>`` hashes everything that changes the values (VAE folder and scaling, frames, fps, size;
text encoder folder, window, cap, caption field), so a changed config never reads stale entries.
An interrupted build resumes: finished shards are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset
from tqdm import tqdm

from t2v.config import RunConfig
from t2v.data.dataset import ManifestClipDataset, manifest_samples
from t2v.models.build import text_dtype

log = logging.getLogger(__name__)
SHARD = 64  # clips per shard


def _key(d: dict) -> str:
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def latent_key(cfg: RunConfig) -> dict:
    from t2v.data.buckets import enabled

    return {"manifest": str(Path(cfg.data.manifest).resolve()), "vae": str(cfg.vae.path), "kind": cfg.vae.kind,
            "scaling": cfg.vae.scaling_factor, "frames": cfg.data.num_frames, "fps": cfg.data.fps,
            "size": cfg.data.size, **({"buckets": asdict(cfg.data.buckets)} if enabled(cfg) else {})}


def text_key(cfg: RunConfig) -> dict:
    return {"manifest": str(Path(cfg.data.manifest).resolve()), "text": cfg.text.path, "window": cfg.text.window,
            "max_tokens": cfg.text.max_tokens, "field": cfg.data.caption_field,
            **({"layers": cfg.text.layers} if cfg.text.layers != [-1] else {}),  # old caches keep their key
            **({"dtype": str(text_dtype(cfg))} if text_dtype(cfg) != torch.float32 else {})}


def cache_root(cfg: RunConfig) -> Path:
    return Path(cfg.data.cache_dir) if cfg.data.cache_dir else Path(cfg.data.manifest).parent / "cache"


def cache_dirs(cfg: RunConfig) -> tuple[Path, Path]:
    root = cache_root(cfg)
    return (root / f"latents-{_key(latent_key(cfg))}",
            root / f"text-{cfg.data.caption_field}-{_key(text_key(cfg))}")


def _complete(d: Path, ids: list[str]) -> bool:
    idx = d / "index.json"
    return idx.is_file() and json.loads(idx.read_text()).get("ids") == ids


def config_samples(cfg: RunConfig) -> list[dict]:
    """The training samples of a config: one per clip, or one per window of a clip longer than the window,
    each with its bucket when ``data.buckets`` is set."""
    from t2v.data.buckets import bucket_grid, enabled

    d = cfg.data
    return manifest_samples(Path(d.manifest), d.caption_field, d.num_frames, d.fps, d.window_captions,
                            bucket_grid(cfg) if enabled(cfg) else None)[1]


def sample_ids(cfg: RunConfig) -> list[str]:
    return [s["id"] for s in config_samples(cfg)]


def cache_exists(cfg: RunConfig) -> bool:
    ids = sample_ids(cfg)
    lat, txt = cache_dirs(cfg)
    return _complete(lat, ids) and _complete(txt, ids)


def _shard_done(path: Path, want: set[str]) -> bool:
    if not path.is_file():
        return False
    with safe_open(path, "pt") as f:
        return set(f.keys()) == want


def _build(d: Path, ids: list[str], meta: dict, encode, desc: str, num_shards: int = 1, shard_id: int = 0) -> bool:
    """Write the shards of ``encode(list of indices) -> list of tensors`` that belong to worker ``shard_id`` of
    ``num_shards`` (cache shard s goes to worker s mod num_shards); keep finished shards. The worker that finds
    every shard written writes ``index.json`` (which makes the cache usable). Returns whether it did."""
    d.mkdir(parents=True, exist_ok=True)
    shard_of, mine = {}, []
    for s, start in enumerate(range(0, len(ids), SHARD)):
        idx = list(range(start, min(start + SHARD, len(ids))))
        path = d / f"shard-{s:05d}.safetensors"
        shard_of.update({ids[i]: path.name for i in idx})
        if s % num_shards == shard_id:
            mine.append((idx, path))
    for idx, path in tqdm(mine, desc=desc + (f" (worker {shard_id} of {num_shards})" if num_shards > 1 else ""),
                          unit="shard"):
        if _shard_done(path, {ids[i] for i in idx}):  # resume
            continue
        tensors = encode(idx)
        tmp = path.with_suffix(f".partial-{shard_id}")
        save_file({ids[i]: t.contiguous().cpu() for i, t in zip(idx, tensors)}, str(tmp), metadata={"desc": desc})
        tmp.replace(path)
    by_shard: dict[str, set[str]] = {}
    for cid, name in shard_of.items():
        by_shard.setdefault(name, set()).add(cid)
    if not all(_shard_done(d / name, want) for name, want in by_shard.items()):
        return False  # other workers' shards still missing
    tmp = d / f"index.json.partial-{shard_id}"
    tmp.write_text(json.dumps({"ids": ids, "shard_of": shard_of, "config": meta}, indent=1))
    tmp.replace(d / "index.json")
    return True


def manifest_dataset(cfg: RunConfig) -> ManifestClipDataset:
    """The online-decoding dataset of a config (windows and buckets included)."""
    from t2v.data.buckets import bucket_grid, enabled

    d = cfg.data
    return ManifestClipDataset(d.manifest, d.caption_field, d.num_frames, d.fps, d.size, d.window_captions,
                               bucket_grid(cfg) if enabled(cfg) else None)


@torch.no_grad()
def build_cache(cfg: RunConfig, vae, text_encoder, batch_size: int = 8, num_shards: int = 1,
                shard_id: int = 0) -> tuple[Path, Path]:
    """Encode every ok clip of the manifest (latents) and its caption (text states), on the device the VAE
    and text encoder are on. With ``num_shards`` > 1 this worker encodes only its share (processes on
    several GPUs or nodes: ``accelerate launch -m t2v.cli cache``, or ``--num-shards/--shard-id``); the cache
    is ready when the last worker is done (rerun any worker to resume)."""
    if not 0 <= shard_id < num_shards:
        raise ValueError(f"--shard-id {shard_id}: must be in 0..{num_shards - 1} (--num-shards {num_shards})")
    ds = manifest_dataset(cfg)
    ids = [s["id"] for s in ds.samples]
    lat_dir, txt_dir = cache_dirs(cfg)
    device = next(vae.parameters()).device

    def enc_latents(idx: list[int]) -> list[torch.Tensor]:
        out: list[tuple[int, torch.Tensor]] = []
        for k in range(0, len(idx), batch_size):  # one bucket (shape) per encoder call
            chunk = idx[k : k + batch_size]
            for shape in dict.fromkeys(ds.samples[i].get("bucket") for i in chunk):
                same = [i for i in chunk if ds.samples[i].get("bucket") == shape]
                got = vae.encode(torch.stack([ds[i]["video"] for i in same]).to(device)).float()
                out += list(zip(same, got))
        by_index = dict(out)
        return [by_index[i] for i in idx]

    def enc_text(idx: list[int]) -> list[torch.Tensor]:
        out = []
        for k in range(0, len(idx), batch_size):
            caps = [ds.samples[i]["caption"] for i in idx[k : k + batch_size]]
            states, mask = text_encoder(caps)
            out += [s[m].float() for s, m in zip(states, mask)]
        return out

    if not _complete(lat_dir, ids):
        _build(lat_dir, ids, latent_key(cfg), enc_latents, "caching latents", num_shards, shard_id)
    if not _complete(txt_dir, ids):
        _build(txt_dir, ids, text_key(cfg), enc_text, f"caching {cfg.data.caption_field} captions", num_shards,
               shard_id)
    return lat_dir, txt_dir


class CachedDataset(Dataset):
    """``{"id", "latents" (C, F', h, w), "text" (L, D)}`` read lazily from the shards."""

    def __init__(self, cfg: RunConfig):
        self.lat_dir, self.txt_dir = cache_dirs(cfg)
        self.samples = config_samples(cfg)
        self.ids = [s["id"] for s in self.samples]
        for d in (self.lat_dir, self.txt_dir):
            if not _complete(d, self.ids):
                raise FileNotFoundError(f"cache {d} is missing or stale; run `t2v cache --config …` first")
        self._lat_index = json.loads((self.lat_dir / "index.json").read_text())["shard_of"]
        self._txt_index = json.loads((self.txt_dir / "index.json").read_text())["shard_of"]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        cid = self.ids[i]
        with safe_open(self.lat_dir / self._lat_index[cid], "pt") as f:
            lat = f.get_tensor(cid)
        with safe_open(self.txt_dir / self._txt_index[cid], "pt") as f:
            txt = f.get_tensor(cid)
        return {"id": cid, "latents": lat, "text": txt}
