"""The one pixel conversion: uint8 frames ↔ float tensors in [−1, 1], layout unchanged.

Video files, renderers and detectors speak uint8 ``(F, H, W, 3)``; VAEs and the DiT speak float in
[−1, 1], usually ``(B, 3, F, H, W)``. These two functions change only the value range; the caller
changes the layout with a named ``einops.rearrange``, which is its own shape comment.
"""

from __future__ import annotations

import numpy as np
import torch


def to_signed(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] → float32 in [−1, 1], same shape."""
    x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if x.dtype != torch.uint8:
        raise TypeError(f"to_signed expects uint8 pixels, got {x.dtype}")
    return x.float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float in [−1, 1] (values outside are clipped) → uint8 numpy in [0, 255], same shape."""
    return x.detach().float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
