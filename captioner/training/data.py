"""A manifest's annotations as a map-style dataset of tokenised conversations, and the mode-mix sampler.

Item ``i`` is one conversation (record, mode, index within the record): it is built, decoded and tokenised
in ``__getitem__`` (so DataLoader workers share the work and a corpus never sits in memory), with the
frames of the last ``data.cache_clips`` clips kept. :class:`ModeMixSampler` draws an epoch as the
config's mode mix says — each mode's conversations ``floor(w)`` times plus a random ``w - floor(w)``
share — and cuts it into batches of one mode each (a summary's ~550 tokens would otherwise pad nearly
every batch of the miniature: 0.29 s for a batch of 16 fast conversations, ~1.1 s a step in mixed
batches), in an order fixed by (seed, epoch),
so a resumed run sees the batches it would have seen.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Any

import numpy as np
import torch

from captioner.training.conversations import (
    MODES,
    Conversation,
    FrameSource,
    conversation,
    count_items,
    tokenize,
)


class AnnotationDataset(torch.utils.data.Dataset):
    """Every conversation the records can teach, in the modes with a weight > 0."""

    def __init__(self, records: list[dict[str, Any]], modes: tuple[str, ...], prompts, frames: FrameSource,
                 processor, eos_id: int, max_length: int, prepare_image=None, emphasis=None):
        self.records, self.prompts, self.frames, self.emphasis = records, prompts, frames, emphasis
        self.processor, self.eos_id, self.max_length, self.prepare_image = processor, eos_id, max_length, prepare_image
        self.items: list[tuple[int, str, int]] = [(ri, m, k) for m in modes for ri, r in enumerate(records)
                                                  for k in range(count_items(r, m))]
        if not self.items:
            raise ValueError(f"no training conversations: none of the {len(records)} ok records can teach the "
                             f"modes {list(modes)} (sliding/summary need key-frame captions, all need captions.dense)")

    def __len__(self) -> int:
        return len(self.items)

    def mode_of(self, i: int) -> str:
        return self.items[i % len(self.items)][1]

    def conversation(self, i: int) -> Conversation:
        """Conversation ``i``; ``len(self) + i``: the same of the clip's mirror image (``data.hflip``)."""
        ri, mode, k = self.items[i % len(self.items)]
        return conversation(self.records[ri], mode, k, self.prompts, self.frames, mirror=i >= len(self.items))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return tokenize(self.conversation(i), self.processor, self.eos_id, self.max_length, self.prepare_image,
                        self.emphasis)

    def counts(self) -> dict[str, int]:
        return dict(Counter(m for _, m, _ in self.items))


class ModeMixSampler(torch.utils.data.Sampler):
    """A batch sampler: one epoch of a dataset's indices under a mode mix, in batches of ``batch_size`` from one
    mode each (a mode's last partial batch is dropped), batches shuffled; ``set_epoch`` changes the draw.
    ``hflip``: the share of conversations drawn as their clip's mirror image (index ``len(dataset) + i``)."""

    def __init__(self, dataset: AnnotationDataset, weights: dict[str, float], batch_size: int = 1, seed: int = 0,
                 hflip: float = 0.0):
        if not 0.0 <= hflip <= 1.0:
            raise ValueError(f"data.hflip must be a probability in [0, 1], not {hflip}")
        self.seed, self.epoch, self.batch_size, self.hflip, self.size = seed, 0, batch_size, hflip, len(dataset)
        self.by_mode = {m: [i for i in range(len(dataset)) if dataset.mode_of(i) == m] for m in MODES}
        self.weights = {m: float(weights.get(m, 0.0)) for m in MODES}

    def _take(self, m: str) -> tuple[int, int]:
        n, w = len(self.by_mode[m]), self.weights[m]
        return int(math.floor(w)), int(round((w - math.floor(w)) * n))

    def drawn(self, m: str) -> int:
        """Conversations of mode ``m`` drawn per epoch."""
        whole, part = self._take(m)
        return whole * len(self.by_mode[m]) + part

    def __len__(self) -> int:
        return sum(self.drawn(m) // self.batch_size for m in MODES)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        batches: list[list[int]] = []
        for m in MODES:
            whole, part = self._take(m)
            idx = self.by_mode[m]
            out = idx * whole
            if part:
                out += [idx[j] for j in rng.choice(len(idx), size=part, replace=False)]
            out = [out[j] for j in rng.permutation(len(out))]
            if self.hflip > 0:  # drawn as its clip's mirror image: index + len(dataset)
                out = [i + self.size if f else i for i, f in zip(out, rng.random(len(out)) < self.hflip)]
            batches += [out[k:k + self.batch_size] for k in range(0, len(out) - self.batch_size + 1, self.batch_size)]
        return iter([batches[j] for j in rng.permutation(len(batches))])


def split_validation(records: list[dict[str, Any]], val_records: list[dict[str, Any]] | None,
                     val_clips: int) -> tuple[list[dict], list[dict]]:
    """(train, validation): the validation manifest's records, or the last ``val_clips`` records (held out)."""
    if val_records is not None:
        held = {r["id"] for r in val_records}
        return [r for r in records if r["id"] not in held], val_records
    if val_clips >= len(records):
        raise ValueError(f"data.val_clips={val_clips} would leave none of the {len(records)} records to train on")
    cut = len(records) - val_clips
    return records[:cut], records[cut:]


def mode_weights(modes) -> dict[str, float]:
    """The config's mode mix as a dict."""
    return {k: float(v) for k, v in dataclasses.asdict(modes).items()}
