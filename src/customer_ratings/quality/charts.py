"""The page's charts: pygal renders them at build time to inline SVG (no script, no network when opened).

pygal scopes each chart's stylesheet by a random id and repeats it in every chart (~15 kB); the page instead
takes pygal's stylesheet once, scoped by the ``pygal-chart`` class every chart has (``Chart.css``), drops the
tooltip data (read only by pygal's JavaScript, which the page does not load) and shortens coordinates to one
decimal: a 30-day chart is then a few kB. pygal also puts an inline <script> with its config (series titles
included) in every chart: it is removed, and the page's Content-Security-Policy allows no script at all.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pygal
from pygal.style import Style

STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#333",
    foreground_strong="#111",
    foreground_subtle="#bbb",
    font_family="system-ui, sans-serif",
    label_font_size=9,
    major_label_font_size=9,
    legend_font_size=9,
    value_font_size=9,
    colors=("#3465a4", "#cc0000", "#f57900", "#73d216", "#75507b", "#c17d11", "#555753", "#06989a", "#edd400"),
)
_COMMON = {
    "style": STYLE,
    "js": [],  # pygal's default loads its tooltip script from the network
    "disable_xml_declaration": True,
    "explicit_size": True,
    "pretty_print": False,
    "show_x_labels": False,
    "show_x_guides": False,
    "show_y_guides": False,
    "y_labels_major_count": 3,
    "show_minor_y_labels": False,
    "margin": 4,
    "no_data_text": "no data",
}
_STYLE_RE = re.compile(r'<style type="text/css">(.*?)</style>', re.S)
_ID_RE = re.compile(r'id="(chart-[0-9a-f-]+)"')
_TAG_RE = re.compile(r"<[^>]+>")
_LEGEND_ID_RE = re.compile(r' id="activate-serie-\d+"')
_LONG_NUMBER_RE = re.compile(r"(\d\.\d)\d+")
# pygal's inline <script> holds its config (series titles included) for its JavaScript: never on the page
_DROP_RE = re.compile(r"<script[^>]*>.*?</script>|<script[^>]*/>|<desc [^>]*>.*?</desc>|<!--.*?-->"
                      r"|<title>Pygal</title>", re.S)


@dataclass(frozen=True)
class Chart:
    """A rendered chart: its SVG element and the stylesheet it needs (shared by every chart of the page)."""

    svg: str
    css: str


def _finish(chart: pygal.graph.graph.Graph) -> Chart:
    svg: str = chart.render(is_unicode=True)
    chart_id = _ID_RE.search(svg)
    style = _STYLE_RE.search(svg)
    assert chart_id is not None and style is not None
    css = html.unescape(style.group(1)).replace(f"#{chart_id.group(1)}", ".pygal-chart")
    svg = svg[:style.start()] + svg[style.end():]
    svg = _DROP_RE.sub("", svg)
    if "<script" in svg:  # pygal changed its output: refuse rather than put a script on the page
        raise RuntimeError("pygal's SVG still holds a <script> element")
    svg = _TAG_RE.sub(lambda m: _shorten(m.group(0)), svg)
    # the random id is of no use without its stylesheet; removing it also makes the page's bytes reproducible
    svg = svg.replace(f' id="{chart_id.group(1)}"', "", 1)
    return Chart(svg, css)


def _shorten(tag: str) -> str:
    """One element's tag without what only pygal's JavaScript reads (hover classes, per-chart ids that would
    repeat on the page), with coordinates to one decimal."""
    tag = _LONG_NUMBER_RE.sub(r"\1", tag)
    for noise in (" reactive", " tooltip-trigger", ' rx="0" ry="0"'):
        tag = tag.replace(noise, "")
    return _LEGEND_ID_RE.sub("", tag)


def line(title: str, values: Sequence[float | None], *, percent: bool = False) -> Chart:
    """A small line chart of one value per day (None: no value that day, the line is interrupted)."""
    chart = pygal.Line(width=260, height=90, show_legend=False, allow_interruptions=True, dots_size=2,
                       include_x_axis=True, title=None, **_COMMON)
    if percent:
        chart.value_formatter = lambda v: f"{v:.2f}%"
    chart.add(title, list(values))
    return _finish(chart)


def stacked_bars(series: Mapping[str, Sequence[int]]) -> Chart:
    """Stacked bars, one bar per day, one series (a colour in the legend) per key."""
    chart = pygal.StackedBar(width=260, height=96 + 13 * len(series), show_legend=True,
                             legend_at_bottom=True, legend_at_bottom_columns=1, legend_box_size=7,
                             truncate_legend=48, **_COMMON)
    for name, values in series.items():
        chart.add(name, list(values))
    return _finish(chart)
