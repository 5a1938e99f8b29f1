"""Rectified flow / flow matching (Lipman et al. 2023; Esser et al. 2024, "SD3").

Path: x_σ = (1 − σ)·x₀ + σ·ε, σ ∈ [0, 1]; the model predicts the velocity v = ε − x₀ and is trained
with ‖v̂ − v‖². σ is drawn logit-normal (SD3 §3.1: σ = sigmoid(u), u ~ N(m, s)) then shifted,
σ' = shift·σ / (1 + (shift − 1)·σ) (SD3 §5.3.2; shift > 1 spends more training at high noise).
The model sees ``timestep = 1000·σ'``, the convention of diffusers' FlowMatchEulerDiscreteScheduler,
whose Euler step x_{σ_next} = x_σ + (σ_next − σ)·v̂ samples from the trained model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from t2v.config import ObjectiveConfig

NUM_TRAIN_TIMESTEPS = 1000


def shift_sigmas(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * sigma / (1 + (shift - 1) * sigma)


def sample_sigmas(n: int, cfg: ObjectiveConfig, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n,) noise levels: logit-normal, then shifted."""
    u = torch.randn(n, generator=generator, device=device) * cfg.logit_std + cfg.logit_mean
    return shift_sigmas(torch.sigmoid(u), cfg.shift)


def curriculum_sigmas(n: int, cfg: ObjectiveConfig, step: int, device=None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """(n,) noise levels for optimiser step ``step`` under the noise-level curriculum: σ = 1 for the
    first ``pure_noise_steps``, then σ ~ U(1 − w, 1) with w = (step − pure_noise_steps) / noise_ramp_steps,
    then :func:`sample_sigmas`. Position words are learned at σ = 1 only as a late, sudden transition
    that any mixture of noise levels postpones (docs/does-it-learn.md); the curriculum crosses it first."""
    if step < cfg.pure_noise_steps:
        return torch.ones(n, device=device)
    ramp = step - cfg.pure_noise_steps
    if ramp < cfg.noise_ramp_steps:
        w = ramp / cfg.noise_ramp_steps
        return 1 - w * torch.rand(n, generator=generator, device=device)
    return sample_sigmas(n, cfg, device=device, generator=generator)


def caption_dropout_at(cfg: ObjectiveConfig, step: int) -> float:
    """Caption dropout for ``step``: none while the curriculum trains at σ = 1 only."""
    return 0.0 if step < cfg.pure_noise_steps else cfg.caption_dropout


def flow_matching_loss(
    model: Callable[..., torch.Tensor],
    x0: torch.Tensor,
    text: torch.Tensor,
    text_mask: torch.Tensor,
    cfg: ObjectiveConfig,
    sigma: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared velocity error for clean latents ``x0`` (B, C, F, H, W)."""
    B = x0.shape[0]
    sigma = sample_sigmas(B, cfg, device=x0.device) if sigma is None else sigma
    noise = torch.randn_like(x0) if noise is None else noise
    s = sigma.view(B, 1, 1, 1, 1).to(x0.dtype)
    x_t = (1 - s) * x0 + s * noise  # (B, C, F, H, W)
    target = noise - x0
    pred = model(x_t, sigma * NUM_TRAIN_TIMESTEPS, text, text_mask)
    return torch.mean((pred.float() - target.float()) ** 2)
