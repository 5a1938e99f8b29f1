"""Exponential moving average of the transformer's weights, and the one place that swaps them in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


def build_ema(decay: float, model: nn.Module, acc):
    """An ``EMAModel`` on the accelerator's device, saved and loaded with every checkpoint; None when
    ``decay`` is 0. Call before ``acc.prepare`` (it tracks the unwrapped parameters)."""
    if decay <= 0:
        return None
    from diffusers.training_utils import EMAModel

    from t2v.models.backbone import T2VTransformer

    ema = EMAModel(model.parameters(), decay=decay, model_cls=T2VTransformer, model_config=model.config)
    ema.to(acc.device)
    acc.register_for_checkpointing(ema)
    return ema


@contextmanager
def ema_weights(ema, model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block ``model`` holds the EMA weights; after it (also on an error) its trained weights
    again. With ``ema=None`` the model is used as it is."""
    if ema is None:
        yield model
        return
    ema.store(model.parameters())
    ema.copy_to(model.parameters())
    try:
        yield model
    finally:
        ema.restore(model.parameters())
