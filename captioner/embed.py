"""Image embedders for key-frame selection: one signature, ``embed(images) -> unit vectors``.

    emb = build_embedder("pixels")                  # no model: correlation of 32x32 thumbnails
    emb = build_embedder("clip", path="clip-vit-large-patch14-336")
    vectors = emb.embed(frames)                     # frames uint8 (N, H, W, 3) -> float32 (N, D), unit L2

The cosine of two embeddings (a dot product) is the similarity the key-frame rule thresholds.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

EMBEDDERS = ("pixels", "clip")


class Embedder(Protocol):
    def embed(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``(N, H, W, 3)`` -> float32 ``(N, D)``, each row of unit L2 norm."""
        ...


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    return images


def _l2(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class PixelEmbedder:
    """Model-free embedding: the mean-centred ``size x size`` RGB thumbnail of each frame.

    Each frame is box-filtered to ``size x size`` (aspect ratio ignored), flattened to
    ``3 * size**2`` values and centred on its own mean (one scalar per frame), then L2-normalised.
    The cosine of two embeddings is therefore the Pearson correlation of the thumbnails.
    Why centre: raw RGB values are all positive, so two unrelated frames already have a raw
    cosine of ~0.8-0.99 and the threshold 0.93 would keep almost nothing; after centring,
    unrelated frames score ~0 and a small camera move ~0.95, so 0.93 behaves as with CLIP.
    Centring on one scalar (not per channel) keeps colour: a red and a blue frame score -0.5.

    A flat frame (thumbnail std below ``flat_std`` grey levels: black, white, a fade) has no
    pattern to correlate; all flat frames map to one extra unit axis, orthogonal to every
    textured frame — a cut to black is a key-frame, a run of black frames is one.
    """

    def __init__(self, size: int = 32, flat_std: float = 2.0):
        if size < 2:
            raise ValueError(f"PixelEmbedder: size {size!r} must be >= 2")
        self.size = size
        self.flat_std = flat_std
        self.dim = 3 * size * size + 1

    def embed(self, images: np.ndarray) -> np.ndarray:
        from PIL import Image

        images = _check_images(images)
        s, d = self.size, 3 * self.size * self.size
        thumbs = [np.asarray(Image.fromarray(im).resize((s, s), Image.Resampling.BOX), np.float32) for im in images]
        x = np.stack(thumbs).reshape(len(images), d) if thumbs else np.zeros((0, d), np.float32)  # (N, 3·s²)
        x = x - x.mean(axis=1, keepdims=True)
        flat = np.linalg.norm(x, axis=1) < self.flat_std * np.sqrt(d)  # (N,) std < flat_std
        out = np.zeros((len(images), self.dim), np.float32)  # (N, 3·s² + 1)
        out[:, :d] = np.where(flat[:, None], 0.0, x)
        out[flat, d] = 1.0
        return _l2(out)


class CLIPEmbedder:
    """CLS token of the last hidden state of a CLIP vision tower (as the official ShareGPT4Video
    code does with CLIP ViT-L/14-336), L2-normalised.

    ``path`` is a Hugging Face folder (or a hub id the Hub serves) holding a ``CLIPVisionModel`` or a
    full ``CLIPModel`` (its vision tower is loaded; the text weights are skipped) and a ``CLIPImageProcessor``
    (``preprocessor_config.json``). The token is taken before ``post_layernorm``, i.e.
    ``hidden_states[-1][:, 0]`` — not the pooled output.
    """

    def __init__(self, path: str | os.PathLike, device: str = "cpu", dtype: str = "float32"):
        import torch
        from transformers import CLIPImageProcessor, CLIPVisionModel

        from captioner.checkpoints import locate_checkpoint

        # a local folder, or a hub id the Hub (or its cache) serves; else one error naming the key and the download
        path = locate_checkpoint(path, "keyframes.clip_path")
        if Path(path).is_dir() and not (Path(path) / "config.json").is_file():
            raise FileNotFoundError(f"CLIPEmbedder: {path} is not a Hugging Face model folder (no config.json)")
        if Path(path).is_dir() and not (Path(path) / "preprocessor_config.json").is_file():
            raise FileNotFoundError(
                f"CLIPEmbedder: {path} has no preprocessor_config.json; save a CLIPImageProcessor there "
                "(processor.save_pretrained(path))"
            )
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        self.processor = CLIPImageProcessor.from_pretrained(path)
        self.model = CLIPVisionModel.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
        self.dim = self.model.config.hidden_size

    def embed(self, images: np.ndarray) -> np.ndarray:
        import torch

        images = _check_images(images)
        if len(images) == 0:
            return np.zeros((0, self.dim), np.float32)
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]  # (N, 3, S, S)
        with torch.inference_mode():
            hidden = self.model(pixel_values=pixels.to(self.device, self.dtype)).last_hidden_state  # (N, 1+P, D)
        return _l2(hidden[:, 0].float().cpu().numpy())  # CLS token, (N, D)


def build_embedder(kind: str, path: str | os.PathLike | None = None, device: str = "cpu") -> Embedder:
    """``"pixels"`` (no model) or ``"clip"`` (needs ``path``, a CLIP model folder)."""
    if kind == "pixels":
        if path is not None:
            log.warning("embedder 'pixels' uses no model: ignoring path %s", path)
        return PixelEmbedder()
    if kind == "clip":
        if path is None:
            raise ValueError("embedder 'clip' needs a CLIP model folder: pass path=... (CLI: --clip-path DIR)")
        return CLIPEmbedder(path, device=device)
    raise ValueError(f"unknown embedder {kind!r}; choose one of {', '.join(map(repr, EMBEDDERS))}")
