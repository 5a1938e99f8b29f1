"""Exponential moving average of the transformer's weights, and the one place that swaps them in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from t2v.training.optim import trainable_parameters


def build_ema(decay: float, model: nn.Module, acc, register: bool = True):
    """An ``EMAModel`` of the trainable parameters (with ``model.lora``: the adapters only) on the accelerator's
    device, saved and loaded with every checkpoint (``register``: through accelerate's state); None when ``decay``
    is 0. Call before ``acc.prepare`` (it tracks the unwrapped parameters) and after sharding (the averages are then
    sharded like the parameters)."""
    if decay <= 0:
        return None
    from diffusers.training_utils import EMAModel

    ema = EMAModel(trainable_parameters(model), decay=decay)
    ema.to(acc.device)
    if register:
        acc.register_for_checkpointing(ema)
    return ema


@contextmanager
def ema_weights(ema, model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block ``model`` holds the EMA weights; after it (also on an error) its trained weights
    again. With ``ema=None`` the model is used as it is."""
    if ema is None:
        yield model
        return
    params = trainable_parameters(model)
    ema.store(params)
    ema.copy_to(params)
    try:
        yield model
    finally:
        ema.restore(params)


@contextmanager
def sampling_weights(run) -> Iterator[nn.Module | None]:
    """The model to sample or export from (EMA weights when EMA is on), on the main process; None elsewhere.

    Unsharded runs: the trained module itself, with the EMA weights swapped in for the block. Sharded runs
    (``train.parallel: fsdp``): every rank must enter — the full state dict is gathered from all shards — and
    the main process gets an unsharded copy of the model holding it."""
    if not run.sharded:
        if not run.main:
            yield None
            return
        with ema_weights(run.ema, run.unwrapped) as model:
            yield model
        return
    from t2v.models.backbone import T2VTransformer
    from t2v.training.parallel import full_state_dict

    with ema_weights(run.ema, run.model):
        state = full_state_dict(run.model)
    if not run.main:
        yield None
        return
    # the config's own arguments (from_config would drop dit_config: diffusers lists it in _use_default_values)
    plain = T2VTransformer(**{k: v for k, v in run.model.config.items() if not k.startswith("_")})
    if run.cfg.model.lora.rank > 0:  # the same adapters, to take the gathered LoRA weights
        from t2v.models.lora import add_lora

        add_lora(plain, run.cfg.model.lora)
    plain.load_state_dict(state)
    yield plain.to(run.acc.device)
