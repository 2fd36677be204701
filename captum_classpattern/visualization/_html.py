"""One self-contained HTML page from tables, figures and settings: no external assets, no network.

Figures are embedded as PNG data URIs, tables sort when a header is clicked (a few lines of
inline JavaScript), and every piece of text is escaped with :func:`html.escape`. The page
declares a Content-Security-Policy that forbids loading anything from outside it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ReportImage = Union["Figure", bytes, np.ndarray]
"""An image of a report: a matplotlib figure, PNG bytes, or an H x W (x 3) float array in [0, 1]."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #e4e4e4; text-align: left; }
th.number, td.number { text-align: right; }
table.sortable thead th { cursor: pointer; user-select: none; background: #f3f3f3; }
table.sortable thead th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable thead th[aria-sort=descending]::after { content: " \\25BC"; }
tfoot td { font-weight: bold; border-top: 2px solid #999; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
img.picture { image-rendering: pixelated; width: 8em; }
figcaption { color: #555; font-size: 0.9em; }
"""

# Sort a table's body rows by the clicked column: numerically when both cells hold numbers
# (their data-sort value), as text otherwise; a second click reverses the order.
_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var headers = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(headers, function (header, column) {
    header.addEventListener("click", function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var ascending = header.getAttribute("aria-sort") !== "ascending";
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.sort, y = b.cells[column].dataset.sort;
        var numeric = x !== "" && y !== "" && !isNaN(Number(x)) && !isNaN(Number(y));
        var order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
        return ascending ? order : -order;
      });
      Array.prototype.forEach.call(headers, function (other) { other.removeAttribute("aria-sort"); });
      header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


@dataclass(frozen=True)
class ReportFigure:
    """An image of a report with its caption.

    Attributes:
        image: a matplotlib figure, PNG bytes, or an H x W (x 3) float array in [0, 1]
            (a small picture such as a pattern: drawn enlarged with sharp pixels).
        caption: text under the image (escaped).

    Raises:
        TypeError: ``image`` is none of these, or ``caption`` is not a string.
        ValueError: bytes that are not a PNG file, or an array of another shape.
    """

    image: ReportImage
    caption: str = ""

    def __post_init__(self) -> None:
        """Check the image and the caption."""
        if not isinstance(self.caption, str):
            raise TypeError(f"caption must be a string, got {type(self.caption).__name__}.")
        if isinstance(self.image, (bytes, bytearray)):
            if not bytes(self.image).startswith(_PNG_SIGNATURE):
                raise ValueError("image bytes must be a PNG file (they do not start with the PNG signature).")
        elif isinstance(self.image, np.ndarray):
            if self.image.ndim not in (2, 3) or (self.image.ndim == 3 and self.image.shape[2] not in (3, 4)):
                raise ValueError(
                    f"an image array must be H x W or H x W x 3 (or 4), got shape {tuple(self.image.shape)}."
                )
        elif not callable(getattr(self.image, "savefig", None)):
            raise TypeError(
                "image must be a matplotlib Figure, PNG bytes or an H x W (x 3) array, "
                f"got {type(self.image).__name__}."
            )


@dataclass(frozen=True)
class ReportSection:
    """A titled part of a report page; each part that is given is drawn in this order.

    Attributes:
        title: the section heading.
        text: paragraphs (separated by blank lines), escaped.
        settings: key-value pairs drawn as a two-column table (numbers to four significant
            digits, nested values as JSON).
        table: rows as mappings from column name to value, drawn as a table sortable by
            clicking a header; the columns are the keys in order of first appearance.
        footer: one summary row under the table (e.g. the means), not sorted with it.
        figures: images, each a :class:`ReportFigure` or a bare image (see :data:`ReportImage`).

    Raises:
        TypeError: a part of the wrong type.
    """

    title: str
    text: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    table: Sequence[Mapping[str, Any]] = ()
    footer: Optional[Mapping[str, Any]] = None
    figures: Sequence[Union[ReportFigure, ReportImage]] = ()

    def __post_init__(self) -> None:
        """Check the parts and wrap bare images in :class:`ReportFigure`."""
        for name in ("title", "text"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string, got {type(getattr(self, name)).__name__}.")
        if not isinstance(self.settings, Mapping):
            raise TypeError(f"settings must be a mapping, got {type(self.settings).__name__}.")
        if isinstance(self.table, (str, bytes, Mapping)) or not all(isinstance(row, Mapping) for row in self.table):
            raise TypeError("table must be a sequence of mappings, one per row (column name -> value).")
        if self.footer is not None and not isinstance(self.footer, Mapping):
            raise TypeError(f"footer must be a mapping (column name -> value), got {type(self.footer).__name__}.")
        if isinstance(self.figures, (bytes, np.ndarray)) or callable(getattr(self.figures, "savefig", None)):
            raise TypeError("figures must be a sequence of images: wrap a single image in a list.")
        figures = tuple(item if isinstance(item, ReportFigure) else ReportFigure(item) for item in self.figures)
        object.__setattr__(self, "figures", figures)
        object.__setattr__(self, "table", tuple(self.table))


def png_bytes(image: ReportImage, dpi: int = 120, **savefig_kwargs: Any) -> bytes:
    """An image as PNG bytes.

    Args:
        image: a matplotlib figure, PNG bytes (returned as they are), or an H x W (x 3)
            float array in [0, 1].
        dpi: resolution of a figure.
        **savefig_kwargs: passed to ``Figure.savefig`` (e.g. ``bbox_inches="tight"``).

    Returns:
        The PNG file's bytes.

    Raises:
        TypeError: not an image.

    Example:
        >>> fig, _ = plot_scan(result, use_pyplot=False)
        >>> open("scan.png", "wb").write(png_bytes(fig, bbox_inches="tight"))
    """
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    buffer = io.BytesIO()
    if isinstance(image, np.ndarray):
        from matplotlib.image import imsave

        imsave(buffer, np.clip(image, 0, 1), format="png", cmap="gray" if image.ndim == 2 else None)
    elif callable(getattr(image, "savefig", None)):
        image.savefig(buffer, format="png", dpi=dpi, **savefig_kwargs)
    else:
        raise TypeError(f"not an image: {type(image).__name__} (give a Figure, PNG bytes or an array).")
    return buffer.getvalue()


def _cell_text(value: Any, float_format: str) -> str:
    if value is None:
        return "\u2013"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return float_format.format(value) if math.isfinite(value) else str(value)
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _sort_key(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(int(value))
    if isinstance(value, (int, float)) and math.isfinite(value):
        return repr(value)
    return _cell_text(value, "{}")


def _table(
    rows: Sequence[Mapping[str, Any]], footer: Optional[Mapping[str, Any]], float_format: str, index: int
) -> str:
    columns: Dict[str, None] = {}
    for row in [*rows, *([footer] if footer else [])]:
        columns.update(dict.fromkeys(str(key) for key in row))
    table = [{str(key): value for key, value in row.items()} for row in rows]
    align = {
        name: ' class="number"' if all(_is_number(values.get(name)) for values in table) else "" for name in columns
    }
    head = "".join(f'<th scope="col"{align[name]}>{html.escape(name)}</th>' for name in columns)
    lines = [f'<table class="sortable" id="table-{index}">', f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    for values in table:
        cells = "".join(
            f'<td{align[name]} data-sort="{html.escape(_sort_key(values.get(name)))}">'
            f"{html.escape(_cell_text(values.get(name), float_format))}</td>"
            for name in columns
        )
        lines.append(f"<tr>{cells}</tr>")
    lines.append("</tbody>")
    if footer:
        values = {str(key): value for key, value in footer.items()}
        cells = "".join(
            f"<td{align[name]}>{html.escape(_cell_text(values[name], float_format)) if name in values else ''}</td>"
            for name in columns
        )
        lines.append(f"<tfoot><tr>{cells}</tr></tfoot>")
    lines.append("</table>")
    return "\n".join(lines)


def _settings(settings: Mapping[str, Any]) -> str:
    rows = "".join(
        f'<tr><th scope="row">{html.escape(str(key))}</th><td>{html.escape(_cell_text(value, "{:.4g}"))}</td></tr>'
        for key, value in settings.items()
    )
    return f'<table class="settings"><tbody>{rows}</tbody></table>'


def _figure(figure: ReportFigure, dpi: int) -> str:
    data = base64.b64encode(png_bytes(figure.image, dpi=dpi, bbox_inches="tight")).decode("ascii")
    css = ' class="picture"' if isinstance(figure.image, np.ndarray) else ""
    alt = html.escape(figure.caption or "figure", quote=True)
    caption = f"<figcaption>{html.escape(figure.caption)}</figcaption>" if figure.caption else ""
    return f'<figure><img{css} alt="{alt}" src="data:image/png;base64,{data}">{caption}</figure>'


def html_report(title: str, sections: Sequence[ReportSection], *, float_format: str = "{:.3f}", dpi: int = 120) -> str:
    """One self-contained HTML page: a title, then each section's text, settings, table and figures.

    Nothing on the page is loaded from elsewhere: figures are PNG data URIs, the style and
    the table-sorting script are inline, and a Content-Security-Policy forbids any other
    source. All text (titles, cells, keys, captions) is escaped.

    Args:
        title: the page title and heading.
        sections: the parts of the page, in order.
        float_format: format of floating-point table cells.
        dpi: resolution of matplotlib figures.

    Returns:
        The page, as a string (write it with UTF-8 encoding).

    Raises:
        TypeError: ``title`` is not a string or a section is not a :class:`ReportSection`.

    Example:
        >>> rows = [{"class": "cat", "power": 0.91}, {"class": "dog", "power": 0.42}]
        >>> page = html_report("Patterns", [ReportSection("Classes", table=rows, figures=[fig])])
        >>> open("report.html", "w", encoding="utf-8").write(page)
    """
    if not isinstance(title, str):
        raise TypeError(f"title must be a string, got {type(title).__name__}.")
    if isinstance(sections, ReportSection) or not all(isinstance(s, ReportSection) for s in sections):
        raise TypeError("sections must be a sequence of ReportSection.")
    body: List[str] = [f"<h1>{html.escape(title)}</h1>"]
    for index, section in enumerate(sections):
        body.append(f"<section><h2>{html.escape(section.title)}</h2>")
        for paragraph in (p for p in section.text.split("\n\n") if p.strip()):
            body.append(f"<p>{html.escape(paragraph.strip())}</p>")
        if section.settings:
            body.append(_settings(section.settings))
        if section.table:
            body.append(_table(section.table, section.footer, float_format, index))
        for figure in section.figures:
            body.append(_figure(figure if isinstance(figure, ReportFigure) else ReportFigure(figure), dpi))
        body.append("</section>")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{_STYLE}</style>",
            "</head>",
            "<body>",
            *body,
            f"<script>{_SCRIPT}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )
