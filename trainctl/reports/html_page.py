"""The pieces of a self-contained HTML page: escaped text, tables, embedded PNG images, sections, and
the page around them with its stylesheet.

Self-contained means it opens anywhere, offline, years later: no scripts, no fonts or stylesheets
from the network, every image a `data:` URI. Every string that reaches the page goes through
`text()`, so a run, class or file name holding `<`, `&` or quotes shows as written and never
becomes markup; only fragments built here (`Html`) are taken as markup.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from typing import Any


class Html(str):
    """Markup built by this module: taken as it is, where any other string is escaped."""


class TableCell(Html):
    """A <td> built with its own attributes (number_cell); a table takes it as the cell itself."""


Cell = Any  # a string or number (escaped), Html (the cell's content) or a TableCell


def text(value: Any) -> Html:
    """Any value as page text: Html as it is, everything else escaped (quotes too, for attributes)."""
    if isinstance(value, Html):
        return value
    return Html(html.escape(str(value), quote=True))


def join(parts: Iterable[Any]) -> Html:
    return Html("".join(text(part) for part in parts))


def element(tag: str, *content: Any, **attributes: Any) -> Html:
    """<tag attributes>content</tag>; a trailing underscore lets a keyword name `class_`, None leaves it out."""
    shown = "".join(
        f' {name.rstrip("_").replace("_", "-")}="{text(value)}"'
        for name, value in attributes.items()
        if value is not None
    )
    return Html(f"<{tag}{shown}>{join(content)}</{tag}>")


def png_image(png: bytes, alt: str, class_: str | None = None) -> Html:
    """An <img> whose source is the PNG itself, as a data: URI."""
    source = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return Html(f'<img src="{source}" alt="{text(alt)}"' + (f' class="{text(class_)}"' if class_ else "") + ">")


def number_cell(value: float | int | None, shown: str | None = None, best: bool = False) -> TableCell:
    """A right-aligned cell showing a rounded number (bold when `best`); data-value keeps it at full precision."""
    style = "number best" if best else "number"
    if value is None:
        return TableCell(element("td", "—", class_=style))
    content = shown if shown is not None else format_number(value)
    return TableCell(element("td", content, class_=style, data_value=repr(value)))


def format_number(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e5 else f"{value:.4g}"


def table(header: list[Any], rows: Iterable[list[Cell]], caption: str | None = None, class_: str | None = None) -> Html:
    """A table under its caption; a TableCell (number_cell) is its own <td>, any other value becomes
    one's content. (The caption is a paragraph, not <caption>: that one wraps at the table's width.)"""
    head = element("thead", element("tr", *(element("th", name) for name in header)))
    cells = (element("tr", *(c if isinstance(c, TableCell) else element("td", c) for c in row)) for row in rows)
    body = element("tbody", *cells)
    shown = element("table", head, body, class_=class_)
    return join([paragraph(caption, class_="caption"), shown]) if caption else shown


def section(title: str, *content: Any, level: int = 2, id_: str | None = None) -> Html:
    return element("section", element(f"h{level}", title), *content, id=id_)


def paragraph(*content: Any, class_: str | None = None) -> Html:
    return element("p", *content, class_=class_)


def preformatted(value: str) -> Html:
    return element("pre", value)


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1.5em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #d0d0d7; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.1em; margin-top: 1.6em; }
h4 { font-size: 1em; margin: 1em 0 0.3em; }
.meta { color: #55555d; margin-top: 0; }
.note { color: #55555d; font-size: 0.92em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.92em; }
p.caption { font-weight: 600; margin: 1em 0 0.3em; }
p.caption + table { margin-top: 0; }
th, td { border: 1px solid #d0d0d7; padding: 0.25em 0.6em; text-align: left; vertical-align: middle; }
th { background: #f2f2f5; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: 700; }
img { max-width: 100%; height: auto; }
img.thumbnail { image-rendering: pixelated; width: 64px; height: auto; border: 1px solid #d0d0d7; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 1em; }
.small-figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 0.8em; }
.small-figures figure { margin: 0; }
figure { margin: 0.5em 0; }
figcaption { color: #55555d; font-size: 0.9em; }
pre { background: #f6f6f8; border: 1px solid #d0d0d7; padding: 0.8em; overflow-x: auto; font-size: 0.88em; }
details { margin: 0.4em 0 1em; }
summary { cursor: pointer; color: #33333b; }
"""


def page(title: str, *content: Any, subtitle: str = "") -> str:
    """The whole HTML document: its title, the stylesheet inline, and the content."""
    head = Html(
        '<meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{text(title)}</title><style>{STYLE}</style>"
    )
    header = element("header", element("h1", title), *([paragraph(subtitle, class_="meta")] if subtitle else []))
    return f'<!DOCTYPE html>\n<html lang="en"><head>{head}</head><body>{header}{join(content)}</body></html>\n'
