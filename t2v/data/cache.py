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
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset
from tqdm import tqdm

from t2v.config import RunConfig
from t2v.data.dataset import ManifestClipDataset, ok_records

log = logging.getLogger(__name__)
SHARD = 64  # clips per shard


def _key(d: dict) -> str:
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def latent_key(cfg: RunConfig) -> dict:
    return {"manifest": str(Path(cfg.data.manifest).resolve()), "vae": str(cfg.vae.path), "kind": cfg.vae.kind,
            "scaling": cfg.vae.scaling_factor, "frames": cfg.data.num_frames, "fps": cfg.data.fps,
            "size": cfg.data.size}


def text_key(cfg: RunConfig) -> dict:
    return {"manifest": str(Path(cfg.data.manifest).resolve()), "text": cfg.text.path, "window": cfg.text.window,
            "max_tokens": cfg.text.max_tokens, "field": cfg.data.caption_field,
            **({"layers": cfg.text.layers} if cfg.text.layers != [-1] else {})}  # old caches keep their key


def cache_root(cfg: RunConfig) -> Path:
    return Path(cfg.data.cache_dir) if cfg.data.cache_dir else Path(cfg.data.manifest).parent / "cache"


def cache_dirs(cfg: RunConfig) -> tuple[Path, Path]:
    root = cache_root(cfg)
    return (root / f"latents-{_key(latent_key(cfg))}",
            root / f"text-{cfg.data.caption_field}-{_key(text_key(cfg))}")


def _complete(d: Path, ids: list[str]) -> bool:
    idx = d / "index.json"
    return idx.is_file() and json.loads(idx.read_text()).get("ids") == ids


def cache_exists(cfg: RunConfig) -> bool:
    ids = [r["id"] for r in ok_records(cfg.data.manifest, cfg.data.caption_field)]
    lat, txt = cache_dirs(cfg)
    return _complete(lat, ids) and _complete(txt, ids)


def _build(d: Path, ids: list[str], meta: dict, encode, desc: str) -> None:
    """Write shards of ``encode(list of indices) -> list of tensors``; keep finished shards."""
    d.mkdir(parents=True, exist_ok=True)
    shard_of = {}
    starts = range(0, len(ids), SHARD)
    for s, start in enumerate(tqdm(starts, desc=desc, unit="shard")):
        idx = list(range(start, min(start + SHARD, len(ids))))
        path = d / f"shard-{s:05d}.safetensors"
        for i in idx:
            shard_of[ids[i]] = path.name
        if path.is_file():  # resume
            with safe_open(path, "pt") as f:
                if set(f.keys()) == {ids[i] for i in idx}:
                    continue
        tensors = encode(idx)
        tmp = path.with_suffix(".partial")
        save_file({ids[i]: t.contiguous().cpu() for i, t in zip(idx, tensors)}, str(tmp), metadata={"desc": desc})
        tmp.replace(path)
    (d / "index.json").write_text(json.dumps({"ids": ids, "shard_of": shard_of, "config": meta}, indent=1))


@torch.no_grad()
def build_cache(cfg: RunConfig, vae, text_encoder, batch_size: int = 8) -> tuple[Path, Path]:
    """Encode every ok clip of the manifest (latents) and its caption (text states)."""
    ds = ManifestClipDataset(cfg.data.manifest, cfg.data.caption_field, cfg.data.num_frames, cfg.data.fps,
                             cfg.data.size)
    ids = [r["id"] for r in ds.records]
    lat_dir, txt_dir = cache_dirs(cfg)
    device = next(vae.parameters()).device

    def enc_latents(idx: list[int]) -> list[torch.Tensor]:
        out = []
        for k in range(0, len(idx), batch_size):
            video = torch.stack([ds[i]["video"] for i in idx[k : k + batch_size]]).to(device)
            out += list(vae.encode(video).float())
        return out

    def enc_text(idx: list[int]) -> list[torch.Tensor]:
        out = []
        for k in range(0, len(idx), batch_size):
            caps = [ds.records[i]["captions"][cfg.data.caption_field] for i in idx[k : k + batch_size]]
            states, mask = text_encoder(caps)
            out += [s[m].float() for s, m in zip(states, mask)]
        return out

    if not _complete(lat_dir, ids):
        _build(lat_dir, ids, latent_key(cfg), enc_latents, "caching latents")
    if not _complete(txt_dir, ids):
        _build(txt_dir, ids, text_key(cfg), enc_text, f"caching {cfg.data.caption_field} captions")
    return lat_dir, txt_dir


class CachedDataset(Dataset):
    """``{"id", "latents" (C, F', h, w), "text" (L, D)}`` read lazily from the shards."""

    def __init__(self, cfg: RunConfig):
        self.lat_dir, self.txt_dir = cache_dirs(cfg)
        self.records = ok_records(cfg.data.manifest, cfg.data.caption_field)
        self.ids = [r["id"] for r in self.records]
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
