"""Contact sheets: a grid of frames with labels, saved as PNG — for looking at clips, not reading floats.
And :func:`fit_within`, the one rule for "no larger than" image sizes (video decode, VLM inputs)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np


def contact_sheet(
    rows: list[np.ndarray],
    row_labels: list[str] | None = None,
    col_labels: list[str] | None = None,
    cell: int = 96,
    pad: int = 4,
    label_width: int = 0,
) -> np.ndarray:
    """Lay out ``rows`` (each uint8 ``(N, H, W, 3)``) as a grid image, uint8 ``(H', W', 3)``.

    Frames are scaled to ``cell`` px on the long side (nearest neighbour, so pixels stay crisp).
    ``row_labels`` go in a left column ``label_width`` px wide; ``col_labels`` above the columns.
    """
    from PIL import Image, ImageDraw

    if not rows:
        raise ValueError("contact_sheet: no rows given")
    ncol = max(len(r) for r in rows)
    top = 14 if col_labels else 0
    width = label_width + ncol * (cell + pad) + pad
    height = top + len(rows) * (cell + pad) + pad
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for c, text in enumerate(col_labels or []):
        draw.text((label_width + pad + c * (cell + pad), 1), str(text), fill=(0, 0, 0))
    for r, frames in enumerate(rows):
        y = top + pad + r * (cell + pad)
        if row_labels:
            _wrap_text(draw, row_labels[r], (4, y), label_width - 8, cell)
        for c, frame in enumerate(frames):
            img = Image.fromarray(np.asarray(frame, dtype=np.uint8))
            scale = cell / max(img.size)
            img = img.resize((max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale))), Image.NEAREST)
            sheet.paste(img, (label_width + pad + c * (cell + pad), y))
    return np.asarray(sheet)


def _wrap_text(draw, text: str, xy: tuple[int, int], width: int, height: int, line_h: int = 11) -> None:
    chars = max(width // 6, 8)
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= chars:
            lines[-1] += " " + word
        else:
            lines.append(word)
    max_lines = max(height // line_h, 1)
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [lines[max_lines - 1][: chars - 1] + "…"]
    for k, line in enumerate(lines):
        draw.text((xy[0], xy[1] + k * line_h), line, fill=(0, 0, 0))


def save_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def fit_within(width: int, height: int, max_side: int | None = None,
               max_pixels: int | None = None) -> tuple[int, int]:
    """``(width, height)`` scaled down, aspect ratio kept, so that the longer side is at most ``max_side``
    and ``width * height`` at most ``max_pixels`` (each bound optional); never scaled up.

    ``fit_within(1280, 720, max_side=320) == (320, 180)``; ``fit_within(1280, 720, max_pixels=230400) == (640, 360)``.
    """
    for name, v in (("max_side", max_side), ("max_pixels", max_pixels)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {v!r}")
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    s = 1.0
    if max_side is not None:
        s = min(s, max_side / max(width, height))
    if max_pixels is not None:
        s = min(s, math.sqrt(max_pixels / (width * height)))
    if s >= 1.0:
        return width, height
    w, h = max(1, math.floor(width * s + 1e-9)), max(1, math.floor(height * s + 1e-9))
    while max_pixels is not None and w * h > max_pixels:  # float noise at the bound
        w, h = (w - 1, h) if w >= h else (w, h - 1)
    return w, h
