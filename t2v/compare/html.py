"""Render the ``t2v compare`` report as one self-contained static HTML page.

CSS is inline; charts and GIFs are referenced by relative path, so the report folder can be copied or
served as it is. Every piece of text from the report goes through :func:`html.escape`.
"""

from __future__ import annotations

import re
from html import escape
from urllib.parse import quote

from t2v.compare.report import CHART_TITLES, DASH, Cell, Table, metrics_caption

GIF_WIDTH = 160  # display size of gallery GIFs, px (upscaled without smoothing)

CSS = f"""
*{{box-sizing:border-box}}
body{{margin:0;background:#eef0f3;color:#1d2430;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}}
main{{max-width:1120px;margin:0 auto;padding:28px 36px 48px;background:#fff;min-height:100vh}}
h1{{font-size:1.75em;margin:0 0 .1em}}
h2{{font-size:1.2em;margin:1.8em 0 .6em;padding-bottom:.2em;border-bottom:1px solid #e3e6ea}}
.meta,.caption{{color:#5b6472;font-size:.9em}}
pre{{background:#f3f5f8;border:1px solid #dde1e6;border-radius:6px;padding:10px 12px;white-space:pre-wrap;
word-break:break-all;margin:.3em 0}}
code{{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}}
p code{{background:#f3f5f8;padding:1px 4px;border-radius:3px}}
table{{border-collapse:collapse;margin:.5em 0 1em}}
th,td{{border:1px solid #d5dae0;padding:5px 10px;text-align:left;vertical-align:top}}
th{{background:#f0f2f5;font-weight:600}}
td.num{{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}}
td.best{{font-weight:700;background:#eef6ff}}
.ci{{color:#6b7482;font-size:.85em;font-weight:400}}
.ref{{color:#5b6472;font-style:italic;background:#fafbfc}}
td.group{{font-weight:600;background:#f0f2f5;color:#3a4352}}
.settings td:first-child{{color:#5b6472}}
.charts img{{max-width:100%;border:1px solid #e3e6ea;border-radius:4px}}
.side{{display:flex;flex-wrap:wrap;gap:0 48px}}
details{{margin-top:6px}} summary{{cursor:pointer;color:#3a5a8c}}
.small{{display:flex;flex-wrap:wrap;gap:10px;margin-top:10px}}
.small img{{width:250px}}
.gallery td.prompt{{max-width:420px;font-size:.88em}}
.gallery td.prompt div{{max-height:14em;overflow:auto}}
.gallery img{{display:block;width:{GIF_WIDTH}px;height:auto;image-rendering:pixelated;background:#000}}
.scores{{margin-top:4px;max-width:{GIF_WIDTH}px;font-size:.78em;line-height:1.7}}
.scores span{{display:inline-block;padding:0 5px;margin:0 3px 2px 0;border-radius:3px;background:#eef0f3}}
.scores .ok{{background:#dcf3e1;color:#1e6b33}}
.scores .no{{background:#fbe1e1;color:#8a1f1f}}
footer{{margin-top:3em;color:#8a93a0;font-size:.8em}}
"""


def render_html(report: dict, metrics: Table, differences: Table, charts: dict[str, str]) -> str:
    """The whole page as a string; ``charts`` maps chart name -> path relative to the report folder."""
    title = escape(report.get("title", "Model comparison"))
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{title}</title><style>{CSS}</style></head><body><main>"]

    # 1. Header and the command that regenerates the report
    out.append(f"<h1>{title}</h1>")
    if report.get("created"):
        out.append(f'<div class="meta">created {escape(str(report["created"]))}</div>')
    if report.get("command"):
        out.append(f"<h2>Regenerate</h2><pre><code>{escape(report['command'])}</code></pre>")

    # 2. Models and settings, side by side
    out.append('<div class="side"><section><h2>Models</h2><table><thead><tr><th>model</th><th>caption field</th>'
               "<th>pipeline</th></tr></thead><tbody>")
    for m in report["models"]:
        out.append(f"<tr><td>{escape(m['name'])}</td><td>{escape(str(m.get('caption_field', DASH)))}</td>"
                   f"<td><code>{escape(str(m.get('path', DASH)))}</code></td></tr>")
    out.append("</tbody></table></section>")
    if report.get("settings"):
        out.append('<section><h2>Settings</h2><table class="settings"><tbody>')
        out += [f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>" for k, v in report["settings"].items()]
        out.append("</tbody></table></section>")
    out.append("</div>")

    # 3. Metrics table and charts
    out.append(f'<h2>Metrics</h2><p class="caption">{escape(metrics_caption(report, markdown=False))}</p>')
    out.append(_table(metrics, ref_columns=len(report.get("reference") or {}), class_="metrics"))
    out.append('<div class="charts">')
    out += [f'<img src="{_src(charts[name])}" alt="{escape(alt)}">' for name, alt in CHART_TITLES.items()
            if name in charts]
    small = [f'<img src="{_src(charts[c["key"]])}" alt="{escape(c.get("label", c["key"]))}">'
             for c in report["categories"] if c["key"] in charts]
    if small:
        out.append(f'<details><summary>one chart per category</summary><div class="small">{"".join(small)}</div></details>')
    out.append("</div>")

    # 4. Differences
    if differences.rows:
        out.append('<h2>Differences</h2><p class="caption">Paired bootstrap 95% CI of B − A over the same prompts '
                   "and seeds; bold = the CI excludes 0.</p>")
        out.append(_table(differences, ref_columns=0, class_="differences"))

    # 5. Notes
    if report.get("notes"):
        out.append("<h2>Notes</h2>")
        out += [f"<p>{_inline_markdown(p)}</p>" for note in report["notes"] for p in str(note).split("\n\n") if p.strip()]

    # 6. Gallery: one row per prompt, one column per model
    if report.get("gallery"):
        out.append(_gallery(report))
    out.append("<footer>written by t2v.compare.report</footer></main></body></html>")
    return "\n".join(out) + "\n"


def _table(table: Table, ref_columns: int, class_: str) -> str:
    """``table`` as HTML; the ``ref_columns`` columns before the last are reference columns."""
    first_ref = len(table.header) - 1 - ref_columns if ref_columns else len(table.header)
    head = "".join(f'<th{" class=ref" if first_ref <= i < first_ref + ref_columns else ""}>{escape(h)}</th>'
                   for i, h in enumerate(table.header))
    rows = [f'<tr><td class="group" colspan="{len(table.header)}">{escape(row[0].text)}</td></tr>' if len(row) == 1
            else "<tr>" + "".join(_cell(c, numeric=i > 0) for i, c in enumerate(row)) + "</tr>" for row in table.rows]
    return f'<table class="{class_}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _cell(c: Cell, numeric: bool) -> str:
    classes = [k for k, on in [("num", numeric and bool(c.text) and c.text[0] in "+-–0123456789"), ("best", c.best), ("ref", c.ref)] if on]
    ci = f' <span class="ci">{escape(c.ci)}</span>' if c.ci else ""
    attr = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{attr}>{escape(c.text)}{ci}</td>"


def _gallery(report: dict) -> str:
    names = [m["name"] for m in report["models"]]
    kinds = {c["key"]: c for c in report["categories"]}
    head = "<th>prompt</th>" + "".join(f"<th>{escape(n)}</th>" for n in names)
    rows = []
    for row in report["gallery"]:
        prompt = str(row.get("prompt", ""))
        cells = [f'<td class="prompt"><div>{escape(prompt)}</div></td>']
        for n in names:
            src = (row.get("videos") or {}).get(n)
            img = (f'<img src="{_src(src)}" alt="{escape(n)}: {escape(prompt[:80])}" width="{GIF_WIDTH}" loading="lazy">'
                   if src else DASH)
            cells.append(f"<td>{img}{_scores((row.get('scores') or {}).get(n), kinds)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<h2>Gallery</h2><table class="gallery"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _scores(scores: dict | None, cats: dict[str, dict]) -> str:
    """Per-video scores as small chips: ✓/✗ for pass/fail rates, the number otherwise."""
    if not scores:
        return ""
    chips = []
    for key, value in scores.items():
        cat = cats.get(key, {})
        tip = escape(cat.get("label", key))
        if value is None:
            chips.append(f'<span title="{tip}">{escape(key)} {DASH}</span>')
        elif cat.get("kind") in ("rate", "judge") and value in (0, 1):
            chips.append(f'<span class="{"ok" if value else "no"}" title="{tip}">{escape(key)} {"✓" if value else "✗"}</span>')
        else:
            shown = f"{value:.3g}" if isinstance(value, (int, float)) else str(value)
            chips.append(f'<span title="{tip}">{escape(key)} {escape(shown)}</span>')
    return f'<div class="scores">{"".join(chips)}</div>'


def _inline_markdown(text: str) -> str:
    """Escape ``text``, then render `code` spans and **bold** (the only Markdown notes may use)."""
    parts = re.split(r"`([^`]+)`", text)  # odd indices are code spans
    return "".join(f"<code>{escape(p)}</code>" if i % 2 else re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escape(p))
                   for i, p in enumerate(parts))


def _src(path: str) -> str:
    """A relative path as a safe attribute value (percent-encoded, so ``javascript:`` stays a file name)."""
    return escape(quote(str(path)), quote=True)
