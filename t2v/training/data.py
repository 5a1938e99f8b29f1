"""Training data: the data set (cached latents when the cache exists for this config, else online
decoding), the resumable loader and the batch → (latents, text, mask) encoding with caption dropout."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from t2v.config import RunConfig
from t2v.data import buckets
from t2v.data.cache import CachedDataset, cache_exists, manifest_dataset
from t2v.data.sampler import ResumableBatchSampler, collate_cached, collate_online, pad_text

log = logging.getLogger(__name__)


def build_dataset(cfg: RunConfig, verbose: bool = True, world_size: int = 1) -> tuple[Dataset, bool]:
    """(data set, whether it serves cached latents and text)."""
    use_cache = cfg.data.use_cache and cache_exists(cfg)
    dataset = CachedDataset(cfg) if use_cache else manifest_dataset(cfg)
    if verbose:
        log.info("data: %d samples (clips or their windows) from %s (%s, caption_field=%s)", len(dataset),
                 cfg.data.manifest, "cached latents" if use_cache else "online decoding", cfg.data.caption_field)
        if buckets.enabled(cfg):
            log.info("buckets (every batch from one; batch %d x %d processes):\n%s", cfg.train.batch_size,
                     world_size, buckets.summary([x["bucket"] for x in dataset.samples],
                                                 cfg.train.batch_size * world_size))
    return dataset, use_cache


def batches(dataset: Dataset, use_cache: bool, cfg: RunConfig, rank: int, world: int, step: int) -> Iterator[dict]:
    """This rank's endless batch stream, positioned at optimiser step ``step`` (exact resume)."""
    if buckets.enabled(cfg):
        sampler = buckets.BucketBatchSampler([x["bucket"] for x in dataset.samples], cfg.train.batch_size,
                                             cfg.train.seed, rank, world, start_batch=step * cfg.train.grad_accum)
    else:
        sampler = ResumableBatchSampler(len(dataset), cfg.train.batch_size, cfg.train.seed, rank, world,
                                        start_batch=step * cfg.train.grad_accum)
    # own generator: creating the loader's iterator must not draw from the (restored) global RNG
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.data.num_workers,
                        collate_fn=collate_cached if use_cache else collate_online,
                        generator=torch.Generator().manual_seed(cfg.train.seed))
    return iter(loader)


def encode_batch(batch: dict, vae, text_encoder, empty_text: torch.Tensor, device, use_cache: bool,
                 p: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latents x0 (B, C, F, h, w), text (B, L, D), mask (B, L); applies caption dropout with probability p
    (``empty_text`` (L, D): the empty prompt's states, for cached text)."""
    if use_cache:
        x0 = batch["latents"].to(device)
        seqs = [t[m] for t, m in zip(batch["text"], batch["text_mask"])]
        drop = (torch.rand(len(seqs)) < p).tolist()
        text, mask = pad_text([empty_text if d else s for s, d in zip(seqs, drop)])
        return x0, text.to(device), mask.to(device)
    with torch.no_grad():
        x0 = vae.encode(batch["video"].to(device))
        drop = (torch.rand(len(batch["caption"])) < p).tolist()
        text, mask = text_encoder(["" if d else c for c, d in zip(batch["caption"], drop)])
    return x0, text.to(device), mask.to(device)
