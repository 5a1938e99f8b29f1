"""Sharded data parallel (``train.parallel: fsdp``): torch's FSDP2 over a device mesh, one shard group per
transformer block, with sharded checkpoints (``torch.distributed.checkpoint``) and full state dicts gathered
for validation and export.

Why torch's own FSDP2 and not accelerate's FSDP plugin: accelerate (1.15) turns FSDP on only for GPU device
types — with ``use_cpu`` it silently trains undistributed — and its auto-wrap policy takes a list of class
names that must all exist in the model. ``fully_shard`` over a ``DeviceMesh`` runs the same code on two CPU
ranks (gloo) as on eight GPUs (NCCL), so the path users run is the path the tests run; torchtitan and
finetrainers' ``ptd`` backend make the same choice. accelerate still launches the processes, sets up the
process group, logs and prepares the optimiser and schedule; the model is never handed to ``acc.prepare``.

- Blocks are found in the model (:func:`transformer_blocks`), not named in a config.
- ``train.fsdp.replicate`` > 1 is HSDP: shards within groups of ``world / replicate`` ranks (a node),
  replicas across them (a 2-D mesh ``("replicate", "shard")``).
- ``train.fsdp.reshard_after_forward: false`` keeps each block's parameters gathered from the forward to the
  backward pass (ZeRO-2-like: less communication, more memory).
- Mixed precision bf16: parameters cast to bf16 for compute, gradients reduced in fp32, fp32 master weights.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks to shard one by one: the members of every ``nn.ModuleList`` whose modules are all of
    one class (Wan's ``blocks``; Latte's spatial and temporal blocks; the text adapter's layers)."""
    candidates = []
    for m in model.modules():
        if isinstance(m, nn.ModuleList) and len(m) > 0 and len({type(b) for b in m}) == 1:
            candidates += [b for b in m if any(p.requires_grad for p in b.parameters())]
    inner = {id(d) for b in candidates for d in b.modules() if d is not b}  # lists inside a block go with it
    return [b for b in candidates if id(b) not in inner]


def device_mesh(device: torch.device, world_size: int, replicate: int = 1):
    """A 1-D ``("shard",)`` mesh over all ranks (FSDP), or a 2-D ``("replicate", "shard")`` one (HSDP)."""
    from torch.distributed.device_mesh import init_device_mesh

    if replicate < 1 or world_size % replicate:
        raise ValueError(f"train.fsdp.replicate={replicate} must divide the number of processes ({world_size})")
    if replicate == 1:
        return init_device_mesh(device.type, (world_size,), mesh_dim_names=("shard",))
    return init_device_mesh(device.type, (replicate, world_size // replicate), mesh_dim_names=("replicate", "shard"))


def mixed_precision_policy(mixed_precision: str):
    """FSDP2's policy for ``train.mixed_precision`` (resolved): bf16/fp16 compute with fp32 gradient reduction."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)
    if dtype is None:
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)


def shard_model(model: nn.Module, acc, replicate: int = 1, reshard_after_forward: bool = True,
                mixed_precision: str = "no") -> nn.Module:
    """``fully_shard`` every transformer block, then the root (the rest: embeddings, norms, output head).
    Call on every rank, with the same initial weights, before the optimiser is built."""
    from torch.distributed.fsdp import fully_shard

    # The DiT returns its prediction as a view; nothing here changes it in place (the loss and the sampler
    # are out of place), which is all FSDP2's warning asks.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    model.to(acc.device)
    mesh = device_mesh(acc.device, acc.num_processes, replicate)
    kw = dict(mesh=mesh, reshard_after_forward=reshard_after_forward,
              mp_policy=mixed_precision_policy(mixed_precision))
    blocks = transformer_blocks(model)
    for block in blocks:
        fully_shard(block, **kw)
    fully_shard(model, **kw)
    if acc.is_main_process:
        log.info("fsdp: %d blocks sharded over mesh %s (%s)%s", len(blocks), tuple(mesh.shape), ", ".join(
            mesh.mesh_dim_names), "" if reshard_after_forward else ", parameters kept gathered until backward")
    return model


def clip_grad_norm_(params, max_norm: float) -> torch.Tensor:
    """Clip gradients (DTensors) to a total norm over all shards; returns that norm (a plain tensor)."""
    from torch.distributed.tensor import DTensor

    params = [p for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm([p.grad for p in params])
    if isinstance(total, DTensor):
        total = total.full_tensor()  # the partial norms of every shard, reduced
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict on the CPU of the main process (empty elsewhere). Every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


# ---------------------------------------------------------------------------------------------- checkpoints
def save_sharded(ckpt: Path, model: nn.Module, opt, sched, ema, acc) -> None:
    """``ckpt/sharded/`` (DCP: every rank writes its shards of model, optimiser and EMA), ``rng-<rank>``
    and ``schedule.json``. Every rank must call it."""
    import torch.distributed.checkpoint as dcp
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, _opt(opt))
    state = {"model": model_sd, "optim": optim_sd}
    if ema is not None:
        state["ema"] = {str(i): p for i, p in enumerate(ema.shadow_params)}
    dcp.save(state, checkpoint_id=str(ckpt / "sharded"))
    save_file(_rng_state(), str(ckpt / f"rng-{acc.process_index}.safetensors"))
    if acc.is_main_process:
        extra = {"schedule": _sched(sched).state_dict(),
                 "ema_step": ema.optimization_step if ema is not None else None}
        (ckpt / "schedule.json").write_text(json.dumps(extra, default=_json_scalar))


def load_sharded(ckpt: Path, model: nn.Module, opt, sched, ema, acc) -> None:
    """Restore what :func:`save_sharded` wrote, in place, on every rank (same world size and mesh)."""
    import torch.distributed.checkpoint as dcp
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    if not (ckpt / "sharded").is_dir():
        raise ValueError(f"{ckpt}: no sharded/ folder: not a checkpoint of a train.parallel=fsdp run")
    model_sd, optim_sd = get_state_dict(model, _opt(opt))
    state = {"model": model_sd, "optim": optim_sd}
    if ema is not None:
        state["ema"] = {str(i): p for i, p in enumerate(ema.shadow_params)}
    dcp.load(state, checkpoint_id=str(ckpt / "sharded"))  # in place, each rank its own shards
    set_state_dict(model, _opt(opt), model_state_dict=state["model"], optim_state_dict=state["optim"])
    rng = ckpt / f"rng-{acc.process_index}.safetensors"
    if not rng.is_file():
        raise ValueError(f"{ckpt}: no {rng.name}: the checkpoint was written by fewer processes than this run has")
    _set_rng_state(load_file(str(rng)))
    extra = json.loads((ckpt / "schedule.json").read_text())
    _sched(sched).load_state_dict(extra["schedule"])
    if ema is not None and extra.get("ema_step") is not None:
        ema.optimization_step = extra["ema_step"]


def _opt(opt):
    """The torch optimiser inside accelerate's ``AcceleratedOptimizer``."""
    return getattr(opt, "optimizer", opt)


def _sched(sched):
    """The torch LR scheduler inside accelerate's ``AcceleratedScheduler``."""
    return getattr(sched, "scheduler", sched)


def _json_scalar(v):
    if isinstance(v, torch.Tensor):
        return v.item()
    raise TypeError(f"cannot save {type(v).__name__} in schedule.json")


def _rng_state() -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
