"""``t2v train-vae``: train a small diffusers ``AutoencoderKL`` on a manifest's frames.

The offline default VAE: a per-frame autoencoder with a 4× spatial reduction trained for a few
minutes on synthworld frames (reconstruction L1 + MSE, a tiny KL term), saved as a diffusers folder
with ``scaling_factor = 1 / std(latents)`` as Stable Diffusion's VAE does, and its measurements in
``train_vae.json`` beside the weights. The tiny preset's VAE (``vae.path: synthworld-48px``) was made so.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from tqdm import tqdm

from clipio.manifest import resolve_video
from clipio.pixels import to_signed, to_uint8
from clipio.video import open_video
from t2v.data.dataset import ok_records
from t2v.models.vae import build_tiny_kl

log = logging.getLogger(__name__)
INFO_FILE = "train_vae.json"  # the measurements train_vae writes beside the weights


def load_frames(manifest: str | Path, size: int, per_clip: int = 16, max_frames: int = 20_000) -> np.ndarray:
    """uint8 (N, size, size, 3): evenly spaced frames of every ok clip (resized at decode)."""
    recs = ok_records(manifest)  # frames only: captions are not needed
    frames = []
    for r in tqdm(recs, desc="reading frames", unit="clip"):
        with open_video(resolve_video(manifest, r), size=(size, size)) as v:
            times = np.linspace(0, v.info.duration, per_clip, endpoint=False)
            frames.append(v.frames_at(times))
        if sum(len(f) for f in frames) >= max_frames:
            break
    return np.concatenate(frames)[:max_frames]


def random_crops(x: torch.Tensor, crop: int, generator: torch.Generator) -> torch.Tensor:
    """(B, C, crop, crop): one random window of each of the frames ``x`` (B, C, H, W)."""
    B, _, H, W = x.shape
    top = torch.randint(0, H - crop + 1, (B,), generator=generator).tolist()
    left = torch.randint(0, W - crop + 1, (B,), generator=generator).tolist()
    return torch.stack([f[:, t : t + crop, s : s + crop] for f, t, s in zip(x, top, left, strict=True)])


def foreground_weight(x: torch.Tensor, fg_weight: float) -> torch.Tensor:
    """Per-pixel loss weight ``1 + fg_weight`` on pixels that differ from the frame's border colour.

    Objects cover a few percent of a synthworld frame; unweighted, the loss is all background and
    the VAE learns the backgrounds perfectly while collapsing object colours to a couple of hues.
    """
    border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], dim=-1)  # (B, 3, 4·S)
    bg = border.median(dim=-1).values[..., None, None]  # (B, 3, 1, 1)
    fg = ((x - bg).abs().amax(dim=1, keepdim=True) > 0.1).float()  # (B, 1, H, W)
    return 1.0 + fg_weight * fg


def train_vae(manifest: str | Path, out: str | Path, size: int = 64, steps: int = 1000, batch_size: int = 32,
              lr: float = 3e-3, latent_channels: int = 4, block_out_channels=(16, 32, 32), kl_weight: float = 1e-6,
              fg_weight: float = 20.0, seed: int = 0, crop: int = 0) -> dict:
    """Train on ``batch_size`` random frames a step, each a random ``crop`` × ``crop`` window when ``crop`` > 0
    (the autoencoder is convolutional: a 24 px window of a 48 px frame costs a quarter of the FLOPs and
    still holds whole objects); evaluated on full frames."""
    torch.manual_seed(seed)
    if steps < 3:  # OneCycleLR needs a step up and a step down after the first
        raise ValueError(f"train_vae: steps must be >= 3 (a one-cycle LR schedule), got {steps}")
    if crop and not (8 <= crop <= size and crop % 8 == 0):
        raise ValueError(f"crop must be a multiple of 8 in 8..size ({size}), got {crop}")
    data = rearrange(to_signed(load_frames(manifest, size)), "n h w c -> n c h w")
    vae = build_tiny_kl(latent_channels, block_out_channels, size)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                pct_start=max(0.05, 2 / steps))  # a short run: >= 1 warm-up step
    g = torch.Generator().manual_seed(seed)
    bar = tqdm(range(steps), desc="training VAE", unit="step")
    for _ in bar:
        x = data[torch.randint(0, len(data), (batch_size,), generator=g)]
        if crop and crop < size:
            x = random_crops(x, crop, g)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        w = foreground_weight(x, fg_weight)  # (B, 1, H, W)
        err = rec - x
        loss = (w * (err.abs() + err**2)).mean() / w.mean() + kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    vae.eval()
    with torch.no_grad():
        x = data[:256]
        z = vae.encode(x).latent_dist.mode()
        rec = vae.decode(z).sample.clamp(-1, 1)
        mse = ((rec - x) ** 2).mean().item() / 4  # in [0, 1] units
        psnr = 10 * np.log10(1.0 / max(mse, 1e-12))
        scale = float(1.0 / z.flatten().std())
        agreement = detector_agreement(vae, data, per_clip=16)
    vae.register_to_config(scaling_factor=scale)
    Path(out).mkdir(parents=True, exist_ok=True)
    vae.save_pretrained(str(out))
    log.info("VAE: PSNR %.1f dB on %d frames, detector agreement %.2f, scaling_factor %.3f -> %s", psnr, len(x),
             agreement, scale, out)
    res = {"psnr": float(psnr), "scaling_factor": scale, "frames": len(data), "detector_agreement": agreement,
           "steps": steps, "batch_size": batch_size, "crop": crop, "seed": seed}
    (Path(out) / INFO_FILE).write_text(json.dumps(res, indent=1))
    return res


def run_vae(cfg, manifest: str | Path, steps: int, crop: int = 0) -> dict:
    """The VAE stage of ``t2v demo`` / ``t2v experiment``: with ``steps`` > 0, train one for that many steps on
    ``manifest``'s frames into ``cfg.vae.path`` (unless it is there already: a rerun resumes after it); with 0, the
    VAE at ``cfg.vae.path`` as it is (the tiny preset's: the packaged synthworld VAE). Returns its
    ``train_vae.json`` record ({} for a VAE made elsewhere)."""
    from t2v.models.vae import resolve_vae_path

    if not cfg.vae.path:
        raise ValueError("vae.path is not set: name a VAE folder (or synthworld-48px), or pass --vae-steps N to "
                         "train one on the run's clips")
    if crop and steps <= 0:
        raise ValueError(f"--vae-crop {crop} only applies to a VAE trained here: pass --vae-steps N with it")
    folder = Path(resolve_vae_path(cfg.vae.path))
    if steps > 0 and not (folder / INFO_FILE).is_file():
        train_vae(manifest, folder, size=cfg.data.size, steps=steps, latent_channels=cfg.vae.latent_channels,
                  block_out_channels=tuple(cfg.vae.block_out_channels), crop=crop)
    return json.loads((folder / INFO_FILE).read_text()) if (folder / INFO_FILE).is_file() else {}


@torch.no_grad()
def detector_agreement(vae, data: torch.Tensor, per_clip: int, clips: int = 30) -> float:
    """Fraction of clips whose reconstruction shows the same (colour, shape) objects as the original,
    per the synthworld detector — what matters downstream, where PSNR is dominated by background."""
    from synthworld.detect import detect_video

    def objects(frames: torch.Tensor) -> list:
        u8 = to_uint8(rearrange(frames, "f c h w -> f h w c"))
        return sorted((t.colour, t.shape) for t in detect_video(u8, fps=2.0).tracks)

    n = min(clips, len(data) // per_clip)
    same = 0
    for c in range(n):
        x = data[c * per_clip : (c + 1) * per_clip : 2]  # (8, 3, S, S)
        rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        same += objects(x) == objects(rec)
    return same / max(n, 1)
