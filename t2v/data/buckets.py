"""Aspect-ratio × resolution × frame-count buckets (as Open-Sora trains): every clip keeps its shape.

``data.buckets`` lists aspect ratios (``"16:9"``, ``"9:16"``, ``"1:1"``, width:height), sizes (the side of
the square of the same area: 256 → 256² pixels at any ratio) and frame counts. A training sample goes to

- the aspect ratio nearest its video's (in log ratio), resized to cover the bucket's frame and
  centre-cropped by the least amount (no square crop: a 16:9 clip stays 16:9);
- the largest size whose area is not above the video's (no upscaling; the smallest when all are);
- the largest frame count whose span (``frames / data.fps``) fits its duration (the smallest when none).

Heights and widths are multiples of the VAE's spatial factor × the patch size, so every bucket
tokenises without padding. Batches are drawn from one bucket at a time (:class:`BucketBatchSampler`).
With ``data.buckets`` unset, every sample is a ``data.size`` square of ``data.num_frames`` frames, as before.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True, order=True)
class Bucket:
    frames: int
    height: int
    width: int

    @property
    def name(self) -> str:
        return f"{self.width}x{self.height}x{self.frames}"


def parse_ratio(text: str) -> float:
    """``"16:9"`` → 16/9 (width over height); a clear error for anything else."""
    try:
        w, h = (float(x) for x in str(text).split(":"))
        if w > 0 and h > 0:
            return w / h
    except ValueError:
        pass
    raise ValueError(f"data.buckets.aspect_ratios: {text!r} is not 'W:H' with positive W and H (e.g. '16:9')")


def spatial_multiple(cfg) -> int:
    """What heights and widths must be multiples of: the VAE's spatial factor × the DiT's spatial patch."""
    vae = 8 if cfg.vae.kind == "wan" else 2 ** (len(cfg.vae.block_out_channels) - 1)
    return vae * int(cfg.model.patch_size[1] if cfg.model.backbone == "wan" else cfg.model.patch_size[-1])


def enabled(cfg) -> bool:
    b = cfg.data.buckets
    return bool(b.aspect_ratios or len(b.sizes) > 1 or len(b.num_frames) > 1)


def bucket_grid(cfg) -> list[Bucket]:
    """Every bucket of the config, each shape rounded to the spatial multiple."""
    b, m = cfg.data.buckets, spatial_multiple(cfg)
    ratios = [parse_ratio(r) for r in b.aspect_ratios] or [1.0]
    sizes, frames = b.sizes or [cfg.data.size], b.num_frames or [cfg.data.num_frames]
    if any(s < m for s in sizes) or any(f < 1 for f in frames):
        raise ValueError(f"data.buckets: sizes {sizes} must be >= {m} px and num_frames {frames} >= 1")
    out = set()
    for r in ratios:
        for s in sizes:
            h = max(m, round(s / math.sqrt(r) / m) * m)
            w = max(m, round(s * math.sqrt(r) / m) * m)
            out.update(Bucket(f, h, w) for f in frames)
    return sorted(out)


def assign(buckets: list[Bucket], width: int, height: int, duration: float, fps: float) -> Bucket:
    """The bucket of a sample from a ``width`` × ``height`` video spanning ``duration`` seconds."""
    ratio = math.log(width / height)
    best_ratio = min({math.log(b.width / b.height) for b in buckets}, key=lambda r: abs(r - ratio))
    shaped = [b for b in buckets if math.isclose(math.log(b.width / b.height), best_ratio)]
    areas = sorted({b.height * b.width for b in shaped})
    area = max([a for a in areas if a <= width * height] or areas[:1])
    sized = [b for b in shaped if b.height * b.width == area]
    fits = [b for b in sized if b.frames / fps <= duration + 1.0 / fps]
    return max(fits, key=lambda b: b.frames) if fits else min(sized, key=lambda b: b.frames)


def summary(keys: list[Bucket], batch: int) -> str:
    """The table printed at the start of training: samples and full global batches per bucket."""
    counts = Counter(keys)
    lines = [f"{'bucket (WxHxF)':<16}{'samples':>9}{'batches/epoch':>15}{'left over':>11}"]
    for b in sorted(counts):
        lines.append(f"{b.name:<16}{counts[b]:>9}{counts[b] // batch:>15}{counts[b] % batch:>11}")
    return "\n".join(lines)


class BucketBatchSampler:
    """A resumable, rank-sharded batch order in which every global batch comes from one bucket.

    Epoch ``e``: the samples of each bucket in a seeded permutation, cut into global batches of
    ``G = batch_size · world`` (a bucket's remainder waits for a later epoch's permutation), and the
    epoch's batches in a seeded order. Global batch ``j`` is the ``j``-th of that stream; rank ``r`` takes
    its ``batch_size`` slice, so all ranks step on one bucket together and the run's position is one
    integer, as with :class:`~t2v.data.sampler.ResumableBatchSampler`.
    """

    def __init__(self, keys: list, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1,
                 start_batch: int = 0):
        self.bs, self.seed, self.rank, self.world, self.start_batch = batch_size, seed, rank, world, start_batch
        groups: dict = {}
        for i, k in enumerate(keys):
            groups.setdefault(k, []).append(i)
        self.groups = [torch.tensor(groups[k]) for k in sorted(groups)]
        G = batch_size * world
        self.per_epoch = sum(len(g) // G for g in self.groups)
        if self.per_epoch == 0:
            raise ValueError(f"no bucket holds a global batch of {G} samples (train.batch_size {batch_size} × "
                             f"{world} processes): {[len(g) for g in self.groups]} samples per bucket")
        self._epoch: tuple[int, list[torch.Tensor]] | None = None

    def _batches(self, epoch: int) -> list[torch.Tensor]:
        if self._epoch is None or self._epoch[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            G = self.bs * self.world
            batches = []
            for idx in self.groups:
                perm = idx[torch.randperm(len(idx), generator=g)]
                batches += [perm[k:k + G] for k in range(0, len(perm) - G + 1, G)]
            order = torch.randperm(len(batches), generator=g).tolist()
            self._epoch = (epoch, [batches[o] for o in order])
        return self._epoch[1]

    def batch(self, j: int) -> list[int]:
        """This rank's indices of global batch ``j``."""
        epoch, k = divmod(j, self.per_epoch)
        return self._batches(epoch)[k][self.rank * self.bs:(self.rank + 1) * self.bs].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        j = self.start_batch
        while True:
            yield self.batch(j)
            j += 1
