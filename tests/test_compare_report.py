"""The visual report of ``t2v compare``: files, HTML structure, escaping, charts, Markdown and validation."""

from __future__ import annotations

import copy
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipio.video import write_gif
from t2v.compare.report import write_report

RATES = [("colour", "object colour"), ("shape", "object shape"), ("binding", "attribute binding"),
         ("direction", "motion direction"), ("events", "temporal events"), ("count", "object count")]
EVIL_PROMPT = "A red <script>alert(1)</script> square & a blue circle move left."


def _moving_square(colour: tuple[int, int, int], t: int = 6, size: int = 24) -> np.ndarray:
    frames = np.zeros((t, size, size, 3), np.uint8)  # (T, H, W, 3)
    for i in range(t):
        frames[i, 8:16, 2 + 3 * i: 10 + 3 * i] = colour
    return frames


def _stats(mean: float | None, n: int = 40, half: float = 0.08) -> dict:
    if mean is None:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    return {"mean": mean, "lo": max(0.0, mean - half), "hi": min(1.0, mean + half), "n": n}


def sample_report(out_dir: Path, gallery_rows: int = 3) -> dict:
    """Two models, six rate categories + flicker, chance/ceiling rows, differences and a GIF gallery."""
    rng = np.random.default_rng(0)
    cats = [{"key": k, "label": lab, "kind": "rate"} for k, lab in RATES]
    cats.append({"key": "flicker", "label": "temporal flicker (VBench, 1 = steady)", "kind": "quality"})
    metrics = {name: {k: _stats(round(float(rng.uniform(lo, lo + 0.4)), 3)) for k, _ in RATES}
               for name, lo in [("short", 0.2), ("dense", 0.4)]}
    metrics["short"]["flicker"] = {"mean": 0.961, "lo": 0.955, "hi": 0.967, "n": 40}
    metrics["dense"]["flicker"] = {"mean": 0.972, "lo": 0.966, "hi": 0.978, "n": 40}
    gallery = []
    for i in range(gallery_rows):
        videos = {}
        for name, colour in [("short", (220, 40, 40)), ("dense", (40, 90, 220))]:
            rel = f"gallery/{i:03d}-{name}.gif"
            write_gif(out_dir / rel, _moving_square(colour), fps=4)
            videos[name] = rel
        gallery.append({"prompt": EVIL_PROMPT if i == 0 else f"Prompt {i}: a green triangle moves up, then stops.",
                        "videos": videos,
                        "scores": {"short": {"colour": 1.0, "direction": 0.0}, "dense": {"colour": 1.0, "direction": 1.0}}})
    return {
        "title": "Short vs dense captions",
        "created": "2026-11-25 10:00",
        "command": "t2v compare --models runs/a runs/b --prompts p.jsonl --out runs/cmp",
        "models": [{"name": "short", "path": "runs/exp/short/pipeline", "caption_field": "short"},
                   {"name": "dense", "path": "runs/exp/dense/pipeline", "caption_field": "dense"}],
        "settings": {"prompts": 40, "seeds": "prompt index", "steps": 20, "guidance": 5.0, "frames": 8, "fps": 2.0},
        "categories": cats,
        "metrics": metrics,
        "reference": {"chance": {k: _stats(0.12) for k, _ in RATES},
                      "ceiling": {**{k: _stats(0.95, half=0.03) for k, _ in RATES},
                                  "flicker": {"mean": 0.981, "lo": 0.978, "hi": 0.984, "n": 40}}},
        "differences": [{"a": "short", "b": "dense", "category": k, "mean": 0.1, "lo": 0.02 if i % 2 else -0.05,
                         "hi": 0.18} for i, (k, _) in enumerate(RATES)],
        "notes": ["Dense captions help most on **attribute binding**; see `report.json` for raw numbers."],
        "gallery": gallery,
    }


class _Collector(HTMLParser):
    """Collects start tags with their attributes, and the cell texts of every table body."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.tables: list[list[list[str]]] = []  # table -> body rows -> cell texts
        self._in_body, self._cell = False, None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self.tables.append([])
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.tables[-1].append([])
        elif tag == "td" and self._in_body:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._cell is not None:
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def table(self, class_: str) -> list[list[str]]:
        """Body rows of the table with this class."""
        classes = [attrs.get("class") for tag, attrs in self.tags if tag == "table"]
        return self.tables[classes.index(class_)]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    report = sample_report(out)
    return out, report, write_report(report, out)


def test_report_files_and_charts(written):
    out, report, paths = written
    for name in ["report.json", "report.md", "report.html", "charts/rates.png", "charts/quality.png",
                 *(f"charts/{c['key']}.png" for c in report["categories"])]:
        assert paths[name] == out / name and (out / name).is_file(), name
    assert json.loads((out / "report.json").read_text()) == report
    for png in (out / "charts").glob("*.png"):
        with Image.open(png) as im:
            assert im.format == "PNG" and im.width >= 200 and im.height >= 150, png
        assert png.stat().st_size > 5_000, png  # drawn axes, bars and labels, not an empty canvas


def test_html_structure_gallery_and_escaping(written):
    out, report, _ = written
    text = (out / "report.html").read_text()
    parser = _Collector()
    parser.feed(text)
    srcs = [attrs["src"] for tag, attrs in parser.tags if tag == "img"]
    gifs = [s for s in srcs if s.endswith(".gif")]
    expected = [row["videos"][m] for row in report["gallery"] for m in ("short", "dense")]
    assert gifs == expected and all((out / s).is_file() for s in gifs)
    assert "charts/rates.png" in srcs and "charts/quality.png" in srcs
    assert all((out / s).is_file() for s in srcs)
    metrics_rows = parser.table("metrics")
    assert [row[0] for row in metrics_rows] == [c["label"] for c in report["categories"]]
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<strong>attribute binding</strong>" in text and "<code>report.json</code>" in text
    # best model of the row in bold: dense's flicker (0.972) beats short's (0.961)
    assert '<td class="num best">0.972 <span class="ci">[0.966, 0.978]</span></td>' in text


def test_markdown_has_ci_cells_and_chart(written):
    out, report, _ = written
    md = (out / "report.md").read_text()
    colour = report["metrics"]["short"]["colour"]
    assert f"{colour['mean']:.2f} [{colour['lo']:.2f}, {colour['hi']:.2f}]" in md
    assert "0.12 [0.04, 0.20]" in md  # the chance column
    assert "![prompt-following rates per category](charts/rates.png)" in md
    assert report["command"] in md
    section = md.split("## Metrics")[1].split("\n\n")[2]  # caption, then the table
    rows = section.splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == [f"| {c['label']}" for c in report["categories"]]


def test_missing_metrics_and_unknown_model_raise(tmp_path):
    report = sample_report(tmp_path, gallery_rows=0)
    with pytest.raises(ValueError, match="metrics"):
        write_report({k: v for k, v in report.items() if k != "metrics"}, tmp_path / "a")
    bad = copy.deepcopy(report)
    bad["metrics"]["long"] = bad["metrics"]["short"]
    with pytest.raises(ValueError, match="unknown model.*long"):
        write_report(bad, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_empty_metric_renders_as_dash(tmp_path):
    report = sample_report(tmp_path, gallery_rows=0)
    report["categories"] = report["categories"][:1]
    report["metrics"]["short"]["colour"] = _stats(None)  # n == 0, mean None
    del report["metrics"]["dense"]["colour"]  # missing entirely
    report["differences"] = []
    write_report(report, tmp_path)
    parser = _Collector()
    parser.feed((tmp_path / "report.html").read_text())
    (row,) = parser.table("metrics")
    assert row == ["object colour", "–", "–", "0.12 [0.04, 0.20]", "0.95 [0.92, 0.98]", "–"]
    assert "| object colour | – | – |" in (tmp_path / "report.md").read_text()
