"""Contact sheets: a grid of frames with labels, saved as PNG — for looking at clips, not reading floats."""

from __future__ import annotations

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
