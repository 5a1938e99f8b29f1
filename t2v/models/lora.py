"""LoRA for the Wan DiT, the diffusers way: peft adapters added with ``dit.add_adapter(LoraConfig)``
(diffusers' ``PeftAdapterMixin``), saved with ``WanPipeline.save_lora_weights`` and read back with
``WanTransformer3DModel.load_lora_adapter`` / ``WanPipeline.load_lora_weights``.

With ``model.lora.rank > 0`` only the adapters train: every weight of the pretrained DiT is frozen, and so are
this toolkit's own modules around it (the text projection and text adapter), unless
``model.lora.train_text_adapter`` says otherwise — diffusers' LoRA format has no place for them, so a trained
text adapter is saved next to the LoRA (``text_adapter.safetensors``) and only ``t2v generate --lora`` reads it.

Folder written by :func:`save_lora` (``<run>/lora/``)::

    pytorch_lora_weights.safetensors   transformer.<module>.lora_A/B.weight, peft's LoraConfig in the metadata
    text_adapter.safetensors           only with model.lora.train_text_adapter
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

ADAPTER = "default"  # peft's adapter name in training (the one get_peft_model_state_dict saves)
WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' LORA_WEIGHT_NAME_SAFE
TEXT_ADAPTER = "text_adapter.safetensors"


def has_lora(model: nn.Module) -> bool:
    """Whether ``model`` (a T2VTransformer) carries peft LoRA layers."""
    return bool(getattr(getattr(model, "dit", None), "peft_config", None))


def add_lora(model: nn.Module, cfg) -> None:
    """Add a trainable LoRA (``cfg``: :class:`~t2v.config.LoRAConfig`) to ``model.dit`` and freeze the rest.

    Unknown ``target_modules`` are an error that lists the DiT's linear layers to pick from."""
    from peft import LoraConfig

    if model.config.backbone != "wan":
        raise ValueError(f"model.lora: LoRA is supported for model.backbone=wan only, got {model.config.backbone!r}")
    config = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha if cfg.alpha is not None else cfg.rank,
                        target_modules=list(cfg.target_modules), lora_dropout=cfg.dropout,
                        init_lora_weights=True)  # A Kaiming-uniform, B zero: the model starts as the base
    try:
        model.dit.add_adapter(config, adapter_name=ADAPTER)
    except ValueError as e:
        if "not found in the base model" not in str(e):
            raise
        names = sorted({n.split(".")[-1] if not n.split(".")[-1].isdigit() else ".".join(n.split(".")[-2:])
                        for n, m in model.dit.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"model.lora.target_modules: none of {list(cfg.target_modules)} is a module of the Wan "
                         f"DiT; its linear layers end in: {', '.join(names)}") from None
    train_text = bool(getattr(cfg, "train_text_adapter", False))
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in name or (train_text and name.startswith(("text_adapter.", "text_in."))))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("LoRA rank %d (alpha %g) on %s: %.3fM of %.2fM parameters train (%.2f%%)", cfg.rank,
             config.lora_alpha, ", ".join(cfg.target_modules), trainable / 1e6, total / 1e6, 100 * trainable / total)
    if model.text_adapter is not None and not train_text:
        log.warning("model.text_adapter_layers=%d is frozen under model.lora (a fresh adapter is the identity and "
                    "stays so): set model.text_adapter_layers=0, or model.lora.train_text_adapter=true to train it",
                    model.config.text_adapter_layers)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The DiT's adapter weights as peft names them for saving (``blocks.0.attn1.to_q.lora_A.weight``, ...)."""
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(model.dit, adapter_name=ADAPTER)


def save_lora(model: nn.Module, folder: str | Path) -> Path:
    """``folder/pytorch_lora_weights.safetensors`` in diffusers' Wan LoRA format (and ``text_adapter.safetensors``
    when the text adapter trained). Returns ``folder``."""
    from diffusers import WanPipeline
    from safetensors.torch import save_file

    folder = Path(folder)
    state = {k: v.detach().float().cpu().contiguous() for k, v in lora_state_dict(model).items()}
    metadata = model.dit.peft_config[ADAPTER].to_dict()  # rank, alpha, targets: load_lora_adapter reads them back
    WanPipeline.save_lora_weights(folder, transformer_lora_layers=state, transformer_lora_adapter_metadata=metadata)
    if model.text_adapter is not None and any(p.requires_grad for p in model.text_adapter.parameters()):
        own = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()
               if k.startswith(("text_adapter.", "text_in."))}
        save_file(own, str(folder / TEXT_ADAPTER))
    return folder


def merged_copy(model: nn.Module) -> nn.Module:
    """A plain T2VTransformer (no peft layers) whose adapted weights are ``W + (alpha / r)·B·A``: what a pipeline
    folder saves, loadable without peft. ``model`` is left as it is; the copy is on its device."""
    from peft.tuners.lora import LoraLayer

    from t2v.models.backbone import T2VTransformer

    state = {k: v for k, v in model.state_dict().items() if ".lora_" not in k}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            key = f"{name}.base_layer.weight"
            delta = sum(module.get_delta_weight(a) for a in module.active_adapters)
            state[key] = state[key] + delta.to(state[key].dtype)
    state = {k.replace(".base_layer.", "."): v for k, v in state.items()}
    # the config's own arguments (from_config would drop dit_config: diffusers lists it in _use_default_values)
    plain = T2VTransformer(**{k: v for k, v in model.config.items() if not k.startswith("_")})
    plain.load_state_dict(state)
    return plain.to(next(model.parameters()).device).eval()


def load_lora(model: nn.Module, folder: str | Path, scale: float = 1.0, adapter_name: str = "lora") -> None:
    """Apply a LoRA folder written by :func:`save_lora` (or any diffusers Wan LoRA) to a T2VTransformer, at
    ``scale`` (1: as trained; 0: off)."""
    folder = Path(folder)
    if not (folder / WEIGHTS).is_file():
        raise FileNotFoundError(f"--lora {folder}: no {WEIGHTS} there; pass the `lora/` folder of a LoRA run")
    if model.config.backbone != "wan":
        raise ValueError(f"--lora {folder}: LoRA applies to a Wan pipeline; this one's backbone is "
                         f"{model.config.backbone!r}")
    model.dit.load_lora_adapter(str(folder), prefix="transformer", adapter_name=adapter_name, weight_name=WEIGHTS)
    if scale != 1.0:
        model.dit.set_adapters([adapter_name], [scale])
    if (folder / TEXT_ADAPTER).is_file():
        from safetensors.torch import load_file

        if model.text_adapter is None:
            raise ValueError(f"--lora {folder}: it holds a trained text adapter ({TEXT_ADAPTER}) but this pipeline's "
                             "transformer has none (model.text_adapter_layers=0): use a pipeline of its base model")
        own = load_file(str(folder / TEXT_ADAPTER))
        unexpected = model.load_state_dict(own, strict=False).unexpected_keys  # only the text adapter's weights
        if unexpected:
            raise ValueError(f"--lora {folder}: {TEXT_ADAPTER} does not fit this pipeline's text adapter "
                             f"(unexpected: {', '.join(unexpected[:3])}…)")
        if scale != 1.0:
            log.warning("--lora-scale %g applies to the DiT's LoRA; the text adapter in %s is used as trained",
                        scale, folder)
