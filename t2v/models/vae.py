"""Frozen video VAE: diffusers ``AutoencoderKL`` applied per frame, or the 3D ``AutoencoderKLWan``.

``vae.path`` is a diffusers folder or the name of a VAE shipped inside this package (:data:`PACKAGED_VAES`):
``synthworld-48px`` is the tiny preset's, trained by ``t2v train-vae`` on the demo's clips — the offline stand-in
for the pretrained VAE (Wan's, SD's) a real run loads, so the demo spends its minutes on the DiT.

Latents are normalised the way their pipelines do it, from the VAE's own config:
``AutoencoderKL``: ``(z − shift_factor) · scaling_factor``; ``AutoencoderKLWan``: per-channel
``(z − latents_mean) / latents_std``. Videos are ``(B, 3, F, H, W)`` in [−1, 1].
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import torch
from torch import nn

# name → folder under t2v/assets/ (package data); regenerate with `make synthworld-vae`
PACKAGED_VAES = {"synthworld-48px": "vae-synthworld-48px"}


def resolve_vae_path(path: str | Path) -> str:
    """``vae.path`` → a folder: a packaged VAE's by name (``synthworld-48px``), else the path as given."""
    name = str(path)
    return str(files("t2v") / "assets" / PACKAGED_VAES[name]) if name in PACKAGED_VAES else name


def build_tiny_kl(latent_channels: int = 4, block_out_channels: list[int] | tuple[int, ...] = (32, 64, 64),
                  sample_size: int = 64):
    """An untrained small ``AutoencoderKL`` (spatial factor ``2 ** (len(block_out_channels) − 1)``)."""
    from diffusers import AutoencoderKL

    n = len(block_out_channels)
    groups = min(8, *block_out_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(block_out_channels), layers_per_block=1, norm_num_groups=groups,
        sample_size=sample_size, scaling_factor=1.0,
    )


class VideoVAE(nn.Module):
    """Wraps a diffusers autoencoder; ``encode``/``decode`` work on normalised video latents."""

    def __init__(self, vae: nn.Module, scaling_factor: float | None = None):
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        self.kind = "wan" if type(vae).__name__ == "AutoencoderKLWan" else "kl"
        c = vae.config
        if self.kind == "wan":
            self.spatial_factor = 2 ** len(c.temperal_downsample)
            self.temporal_factor = 2 ** sum(c.temperal_downsample)
            self.latent_channels = c.z_dim
        else:
            self.spatial_factor = 2 ** (len(c.block_out_channels) - 1)
            self.temporal_factor = 1
            self.latent_channels = c.latent_channels
            self.scale = float(scaling_factor if scaling_factor is not None else c.scaling_factor)
            self.shift = float(getattr(c, "shift_factor", None) or 0.0)

    @classmethod
    def from_pretrained(cls, path: str, scaling_factor: float | None = None, dtype=torch.float32) -> VideoVAE:
        import json

        from diffusers import AutoencoderKL, AutoencoderKLWan

        path = resolve_vae_path(path)
        if not (Path(path) / "config.json").is_file():
            raise FileNotFoundError(f"VAE folder {path!r} has no config.json (vae.path: a diffusers folder or one of "
                                    f"{', '.join(PACKAGED_VAES)}; make one with `t2v train-vae`)")
        name = json.loads((Path(path) / "config.json").read_text()).get("_class_name", "AutoencoderKL")
        vae_cls = AutoencoderKLWan if name == "AutoencoderKLWan" else AutoencoderKL
        return cls(vae_cls.from_pretrained(path, torch_dtype=dtype), scaling_factor)

    def latent_frames(self, num_frames: int) -> int:
        return num_frames if self.kind == "kl" else 1 + (num_frames - 1) // self.temporal_factor

    def _wan_stats(self, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.vae.config
        mean = torch.tensor(c.latents_mean, dtype=ref.dtype, device=ref.device).view(1, -1, 1, 1, 1)
        std = torch.tensor(c.latents_std, dtype=ref.dtype, device=ref.device).view(1, -1, 1, 1, 1)
        return mean, std

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, H, W) in [−1, 1] → normalised latents (B, C, F', H/s, W/s); the posterior mode."""
        if self.kind == "wan":
            z = self.vae.encode(video).latent_dist.mode()
            mean, std = self._wan_stats(z)
            return (z - mean) / std
        B, _, F, H, W = video.shape
        frames = video.permute(0, 2, 1, 3, 4).reshape(B * F, 3, H, W)  # (B·F, 3, H, W)
        z = self.vae.encode(frames).latent_dist.mode()  # (B·F, C, h, w)
        z = (z - self.shift) * self.scale
        return z.reshape(B, F, *z.shape[1:]).permute(0, 2, 1, 3, 4).contiguous()  # (B, C, F, h, w)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, chunk: int = 32) -> torch.Tensor:
        """Normalised latents (B, C, F', h, w) → video (B, 3, F, H, W) in [−1, 1] (clamped)."""
        if self.kind == "wan":
            mean, std = self._wan_stats(latents)
            return self.vae.decode(latents * std + mean).sample.clamp(-1, 1)
        B, C, F, h, w = latents.shape
        z = latents.permute(0, 2, 1, 3, 4).reshape(B * F, C, h, w) / self.scale + self.shift
        frames = torch.cat([self.vae.decode(z[i : i + chunk]).sample for i in range(0, z.shape[0], chunk)])
        return frames.reshape(B, F, *frames.shape[1:]).permute(0, 2, 1, 3, 4).clamp(-1, 1)  # (B, 3, F, H, W)
