"""A resumable, rank-sharded batch order, and the collate functions.

The global sample stream is the concatenation of per-epoch permutations (seeded by ``seed`` and the
epoch). Global batch ``j`` is stream items ``[j·G, (j+1)·G)`` with ``G = batch_size · world``; rank
``r`` takes its ``batch_size`` slice. So the position of a run is one integer (batches done), and
resuming from it continues exactly the same order, on any number of processes with the same G.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class ResumableBatchSampler:
    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1, start_batch: int = 0):
        if n < 1:
            raise ValueError("dataset is empty")
        self.n, self.bs, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.start_batch = start_batch
        self._perm_cache: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perm_cache:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perm_cache = {epoch: torch.randperm(self.n, generator=g)}
        return self._perm_cache[epoch]

    def _take(self, start: int, count: int) -> list[int]:
        out = []
        while count > 0:
            epoch, off = divmod(start, self.n)
            k = min(count, self.n - off)
            out += self._perm(epoch)[off : off + k].tolist()
            start, count = start + k, count - k
        return out

    def batch(self, j: int) -> list[int]:
        """This rank's indices of global batch ``j``."""
        G = self.bs * self.world
        return self._take(j * G + self.rank * self.bs, self.bs)

    def __iter__(self) -> Iterator[list[int]]:
        j = self.start_batch
        while True:
            yield self.batch(j)
            j += 1


def pad_text(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (L_i, D) → states (B, L, D) zero-padded, mask (B, L)."""
    L = max(s.shape[0] for s in seqs)
    states = seqs[0].new_zeros((len(seqs), L, seqs[0].shape[-1]))
    mask = torch.zeros((len(seqs), L), dtype=torch.bool)
    for i, s in enumerate(seqs):
        states[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = True
    return states, mask


def collate_cached(items: list[dict]) -> dict:
    text, mask = pad_text([it["text"] for it in items])
    return {"id": [it["id"] for it in items], "latents": torch.stack([it["latents"] for it in items]),
            "text": text, "text_mask": mask}


def collate_online(items: list[dict]) -> dict:
    return {"id": [it["id"] for it in items], "video": torch.stack([it["video"] for it in items]),
            "caption": [it["caption"] for it in items]}
