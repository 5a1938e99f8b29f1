"""The visual report of ``t2v compare``: ``report.json``, ``report.md``, ``report.html`` and PNG charts.

The caller builds one dict (schema in :func:`write_report`). This module checks it, builds the metrics
and differences tables once and renders them twice (Markdown here, HTML in :mod:`t2v.compare.html`),
and draws the charts with matplotlib. Everything is referenced by relative path, so the output folder
can be copied or served as it is.
"""

from __future__ import annotations

import json
import logging
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("models", "categories", "metrics")
# rate: a hit rate in [0, 1]; quality: a score on its own scale (flicker, CLIP); defect: how much of a visible
# defect a video has (lower is better, 0 = none); judge: the share of a prompt's claims of one type a VLM judge
# finds true (t2v compare --judge). Defects and judge rates are their own groups of the table and their own charts
KINDS = ("rate", "quality", "defect", "judge")
AGGREGATE_CHARTS = ("rates", "quality", "defects", "judge")  # charts/<name>.png; a category key may not take these
DEFECT_GROUP = "video quality read by the detector (↓ lower is better, 0 = no defect)"
JUDGE_GROUP = "claims of the prompt a VLM judge finds true (share per claim type)"
GROUPS = {"defect": DEFECT_GROUP, "judge": JUDGE_GROUP}
CHART_TITLES = {"rates": "prompt-following rates per category", "quality": "video quality",
                "defects": "video quality read by the detector (lower is better)",
                "judge": "claims found true by the VLM judge"}
DASH = "–"
# what the usual reference rows mean; other reference names are shown without an explanation
REFERENCE_HELP = {
    "chance": "the same videos, each scored against ten other prompts' scenes",
    "ceiling": "the true scenes passed through the VAE",
}
REFERENCE_STYLE = {"chance": {"color": "0.45", "linestyle": "--"}, "ceiling": {"color": "#2a9d3a", "linestyle": "-"}}


@dataclass(frozen=True)
class Cell:
    """One table cell: a value, an optional CI, and how to show it."""

    text: str
    ci: str = ""
    best: bool = False  # bold: best model of its row, or a difference whose CI excludes 0
    ref: bool = False  # a reference column (chance, ceiling), shown muted


@dataclass
class Table:
    header: list[str]
    rows: list[list[Cell]]  # a row of one cell is a group heading across the table


def write_report(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``report.html`` and ``charts/*.png`` into ``out_dir``.

    ``report`` holds ``models`` (list of ``{"name", "path", "caption_field"}``), ``categories`` (list of
    ``{"key", "label", "kind": "rate" | "quality" | "defect" | "judge", "lower_is_better"?}``) and ``metrics`` (model name ->
    category key -> ``{"mean", "lo", "hi", "n"}``), and optionally ``title``, ``created``, ``command``,
    ``settings``, ``reference`` (name -> category key -> stats), ``differences`` (``{"a", "b", "category",
    "mean", "lo", "hi"}``, B − A), ``notes`` and ``gallery`` (``{"prompt", "videos": {model: relative
    gif path}, "scores"?: {model: {category key: value}}}``). Returns the written files, keyed by their
    path relative to ``out_dir``.
    """
    from t2v.compare.html import render_html  # imported here: html.py imports this module's tables

    # 1. Check inputs (before anything is written)
    check_report(report)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for row in report.get("gallery") or []:
        for src in row.get("videos", {}).values():
            if src and not (out_dir / src).is_file():
                log.warning("gallery video %s does not exist under %s; the page will show a broken image", src, out_dir)

    # 2. Charts
    charts = write_charts(report, out_dir / "charts")

    # 3. Tables, rendered as Markdown and HTML
    metrics, differences = metrics_table(report), differences_table(report)
    written = {
        "report.md": _write(out_dir / "report.md", render_markdown(report, metrics, differences, charts)),
        "report.html": _write(out_dir / "report.html", render_html(report, metrics, differences, charts)),
        "report.json": _write(out_dir / "report.json", json.dumps(report, indent=2, ensure_ascii=False,
                                                                   default=_json_default) + "\n"),
    }
    written.update({rel: out_dir / rel for rel in charts.values()})
    return written


def check_report(report: dict) -> None:
    """Raise ``ValueError`` naming the key when ``report`` does not follow the schema of :func:`write_report`."""
    missing = [k for k in REQUIRED_KEYS if k not in report]
    if missing:
        raise ValueError(f"report is missing required key(s) {missing}; a report needs {list(REQUIRED_KEYS)}")
    models = report["models"]
    if not isinstance(models, list) or not models or not all(isinstance(m, dict) and m.get("name") for m in models):
        raise ValueError(f"report['models'] must be a non-empty list of dicts with a 'name', got {models!r}")
    names = [m["name"] for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"report['models'] has duplicate names: {names}")
    keys = []
    for cat in report["categories"]:
        key = cat.get("key")
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", key) or key in AGGREGATE_CHARTS:
            raise ValueError(f"report['categories']: key {key!r} must be a non-empty [A-Za-z0-9_-] name other "
                             f"than {list(AGGREGATE_CHARTS)} (it names charts/<key>.png)")
        if cat.get("kind") not in KINDS:
            raise ValueError(f"report['categories']: category {key!r} has kind {cat.get('kind')!r}; use one of {KINDS}")
        keys.append(key)
    if len(set(keys)) != len(keys):
        raise ValueError(f"report['categories'] has duplicate keys: {keys}")
    unknown = [name for name in report["metrics"] if name not in names]
    if unknown:
        raise ValueError(f"report['metrics'] names unknown model(s) {unknown}; the models are {names}")
    for where, table in [("metrics", report["metrics"]), ("reference", report.get("reference") or {})]:
        for name, stats in table.items():
            if extra := sorted(set(stats) - set(keys)):
                log.warning("report[%r][%r] has categories %s not in report['categories']; ignored", where, name, extra)
    for d in report.get("differences") or []:
        if d.get("a") not in names or d.get("b") not in names or d.get("category") not in keys:
            raise ValueError(f"report['differences'] entry {d!r} must name two models of {names} and a category of {keys}")
    for row in report.get("gallery") or []:
        if unknown := [n for n in row.get("videos", {}) if n not in names]:
            raise ValueError(f"report['gallery'] row {row.get('prompt', '')[:40]!r} names unknown model(s) {unknown}; "
                             f"the models are {names}")


# ---- tables -------------------------------------------------------------------------------------------

def stat(table: dict | None, key: str) -> dict | None:
    """The stats of category ``key`` in ``table``, or None when missing or empty (n == 0 or mean None)."""
    s = (table or {}).get(key)
    if not s or s.get("mean") is None or s.get("n") == 0:
        return None
    return s


def fmt(x: float | None, kind: str, signed: bool = False) -> str:
    """Rates with two decimals; quality scores (any scale) with three significant digits."""
    if x is None:
        return DASH
    spec = ".2f" if kind in ("rate", "judge") else ".3g"
    return format(x, ("+" if signed else "") + spec)


def _ci(s: dict, kind: str, signed: bool = False) -> str:
    if s.get("lo") is None or s.get("hi") is None:
        return ""
    return f"[{fmt(s['lo'], kind, signed)}, {fmt(s['hi'], kind, signed)}]"


def label(cat: dict) -> str:
    return cat.get("label", cat["key"]) + (" ↓" if cat.get("lower_is_better") else "")


def metrics_table(report: dict) -> Table:
    """Rows = categories; columns = models, then reference rows, then n (per model when they differ).
    The defects and the judge's rates follow under their own group headings (one-cell rows)."""
    names = [m["name"] for m in report["models"]]
    refs = report.get("reference") or {}
    rows: list[list[Cell]] = []
    for cat in report["categories"]:
        key, kind = cat["key"], cat["kind"]
        if kind in GROUPS and [Cell(GROUPS[kind])] not in rows:
            rows.append([Cell(GROUPS[kind])])
        stats = [stat(report["metrics"].get(n), key) for n in names]
        means = [s["mean"] for s in stats if s]
        best = (min if cat.get("lower_is_better") else max)(means) if len(means) >= 2 and len(set(means)) > 1 else None
        cells = [Cell(label(cat))]
        cells += [Cell(fmt(s["mean"], kind), _ci(s, kind), best=s["mean"] == best) if s else Cell(DASH) for s in stats]
        for ref in refs.values():
            s = stat(ref, key)
            cells.append(Cell(fmt(s["mean"], kind), _ci(s, kind), ref=True) if s else Cell(DASH, ref=True))
        ns = [str(s["n"]) if s and s.get("n") is not None else DASH for s in stats]
        cells.append(Cell(ns[0] if len(set(ns)) == 1 else " / ".join(ns)))
        rows.append(cells)
    return Table(["category", *names, *refs, "n"], rows)


def differences_table(report: dict) -> Table:
    """One row per paired difference B − A, with its CI and which model it favours."""
    cats = {c["key"]: c for c in report["categories"]}
    rows = []
    for d in report.get("differences") or []:
        cat = cats[d["category"]]
        kind, lo, hi = cat["kind"], d.get("lo"), d.get("hi")
        clear = lo is not None and hi is not None and (lo > 0 or hi < 0)
        if not clear or d.get("mean") is None:
            verdict = "no clear difference (CI includes 0)" if lo is not None else DASH
        else:
            higher, lower = (d["b"], d["a"]) if lo > 0 else (d["a"], d["b"])
            verdict = f"{lower if cat.get('lower_is_better') else higher} better"
        rows.append([Cell(f"{d['b']} − {d['a']}"), Cell(label(cat)),
                     Cell(fmt(d.get("mean"), kind, signed=True), _ci(d, kind, signed=True), best=clear),
                     Cell(verdict, best=clear)])
    return Table(["comparison", "category", "difference [95% CI]", "verdict"], rows)


# ---- Markdown -----------------------------------------------------------------------------------------

def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _md_table(table: Table) -> str:
    def cell(c: Cell) -> str:
        text = f"**{c.text}**" if c.best else c.text
        return _md_cell(f"{text} {c.ci}".strip())

    def row(cells: list[Cell]) -> str:
        if len(cells) == 1:  # a group heading
            return f"| ***{_md_cell(cells[0].text)}*** |" + " |" * (len(table.header) - 1)
        return "| " + " | ".join(cell(c) for c in cells) + " |"

    lines = ["| " + " | ".join(_md_cell(h) for h in table.header) + " |", "|" + "---|" * len(table.header)]
    lines += [row(r) for r in table.rows]
    return "\n".join(lines)


def render_markdown(report: dict, metrics: Table, differences: Table, charts: dict[str, str]) -> str:
    names = [m["name"] for m in report["models"]]
    out = [f"# {report.get('title', 'Model comparison')}", ""]
    if report.get("created"):
        out += [f"_created {report['created']}_", ""]
    if report.get("command"):
        out += ["Regenerate with:", "", "```sh", report["command"], "```", ""]
    out += ["## Models", "", "| model | caption field | pipeline |", "|---|---|---|"]
    out += [f"| {_md_cell(m['name'])} | {_md_cell(m.get('caption_field', DASH))} | "
            + (f"`{_md_cell(m['path'])}` |" if m.get("path") else f"{DASH} |") for m in report["models"]]
    if report.get("settings"):
        out += ["", "## Settings", ""] + [f"- **{k}**: {v}" for k, v in report["settings"].items()]
    out += ["", "## Metrics", "", metrics_caption(report, markdown=True), "", _md_table(metrics), ""]
    out += [f"![{title}]({charts[name]})\n" for name, title in CHART_TITLES.items() if name in charts]
    if differences.rows:
        out += ["## Differences", "", "Paired bootstrap 95% CI of B − A over the same prompts and seeds.", "",
                _md_table(differences), ""]
    if report.get("notes"):
        out += ["## Notes", ""] + [f"{note}\n" for note in report["notes"]]
    if report.get("gallery"):
        out += ["## Gallery", "", "| prompt | " + " | ".join(map(_md_cell, names)) + " |", "|" + "---|" * (len(names) + 1)]
        for row in report["gallery"]:
            gifs = [f"![{_md_cell(n)}]({row['videos'][n]})" if row.get("videos", {}).get(n) else DASH for n in names]
            out.append(f"| {_md_cell(row.get('prompt', ''))} | " + " | ".join(gifs) + " |")
        out.append("")
    return "\n".join(out)


def metrics_caption(report: dict, markdown: bool) -> str:
    """The sentence under the metrics heading (``**bold**`` for Markdown, plain words for HTML)."""
    bold = "**bold**" if markdown else "bold"
    best = f"{bold} = best model of the row; " if len(report["models"]) > 1 else ""
    parts = [f"Mean over prompts with its bootstrap 95% CI in brackets; {best}↓ = lower is better; – = not measured."]
    parts += [f"*{name}*: {REFERENCE_HELP[name]}." for name in report.get("reference") or {} if name in REFERENCE_HELP]
    return " ".join(parts) if markdown else " ".join(p.replace("*", "") for p in parts)


# ---- charts -------------------------------------------------------------------------------------------

def write_charts(report: dict, chart_dir: Path) -> dict[str, str]:
    """``rates.png`` (grouped bars), ``quality.png`` and ``defects.png`` (one panel per category of that kind)
    and ``<key>.png`` per category. Returns chart name -> path relative to the report folder.

    Figures are ``matplotlib.figure.Figure`` objects, not pyplot ones: the Agg canvas is attached
    explicitly, so no global backend is switched and no figure is left registered (nothing to close).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def save(fig: Figure, name: str) -> None:
        FigureCanvasAgg(fig)
        fig.savefig(chart_dir / f"{name}.png")
        charts[name] = f"{chart_dir.name}/{name}.png"

    chart_dir.mkdir(parents=True, exist_ok=True)
    charts: dict[str, str] = {}
    for kind, name in [("rate", "rates"), ("judge", "judge")]:
        rates = [c for c in report["categories"] if c["kind"] == kind]
        if rates:
            fig = Figure(figsize=(max(6.5, 1.15 * len(rates) + 2.5), 4.2), dpi=110, layout="constrained")
            _grouped_rates(fig.add_subplot(), report, rates)
            save(fig, name)
    for kind, name in [("quality", "quality"), ("defect", "defects")]:
        cats = [c for c in report["categories"] if c["kind"] == kind]
        if cats:
            fig = Figure(figsize=(3.4 * len(cats) + 0.6, 3.4), dpi=110, layout="constrained")
            for ax, cat in zip(fig.subplots(1, len(cats), squeeze=False)[0], cats):
                _category(ax, report, cat)
            save(fig, name)
    for cat in report["categories"]:
        fig = Figure(figsize=(3.4, 3.0), dpi=100, layout="constrained")
        _category(fig.add_subplot(), report, cat)
        save(fig, cat["key"])
    return charts


def _errors(stats: list[dict | None]) -> tuple[np.ndarray, np.ndarray]:
    """Bar heights and asymmetric error lengths ``(2, N)``; NaN where a value or CI is missing."""
    mean = np.array([s["mean"] if s else np.nan for s in stats], dtype=float)
    lo = np.array([s["lo"] if s and s.get("lo") is not None else np.nan for s in stats], dtype=float)
    hi = np.array([s["hi"] if s and s.get("hi") is not None else np.nan for s in stats], dtype=float)
    return mean, np.clip(np.stack([mean - lo, hi - mean]), 0, None)


def _style(ax, title: str, wrap: int = 28) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title(textwrap.fill(title, wrap), fontsize=10)


def _grouped_rates(ax, report: dict, cats: list[dict]) -> None:
    """One group per category, one bar per model (CI as error bar), references as short lines per group."""
    names = [m["name"] for m in report["models"]]
    x, width = np.arange(len(cats)), 0.8 / len(names)
    for i, name in enumerate(names):
        mean, err = _errors([stat(report["metrics"].get(name), c["key"]) for c in cats])
        pos = x + (i - (len(names) - 1) / 2) * width
        ax.bar(pos, np.nan_to_num(mean), width * 0.9, yerr=err, capsize=3, color=f"C{i}", label=name,
               error_kw={"elinewidth": 1, "ecolor": "0.15"})
        for p in pos[np.isnan(mean)]:
            ax.text(p, 0.01, "n/a", ha="center", va="bottom", fontsize=8, color="0.4")
    for ref_name, ref in (report.get("reference") or {}).items():
        style = REFERENCE_STYLE.get(ref_name, {"color": "0.2", "linestyle": ":"})
        for j, cat in enumerate(cats):
            if s := stat(ref, cat["key"]):
                ax.hlines(s["mean"], x[j] - 0.46, x[j] + 0.46, linewidth=2, label=ref_name, **style)
    ax.set_xticks(x, [textwrap.fill(label(c), 14) for c in cats], fontsize=9)
    ax.set_ylim(0, 1.05)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("rate over prompts")
    _style(ax, "prompt following per category: mean over prompts, 95% CI", wrap=80)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))  # one legend entry per reference, not one per group
    ax.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def _category(ax, report: dict, cat: dict) -> None:
    """One category: a bar (rates, y from 0 to 1; defects, from 0 = none) or a point (quality scores) per model
    with its CI."""
    names = [m["name"] for m in report["models"]]
    mean, err = _errors([stat(report["metrics"].get(n), cat["key"]) for n in names])
    x, colors = np.arange(len(names)), [f"C{i}" for i in range(len(names))]
    if cat["kind"] in ("rate", "judge", "defect"):  # all start from 0: no hits, no defect
        ax.bar(x, np.nan_to_num(mean), 0.6, yerr=err, capsize=3, color=colors, error_kw={"elinewidth": 1})
        if cat["kind"] != "defect":
            ax.set_ylim(0, 1.05)
    else:  # quality scores live on their own scales (flicker ~0.97, CLIP ~0.3): no zero baseline
        for i in np.flatnonzero(~np.isnan(mean)):
            ax.errorbar(x[i], mean[i], yerr=err[:, i:i + 1], fmt="o", capsize=4, color=colors[i])
    for ref_name, ref in (report.get("reference") or {}).items():
        if s := stat(ref, cat["key"]):
            ax.axhline(s["mean"], linewidth=1.5, label=ref_name,
                       **REFERENCE_STYLE.get(ref_name, {"color": "0.2", "linestyle": ":"}))
    if cat["kind"] == "defect":  # after the reference lines, so a ceiling above the bars stays in view
        ax.set_ylim(bottom=0)
    for i in np.flatnonzero(np.isnan(mean)):
        ax.text(x[i], ax.get_ylim()[0], "n/a", ha="center", va="bottom", fontsize=8, color="0.4")
    ax.set_xticks(x, names, fontsize=9, rotation=30 if len(names) > 3 else 0)
    ax.set_xlim(-0.6, len(names) - 0.4)
    _style(ax, label(cat))
    if refs := len(ax.get_legend_handles_labels()[0]):  # below the axes: inside, it hides lines or bars
        ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=refs)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _json_default(o):
    if hasattr(o, "tolist"):  # numpy scalars and arrays
        return o.tolist()
    raise TypeError(f"report.json: {type(o).__name__} value {o!r} is not JSON serialisable")
