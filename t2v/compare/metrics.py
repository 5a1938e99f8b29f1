"""Figures of ``t2v compare``: weight-free video quality, CLIP-based scores, and bootstrap intervals.

- :func:`temporal_flicker` — VBench's temporal flickering (no model needed);
- :class:`ClipScorer` — CLIPScore of a video against its prompt, and per-video CLIP features;
- :func:`frechet_distance` — Fréchet distance between two sets of features (with per-video CLIP
  features: an FVD-style figure in the CLIP space);
- :func:`bootstrap_ci`, :func:`paired_difference_ci` — percentile bootstrap over prompts;
- :func:`per_prompt_rates` — one prompt's hit rate per category (the unit the bootstrap resamples).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _check_video(frames: np.ndarray, who: str, min_frames: int = 1) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{who}: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if len(frames) < min_frames:
        raise ValueError(f"{who}: needs at least {min_frames} frame(s), got {len(frames)}")
    return frames


# ----------------------------------------------------------------------------- weight-free quality
def temporal_flicker(frames: np.ndarray) -> float:
    """Temporal flickering score of uint8 frames ``(T, H, W, 3)``, T ≥ 2: 1 = steady, 0 = black↔white.

    As VBench defines the ``temporal_flickering`` dimension (Huang et al., "VBench: Comprehensive
    Benchmark Suite for Video Generative Models", CVPR 2024; code: Vchitect/VBench,
    ``vbench/temporal_flickering.py``, ``cal_score``): the mean absolute difference between
    consecutive frames over all pixels and channels, MAD ∈ [0, 255], and score = (255 − MAD) / 255.
    VBench applies it only to prompts of static scenes ("please ensure the video is static"), where
    any change is flicker; here it is reported for every prompt as a quality figure that needs no
    weights, so real motion lowers it too — compare models on the same prompts, not to VBench's.
    """
    frames = _check_video(frames, "temporal_flicker", min_frames=2)
    f = frames.astype(np.float32)
    mad = float(np.abs(f[1:] - f[:-1]).mean())  # every pair has the same pixel count: mean of the per-pair MAEs
    return (255.0 - mad) / 255.0


# ----------------------------------------------------------------------------- bootstrap over prompts
def _values(values: Sequence[float], who: str) -> np.ndarray:
    v = np.asarray([np.nan if x is None else x for x in values], dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"{who}: values must be one number per prompt, got shape {v.shape}")
    if not np.isfinite(v).all():
        bad = [i for i in range(len(v)) if not np.isfinite(v[i])]
        raise ValueError(f"{who}: values at positions {bad[:10]} are None/NaN/inf; drop prompts with no items first")
    return v


def _bootstrap(v: np.ndarray, n_boot: int, alpha: float, seed: int) -> dict:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    n = len(v)
    if n == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)  # (n_boot,) means of resampled prompt sets
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return {"mean": float(v.mean()), "lo": float(lo), "hi": float(hi), "n": n}


def bootstrap_ci(values: Sequence[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> dict:
    """Mean of per-prompt ``values`` and its percentile-bootstrap ``1 − alpha`` interval.

    Prompts are the resampled unit (one value per prompt, e.g. its hit rate), so items of one prompt
    are never treated as independent. Returns ``{"mean", "lo", "hi", "n"}``; with no values, mean,
    lo and hi are None. The same ``seed`` gives the same interval.
    """
    return _bootstrap(_values(values, "bootstrap_ci"), n_boot, alpha, seed)


def paired_difference_ci(a: Sequence[float], b: Sequence[float], n_boot: int = 2000, alpha: float = 0.05,
                         seed: int = 0) -> dict:
    """Mean per-prompt difference ``b − a`` (same prompts, same order) with its bootstrap interval.

    The pairs are resampled jointly (resampling the per-prompt differences), so what the two models
    share per prompt — its difficulty — cancels out. Same dict shape as :func:`bootstrap_ci`.
    """
    va, vb = _values(a, "paired_difference_ci (a)"), _values(b, "paired_difference_ci (b)")
    if len(va) != len(vb):
        raise ValueError(f"paired_difference_ci: a has {len(va)} prompts, b has {len(vb)}; they must be the same prompts")
    return _bootstrap(vb - va, n_boot, alpha, seed)


def per_prompt_rates(hits: dict[str, list[bool]]) -> dict[str, float | None]:
    """One prompt's hit rate per category (None for a category with no items in this prompt)."""
    return {c: (float(np.mean(v)) if len(v) else None) for c, v in hits.items()}


CHANCE_OTHERS = 10  # other scenes each video is scored against for chance


def chance_rates(scenes: Sequence, dets: Sequence, score: Callable, others: int = CHANCE_OTHERS) -> list[dict]:
    """Chance level, one row per video: its mean per-category rate against the next ``others`` scenes
    (``scenes[k+1] … scenes[k+others]``, cyclic) — what a model that ignores its prompt would score.
    ``score(scene, det)`` gives ``{category: [hit, …]}``; videos or scenes that are None are skipped.
    Averaging over several scenes per video (one derangement gave chance figures that moved by 0.15
    between runs of 50 prompts) while keeping one row per video keeps the bootstrap over videos."""
    n = len(scenes)
    rows = []
    for k, det in enumerate(dets):
        if det is None:
            continue
        acc: dict[str, list[float]] = {}
        for j in range(1, min(n - 1, others) + 1):
            other = scenes[(k + j) % n]
            if other is None:
                continue
            for c, v in per_prompt_rates(score(other, det)).items():
                if v is not None:
                    acc.setdefault(c, []).append(v)
        rows.append({c: float(np.mean(v)) for c, v in acc.items()})
    return rows


# ----------------------------------------------------------------------------- CLIP
class ClipScorer:
    """CLIPScore of a video against its prompt, and per-video CLIP features.

    ``path`` is any Hugging Face CLIP folder: a ``CLIPModel`` with its tokenizer and image processor
    (without torchvision, transformers falls back to the PIL image processor). Prompts longer than
    the text model's positions (77 for the OpenAI CLIPs) are truncated — a dense caption is mostly
    cut, which a warning says once.
    """

    def __init__(self, path: str, device: str | None = "cpu", batch_size: int = 32):
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        from t2v.generate import inference_dtype, resolve_device

        if not (Path(path) / "config.json").is_file():
            raise FileNotFoundError(f"ClipScorer: {path} is not a Hugging Face model folder (no config.json)")
        self.device = resolve_device(device)  # None: CUDA when present; bf16 there
        self.model = CLIPModel.from_pretrained(path, dtype=inference_dtype(self.device)).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.image_processor = AutoImageProcessor.from_pretrained(path)
        self.max_tokens = int(self.model.config.text_config.max_position_embeddings)
        self.batch_size = batch_size
        self._warned_truncation = False

    def _embed(self, out) -> np.ndarray:
        # transformers ≥ 5 returns a model output whose pooler_output is the projected embedding
        emb = out if hasattr(out, "shape") else out.pooler_output
        emb = emb.float()
        return (emb / emb.norm(dim=-1, keepdim=True)).cpu().numpy()

    def image_embeddings(self, frames: np.ndarray) -> np.ndarray:
        """L2-normalised image embeddings of uint8 frames ``(T, H, W, 3)`` → ``(T, D)``."""
        import torch

        frames = _check_video(frames, "ClipScorer")
        out = []
        for k in range(0, len(frames), self.batch_size):
            pixels = self.image_processor(images=list(frames[k : k + self.batch_size]), return_tensors="pt")
            with torch.inference_mode():
                feats = self.model.get_image_features(pixel_values=pixels["pixel_values"].to(self.device, self.model.dtype))
            out.append(self._embed(feats))
        return np.concatenate(out)  # (T, D)

    def text_embedding(self, prompt: str) -> np.ndarray:
        """L2-normalised text embedding ``(D,)`` of the first ``max_tokens`` tokens of ``prompt``."""
        import torch

        n = len(self.tokenizer(prompt)["input_ids"])
        if n > self.max_tokens and not self._warned_truncation:
            log.warning("ClipScorer: a prompt has %d tokens; CLIP sees only the first %d (later ones are cut)",
                        n, self.max_tokens)
            self._warned_truncation = True
        tok = self.tokenizer(prompt, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        with torch.inference_mode():
            feats = self.model.get_text_features(input_ids=tok["input_ids"].to(self.device),
                                                 attention_mask=tok["attention_mask"].to(self.device))
        return self._embed(feats)[0]

    def score(self, frames: np.ndarray, prompt: str) -> float:
        """CLIPScore (Hessel et al., 2021, with weight 100): mean over frames of max(100 · cos(image, text), 0)."""
        cos = self.image_embeddings(frames) @ self.text_embedding(prompt)  # (T,)
        return float(np.maximum(100.0 * cos, 0.0).mean())

    def video_features(self, frames: np.ndarray) -> np.ndarray:
        """Mean of the frames' L2-normalised image embeddings ``(D,)``: one feature per video."""
        return self.image_embeddings(frames).mean(axis=0)


# ----------------------------------------------------------------------------- Fréchet distance
def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``(N, D)`` and ``(M, D)``.

    Returns d² = ‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^½), the figure FID reports (Heusel et al.,
    2017). With per-video CLIP features (:meth:`ClipScorer.video_features`) it is a Fréchet *video*
    distance in the CLIP space of the model folder the user gives: an FVD-style figure, not the
    I3D-based FVD of Unterthiner et al., and comparable only between runs that use the same CLIP
    folder and similar set sizes (the estimate is biased upwards for small sets).
    """
    from scipy import linalg

    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance: features must be (N, D) and (M, D), got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"frechet_distance: needs at least 2 features per set for a covariance, got N={len(a)}, "
                         f"M={len(b)}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))  # (D, D)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():  # singular product: offset the diagonals (as pytorch-fid does)
        off = np.eye(len(cov_a)) * 1e-6
        covmean = linalg.sqrtm((cov_a + off) @ (cov_b + off))
    d2 = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean.real))
    return max(d2, 0.0)  # numerics can leave a tiny negative for identical sets
