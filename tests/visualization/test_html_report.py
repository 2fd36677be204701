"""The HTML report: one self-contained, escaped, well-formed page, checked in a real browser engine.

The browser tests run Debian's ``chromium`` headless with ``--dump-dom`` on a copy of the page
with a probe script added: after the page has loaded, the probe writes into the DOM whether each
image decoded, how many rows each table has, and the order of the rows after clicking a header.
Without chromium they are skipped (``.ci/run`` installs it and sets
``CLASSPATTERN_REQUIRE_BROWSER=1``, under which a missing browser fails instead).
"""

from __future__ import annotations

import base64
import html
import json
import os
import platform
import re
import shutil
import subprocess
import textwrap
from html.parser import HTMLParser

import numpy as np
import pytest
from matplotlib.figure import Figure

from captum_classpattern.cli import main
from captum_classpattern.cli._report import search_page
from captum_classpattern.pipeline import ClassReport, SearchReport
from captum_classpattern.visualization import ReportFigure, ReportSection, html_report, png_bytes

HOSTILE = "<script>alert('x')</script> & <b>bold</b>"
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "embed", "source", "track", "wbr"}
PNG = b"\x89PNG\r\n\x1a\n"


def _figure():
    fig = Figure(figsize=(2, 1.5))
    fig.add_subplot().plot([0, 1, 2], [2, 0, 1])
    return fig


class Page(HTMLParser):
    """What a page holds, read with the standard library's parser; fails on unbalanced tags."""

    def __init__(self, text):
        super().__init__()
        self.stack, self.images, self.links, self.scripts = [], [], [], 0
        self.body_rows, self.in_body = [], False
        self.feed(text)
        self.close()
        assert self.stack == [], f"unclosed tags: {self.stack}"

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        self.links += [attrs[a] for a in ("href", "src") if a in attrs and tag != "img"]
        self.scripts += tag == "script"
        if tag == "tbody":
            self.in_body = True
            self.body_rows.append(0)
        if tag == "tr" and self.in_body:
            self.body_rows[-1] += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()
        if tag == "tbody":
            self.in_body = False


def _sample_page(rows=5):
    table = [
        {"class": f"c{i}", "power": (i * 7 % 5) / 4, "k": 10 * i, "note": HOSTILE if i == 0 else None}
        for i in range(rows)
    ]
    picture = np.linspace(0, 1, 48).reshape(4, 4, 3)
    return html_report(
        HOSTILE,
        [
            ReportSection(
                "Classes " + HOSTILE,
                text="First paragraph " + HOSTILE + "\n\nSecond paragraph.",
                table=table,
                footer={"class": "mean", "power": 0.5},
            ),
            ReportSection(
                "Figures",
                figures=[
                    _figure(),
                    ReportFigure(png_bytes(_figure()), caption="caption " + HOSTILE),
                    ReportFigure(picture, "a small picture"),
                ],
            ),
            ReportSection("Settings", settings={"k": 0.05, HOSTILE: HOSTILE, "nested": {"a": [1, 2]}, "none": None}),
        ],
    )


def test_the_page_is_well_formed_self_contained_and_escaped():
    text = _sample_page()
    page = Page(text)
    assert text.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in text
    assert page.scripts == 1 and text.count("<script>") == 1  # only the sorting script: no text became a tag
    assert "<b>" not in text and html.escape(HOSTILE) in text
    assert page.links == []  # nothing loaded from elsewhere
    assert len(page.images) == 3
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert page.body_rows == [5, 4]  # the class table, then the settings
    assert "default-src 'none'" in text  # the Content-Security-Policy forbids other sources
    assert 'data-sort="0.75"' in text and ">0.750<" in text and "&quot;a&quot;: [1, 2]" in text


def test_png_bytes_of_each_kind_of_image():
    assert png_bytes(_figure()).startswith(PNG)
    assert png_bytes(np.zeros((3, 5))).startswith(PNG)
    assert png_bytes(PNG + b"rest") == PNG + b"rest"
    with pytest.raises(TypeError, match="not an image"):
        png_bytes("figure.png")


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: ReportSection("t", table={"a": 1}), TypeError, "sequence of mappings"),
        (lambda: ReportSection("t", table=[1, 2]), TypeError, "sequence of mappings"),
        (lambda: ReportSection("t", settings=[("a", 1)]), TypeError, "settings must be a mapping"),
        (lambda: ReportSection("t", figures=b"\x89PNG"), TypeError, "wrap a single image in a list"),
        (lambda: ReportSection(3), TypeError, "title must be a string"),
        (lambda: ReportSection("t", footer=[1]), TypeError, "footer must be a mapping"),
        (lambda: ReportFigure(b"GIF89a"), ValueError, "PNG signature"),
        (lambda: ReportFigure(np.zeros((2, 2, 2))), ValueError, "H x W or H x W x 3"),
        (lambda: ReportFigure("plot.png"), TypeError, "matplotlib Figure, PNG bytes"),
        (lambda: html_report("t", ReportSection("t")), TypeError, "sequence of ReportSection"),
        (lambda: html_report(None, []), TypeError, "title must be a string"),
    ],
)
def test_bad_parts_are_refused_with_a_clear_error(make, error, message):
    with pytest.raises(error, match=message):
        make()


# ---------------------------------------------------------------------------------------------
# In a real browser engine

PROBE = """
<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var tables = Array.prototype.slice.call(document.querySelectorAll("table.sortable"));
  var result = {
    images: images.length,
    decoded: images.filter(function (img) { return img.complete && img.naturalWidth > 0; }).length,
    rows: tables.map(function (table) { return table.tBodies[0].rows.length; }),
    title: document.title,
    bold: document.querySelectorAll("b").length,
  };
  var column = SORT_COLUMN;
  if (tables.length && column) {
    var headers = Array.prototype.slice.call(tables[0].tHead.rows[0].cells);
    var header = headers.filter(function (th) { return th.textContent === column; })[0];
    var firsts = function () {
      return Array.prototype.map.call(tables[0].tBodies[0].rows, function (row) { return row.cells[0].textContent; });
    };
    header.click();
    result.ascending = firsts();
    header.click();
    result.descending = firsts();
  }
  var probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify(result);
  document.body.appendChild(probe);
});
</script>
"""


def _chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "chromium is not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CLASSPATTERN_REQUIRE_BROWSER"):
            pytest.fail(f"CLASSPATTERN_REQUIRE_BROWSER is set but {reason}")
        pytest.skip(reason)
    return found


def in_browser(page_path, tmp_path, sort_column=None):
    """Load a copy of the page with the probe in headless chromium; what the probe found, as a dict."""
    browser = _chromium()
    text = open(page_path, encoding="utf-8").read()
    assert text.count("</body>") == 1
    probed = tmp_path / "probed.html"
    probe = PROBE.replace("SORT_COLUMN", json.dumps(sort_column))
    probed.write_text(text.replace("</body>", probe + "</body>"), encoding="utf-8")
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        probed.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the probe did not run (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def test_the_page_in_a_browser_decodes_every_image_and_sorts(tmp_path):
    path = tmp_path / "report.html"
    path.write_text(_sample_page(rows=5), encoding="utf-8")
    seen = in_browser(path, tmp_path, sort_column="power")
    assert seen["images"] == 3 and seen["decoded"] == 3
    assert seen["rows"] == [5]
    assert seen["title"] == HOSTILE and seen["bold"] == 0  # escaped text is shown as text
    # Sorted by number (0.25 < 0.5 < 1.0, which as text would sort otherwise), then reversed.
    powers = {f"c{i}": (i * 7 % 5) / 4 for i in range(5)}
    assert seen["ascending"] == sorted(powers, key=lambda name: powers[name])
    assert seen["descending"] == sorted(powers, key=lambda name: -powers[name])


def test_the_search_report_in_a_browser(tmp_path):
    rows = [
        ClassReport(c, 51, 0.1 * c, 0.0, 0.01, {"Saliency": 0.02, "IntegratedGradients": 0.03}, name=f"digit {c}")
        for c in (3, 1, 2)
    ]
    report = SearchReport(rows, 0.98, {"schedule": "default", "seed": 0, "k": 0.05, "data": "digits"})
    path = tmp_path / "report.html"
    path.write_text(search_page(report, png_bytes(_figure()), "classpattern search --k 0.05"), encoding="utf-8")
    seen = in_browser(path, tmp_path, sort_column="predictive power")
    assert seen["images"] == seen["decoded"] == 1
    assert seen["rows"] == [3]  # one row per class (the mean row is the footer)
    assert seen["ascending"] == ["1", "2", "3"] and seen["descending"] == ["3", "2", "1"]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.filterwarnings("ignore:only .* pixels asked for have a positive score")  # an untrained model
def test_the_scan_page_of_the_command_line_in_a_browser(tmp_path, monkeypatch):
    (tmp_path / "html_nets.py").write_text(
        textwrap.dedent(
            """
            from captum_classpattern.models import SmallCNN

            def build():
                return SmallCNN(1, 10, 8)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    argv = ["scan", "--model", "html_nets:build", "--classes", "0,4,7", "--steps", "5", "--max-eval", "20"]
    assert main(argv + ["--out", str(out), "--no-progress"]) == 0
    assert sorted(os.listdir(out)) == ["scan.html", "scan.json", "scan.png"]
    text = (out / "scan.html").read_text(encoding="utf-8")
    Page(text)
    assert "captum_classpattern" in text and platform.python_version() in text  # the versions
    seen = in_browser(out / "scan.html", tmp_path, sort_column="class")
    assert seen["images"] == seen["decoded"] >= 1
    assert seen["rows"][0] == 3  # one row per scanned class
    assert seen["descending"] == ["7", "4", "0"]
