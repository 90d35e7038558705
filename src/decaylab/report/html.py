"""Render report sections as one self-contained, offline HTML page.

The page needs no server and loads nothing from anywhere: images are PNG ``data:`` URIs,
the style sheet and the one small script are inline, and a Content-Security-Policy forbids
every other source (only the hashes of our own style and script may run). Every string that
comes from data or arguments is HTML-escaped; data handed to the script sits in
``<script type="application/json">`` blocks with ``<``, ``>``, ``&`` written as ``\\u003c`` etc.,
so no value can close the block.

A :class:`~decaylab.report.model.Slider` becomes an ``<input type=range>`` over its frames;
moving it swaps the shown image's ``src``, the value label (``λ = 0.01``) and the caption.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import numbers
from collections.abc import Sequence
from html import escape
from typing import Any

from decaylab import __version__
from decaylab.report.checks import check_sections, check_text
from decaylab.report.model import Figure, Section, Slider, Table

STYLE = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #dde1e8; --accent: #2457c5; --panel: #f5f6f8; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
  font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header.top { border-bottom: 1px solid var(--line); background: var(--panel); }
header.top .inner, .layout { max-width: 82rem; margin: 0 auto; padding: 0 1.5rem; }
header.top h1 { margin: 0; padding: 1.4rem 0 0.3rem; font-size: 1.7rem; }
header.top .intro { margin: 0 0 1.2rem; color: var(--muted); max-width: 60rem; }
.layout { display: grid; grid-template-columns: 15rem minmax(0, 1fr); gap: 2.5rem; }
nav.toc { position: sticky; top: 0; align-self: start; max-height: 100vh; overflow: auto; padding: 1.5rem 0; }
nav.toc h2 { font-size: 0.8rem; text-transform: uppercase; letter-spacing: 0.06em; color: var(--muted); margin: 0 0 0.5rem; }
nav.toc ul { margin: 0; padding: 0; list-style: none; }
nav.toc li { margin: 0.35rem 0; line-height: 1.35; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
main { min-width: 0; padding-bottom: 3rem; }
section.study { padding: 1.5rem 0 1rem; border-bottom: 1px solid var(--line); }
section.study h2 { margin: 0 0 0.6rem; font-size: 1.35rem; }
section.study p { max-width: 60rem; margin: 0 0 0.8rem; }
.figures { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 1.2rem; margin: 1rem 0; }
figure { margin: 0; flex: 1 1 20rem; min-width: 0; max-width: 100%; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; background: #fff; }
figcaption, .frame-caption, caption { color: var(--muted); font-size: 0.9rem; margin-top: 0.35rem; }
.slider { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 1rem;
  margin: 1rem 0; width: fit-content; min-width: min(100%, 22rem); max-width: 100%; }
.slider .control { margin-bottom: 0.8rem; }
.slider output { display: block; font-weight: 600; font-variant-numeric: tabular-nums; margin-bottom: 0.3rem; }
.slider input[type=range] { display: block; width: 100%; margin: 0; accent-color: var(--accent); }
.slider .ticks { display: flex; justify-content: space-between; color: var(--muted); font-size: 0.78rem;
  font-variant-numeric: tabular-nums; }
.slider img { display: block; max-width: 100%; height: auto; background: #fff; border: 1px solid var(--line); border-radius: 4px; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); white-space: nowrap; }
.table-wrap { overflow-x: auto; margin: 1rem 0; }
table { border-collapse: collapse; font-size: 0.92rem; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; margin-bottom: 0.35rem; }
th, td { padding: 0.3rem 0.8rem; border-bottom: 1px solid var(--line); text-align: left; }
th { background: var(--panel); font-weight: 600; }
td.num { text-align: right; }
footer { color: var(--muted); font-size: 0.85rem; padding: 1.5rem 0; }
@media (max-width: 900px) {
  .layout { grid-template-columns: 1fr; gap: 0; }
  nav.toc { position: static; max-height: none; padding-bottom: 0; }
}
"""

SCRIPT = """
document.querySelectorAll("[data-slider]").forEach(function (box) {
  var frames = JSON.parse(box.querySelector("script[type='application/json']").textContent);
  var input = box.querySelector("input[type=range]");
  var img = box.querySelector("img");
  var output = box.querySelector("output");
  var caption = box.querySelector(".frame-caption");
  function show(i) {
    img.src = frames.srcs[i];
    img.alt = frames.alts[i];
    output.textContent = frames.values[i];
    caption.textContent = frames.captions[i];
  }
  input.addEventListener("input", function () { show(Number(input.value)); });
  show(Number(input.value));
});
"""


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii") + "'"


CONTENT_SECURITY_POLICY = (f"default-src 'none'; img-src data:; style-src {_csp_hash(STYLE)}; "
                           f"script-src {_csp_hash(SCRIPT)}; base-uri 'none'; form-action 'none'")


def script_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element: ``<``, ``>``, ``&`` and line separators escaped."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    for char, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                       ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, code)
    return text


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(bytes(png)).decode("ascii")


def format_number(value: float) -> str:
    """A number as a person reads it in a table or slider label: 4 significant digits, ints exact."""
    if isinstance(value, numbers.Integral):
        return str(int(value))
    value = float(value)
    if math.isnan(value):
        return "nan"
    return f"{value:.4g}"


def format_cell(value: Any, missing: str = "—") -> tuple[str, bool]:
    """A table cell's text and whether it is a number (numbers are right-aligned)."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        value = value.item()
    if value is None:
        return missing, True
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return format_number(value), True
    return str(value), False


def _cell(value: Any) -> str:
    text, numeric = format_cell(value)
    return f'<td class="num">{escape(text)}</td>' if numeric else f"<td>{escape(text)}</td>"


def _paragraphs(text: str, css_class: str = "") -> str:
    """Blank-line-separated blocks of ``text`` as escaped ``<p>`` elements."""
    blocks = [block.strip() for block in text.split("\n\n") if block.strip()]
    attribute = f' class="{css_class}"' if css_class else ""
    return "\n".join(f"<p{attribute}>{escape(block)}</p>" for block in blocks)


def _figure(figure: Figure) -> str:
    caption = f"<figcaption>{escape(figure.caption)}</figcaption>" if figure.caption else ""
    alt = figure.caption or figure.name
    return (f'<figure id="fig-{escape(figure.name)}"><img src="{png_data_uri(figure.png)}" '
            f'alt="{escape(alt)}">{caption}</figure>')


def _table(table: Table) -> str:
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    head = "".join(f'<th scope="col">{escape(column)}</th>' for column in table.columns)
    body = "\n".join("<tr>" + "".join(_cell(cell) for cell in row) + "</tr>" for row in table.rows)
    return (f'<div class="table-wrap"><table>{caption}<thead><tr>{head}</tr></thead>'
            f"<tbody>\n{body}\n</tbody></table></div>")


def _slider(key: str, slider: Slider) -> str:
    frames = list(slider.frames)
    values = [f"{slider.label} = {format_number(v)}" for v in slider.values]
    captions = list(slider.captions) or [frame.caption for frame in frames]
    data = {
        "srcs": [png_data_uri(frame.png) for frame in frames],
        "alts": [frame.caption or f"{frame.name} ({value})" for frame, value in zip(frames, values)],
        "values": values,
        "captions": captions,
    }
    input_id = f"slider-{escape(key)}"
    ticks = "".join(f"<span>{escape(format_number(v))}</span>" for v in slider.values)
    return (f'<div class="slider" data-slider="{escape(key)}"><div class="control">'
            f'<label class="visually-hidden" for="{input_id}">{escape(slider.label)}</label>'
            f'<output for="{input_id}">{escape(values[0])}</output>'
            f'<input type="range" id="{input_id}" min="0" max="{len(frames) - 1}" step="1" value="0">'
            f'<div class="ticks" aria-hidden="true">{ticks}</div></div>'
            f'<img src="{data["srcs"][0]}" alt="{escape(data["alts"][0])}">'
            f'<p class="frame-caption">{escape(captions[0])}</p>'
            f'<script type="application/json">{script_json(data)}</script></div>')


def _section(section: Section) -> str:
    parts = [f'<section class="study" id="{escape(section.key)}">',
             f"<h2>{escape(section.title)}</h2>", _paragraphs(section.text)]
    if section.slider is not None:
        parts.append(_slider(section.key, section.slider))
    if section.figures:
        parts.append('<div class="figures">' + "".join(_figure(f) for f in section.figures) + "</div>")
    parts.extend(_table(table) for table in section.tables)
    parts.append("</section>")
    return "\n".join(parts)


def render_html(title: str, sections: Sequence[Section], intro: str = "") -> str:
    """The whole page as a string: header, table of contents, one ``<section>`` per study.

    Section titles are shown as given (number them in the title if the order matters).
    """
    check_text("title", title)
    check_text("intro", intro)
    sections = check_sections(sections)
    toc = "\n".join(f'<li><a href="#{escape(s.key)}">{escape(s.title)}</a></li>' for s in sections)
    body = "\n".join(_section(s) for s in sections)
    intro_html = _paragraphs(intro, "intro")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{escape(CONTENT_SECURITY_POLICY)}">
<meta name="generator" content="decaylab {escape(__version__)}">
<title>{escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<header class="top"><div class="inner"><h1>{escape(title)}</h1>{intro_html}</div></header>
<div class="layout">
<nav class="toc" aria-label="Contents"><h2>Contents</h2><ul>
{toc}
</ul></nav>
<main>
{body}
<footer>Made by decaylab {escape(__version__)}. Every number on this page is also in summary.json beside it.</footer>
</main>
</div>
<script>{SCRIPT}</script>
</body>
</html>
"""
